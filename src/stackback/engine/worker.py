"""Workers: claim runs under a lease and drive them through the runner."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime

from stackback.engine.runner import Runner
from stackback.engine.settings import EngineSettings
from stackback.errors import LeaseLost
from stackback.policy import Run, RunState
from stackback.ports import Clock, Store

log = logging.getLogger(__name__)


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

    def work_once(self) -> int:
        """Claim and advance one batch; returns how many runs were advanced."""
        claimed_at = self.clock.now()
        runs = self.store.claim_runs(
            claimed_at,
            self.name,
            lease_seconds=self.settings.lease.total_seconds(),
            limit=self.settings.claim_batch,
        )
        self.runner.forget_cached_policies()
        waiting = [r for r in runs if r.state is RunState.WAITING]
        for run in runs:
            if run.state is RunState.WAITING:
                continue
            self._keep_lease(run, claimed_at)
            self._isolated(run, self.runner.advance)
        if waiting:
            for run in waiting:
                self._keep_lease(run, claimed_at)
            self._isolated(waiting[0], lambda _run: self.runner.poll(waiting))
        return len(runs)

    def _keep_lease(self, run: Run, claimed_at: datetime) -> None:
        """Renew the lease of a run still waiting in this batch once half of it has passed."""
        now = self.clock.now()
        if now - claimed_at >= self.settings.lease / 2:
            # taken over meanwhile: the runner's fenced writes will notice
            with contextlib.suppress(LeaseLost):
                self.store.renew_lease(run.id, run.attempt, until=now + self.settings.lease)

    def _isolated(self, run: Run, action: Callable[[Run], None]) -> None:
        """One run's trouble (a database hiccup, a bug) must not stop the rest of the batch."""
        try:
            action(run)
        except LeaseLost:
            log.info("run %s: lease lost, another worker has it", run.id)
        except Exception:
            log.exception("run %s: step aborted; it is retried when its lease expires", run.id)
