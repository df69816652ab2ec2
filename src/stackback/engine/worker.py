"""Workers: claim runs under a lease and drive them through the runner."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType

from stackback.engine.runner import Runner
from stackback.engine.settings import EngineSettings
from stackback.errors import LeaseLost
from stackback.policy import Run, RunState
from stackback.ports import Clock, Store

log = logging.getLogger(__name__)

HEARTBEAT_CHECK_SECONDS = 0.2
"""How often (real seconds) the heartbeat looks at the clock; it renews every third of a lease."""
HOLD_AT_MOST = 6
"""Leases a heartbeat keeps renewing through one step: a step hung longer is taken over."""


def worker_name() -> str:
    """host:pid:random — unique per process, readable in ``run show``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims runs that can make progress and advances each by one step.

    Runs waiting for the cloud are polled together: one status listing per
    cloud per cycle, however many backups are in flight. An expired lease of
    a dead worker makes its run claimable again (the reaper is the claim
    query itself), with a higher attempt number that fences the old owner.
    """

    def __init__(
        self,
        store: Store,
        runner: Runner,
        clock: Clock,
        settings: EngineSettings | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.clock = clock
        self.settings = settings or EngineSettings()
        self.name = name or worker_name()

    def work_once(self, stop: threading.Event | None = None, *, run_id: str | None = None) -> int:
        """Claim and advance one batch (only the run ``run_id``, if given); returns how many
        runs were advanced.

        While the batch is worked on, a heartbeat keeps its leases (a slow cloud
        call must not let another worker take a run over and snapshot it again).
        With ``stop`` set, the runs not yet advanced are given back at once.
        """
        host_limit = self.settings.max_snapshots_per_host
        runs = self.store.claim_runs(
            self.clock.now(),
            self.name,
            lease_seconds=self.settings.lease.total_seconds(),
            limit=self.settings.claim_batch,
            run_id=run_id,
            **({} if host_limit is None else {"host_limit": host_limit}),
        )
        if not runs:
            return 0
        self.runner.forget_cached_policies()
        waiting = [r for r in runs if r.state is RunState.WAITING]
        advanced = 0
        with LeaseKeeper(self.store, self.clock, self.settings.lease, runs) as keeper:
            for position, run in enumerate(runs):
                if stop is not None and stop.is_set():
                    self._give_back([r for r in runs[position:] if r.state is not RunState.WAITING])
                    self._give_back(waiting)
                    return advanced
                if run.state is RunState.WAITING:
                    continue
                keeper.step_started()
                self._isolated(run, self.runner.advance)
                advanced += 1
            if waiting and stop is not None and stop.is_set():
                self._give_back(waiting)
            elif waiting:
                keeper.step_started()
                self._isolated(waiting[0], lambda _run: self.runner.poll(waiting))
                advanced += len(waiting)
        return advanced

    def _give_back(self, runs: Sequence[Run]) -> None:
        """Release runs not advanced (a stop): another worker, or this one restarted, takes
        them at once instead of after their leases."""
        for run in runs:
            try:
                self.store.release_run(run.id, run.attempt, not_before=None)
            except LeaseLost:
                pass
            except Exception:  # the database is going away too: the leases will expire
                log.warning("run %s: could not give its lease back", run.id, exc_info=True)

    def _isolated(self, run: Run, action: Callable[[Run], None]) -> None:
        """One run's trouble (a database hiccup, a bug) must not stop the rest of the batch."""
        try:
            action(run)
        except LeaseLost:
            log.info("run %s: lease lost, another worker has it", run.id)
        except Exception:
            log.exception("run %s: step aborted; it is retried when its lease expires", run.id)


class LeaseKeeper:
    """A heartbeat: renews the leases of a batch's runs while a worker advances them.

    Every third of a lease (by the engine's clock), each run still held is
    renewed, fenced by its attempt. A run whose step released its lease, or
    that another worker took over, drops out (``LeaseLost``). Renewals pause
    while one step has lasted ``HOLD_AT_MOST`` leases, so that a hung worker's
    runs are taken over once their leases run out; the limit counts from each
    step's start, so when that step returns, the leases still held (unexpired)
    are renewed again for the rest of the batch.
    """

    def __init__(self, store: Store, clock: Clock, lease: timedelta, runs: Sequence[Run]) -> None:
        self.store = store
        self.clock = clock
        self.lease = lease
        self._held = list(runs)
        self._step_started = self._renewed = clock.now()
        self._renewing = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="stackback-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def step_started(self) -> None:
        """A step begins: the hold limit counts from here (a batch may hold many steps), and
        leases are renewed now if due (on a virtual clock, time passes between steps only)."""
        self._step_started = self.clock.now()
        self._renew_if_due(self._step_started)

    def _beat(self) -> None:
        warned_for: datetime | None = None
        while self._held and not self._stop.wait(HEARTBEAT_CHECK_SECONDS):
            now = self.clock.now()
            step_started = self._step_started
            if now - step_started >= self.lease * HOLD_AT_MOST:
                if warned_for != step_started:
                    warned_for = step_started
                    log.warning(
                        "runs %s held too long: their leases are left to expire", self._ids()
                    )
                continue
            self._renew_if_due(now)

    def _renew_if_due(self, now: datetime) -> None:
        """Renew every run still held, once a third of a lease has passed since the last time."""
        with self._renewing:
            if now - self._renewed < self.lease / 3:
                return
            self._renewed = now
            for run in list(self._held):
                if self._stop.is_set():
                    return
                try:
                    self.store.renew_lease(run.id, run.attempt, now=now, until=now + self.lease)
                except LeaseLost:
                    self._held.remove(run)
                except Exception:  # the database hiccuped: the next beat tries again
                    log.warning("run %s: lease renewal failed", run.id, exc_info=True)

    def _ids(self) -> str:
        return ", ".join(run.id for run in self._held)
