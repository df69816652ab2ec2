"""The service loop: scheduler tick, workers, collector — on a real or virtual clock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from stackback.engine.collector import Collector
from stackback.engine.orphans import OrphanSweeper
from stackback.engine.restore import RestoreRunner
from stackback.engine.runner import Runner
from stackback.engine.scheduler import Scheduler
from stackback.engine.settings import EngineSettings
from stackback.engine.worker import Worker
from stackback.ports import Clock, CloudResolver, RestoreJobStore, Store

log = logging.getLogger(__name__)

RESTORE_POLL = timedelta(seconds=5)
PERIODIC_CHECK_SECONDS = 1.0
"""How often (real seconds) the periodic thread looks whether a task is due."""


class Periodic(Protocol):
    """Work done every ``interval`` beside the runs (alerts, metrics), never in their way."""

    name: str
    interval: timedelta

    def run(self, now: datetime) -> None: ...


class Ticker(Protocol):
    """Something else the scheduler fires on its tick (the policies' verify crons)."""

    def tick(self, now: datetime) -> int:
        """Fire what is due at ``now``; how much was done."""
        ...

    def next_time(self) -> datetime | None:
        """When something is next due."""
        ...


@dataclass
class Engine:
    """Scheduler, worker and collector over one store, cloud provider and clock."""

    store: Store
    clouds: CloudResolver
    clock: Clock
    settings: EngineSettings = field(default_factory=EngineSettings)
    run_scheduler: bool = True
    run_worker: bool = True
    worker_name: str | None = None
    periodic: Sequence[Periodic] = ()
    """Run in a thread of their own by ``serve``; between steps by ``drain``."""
    verifier: Ticker | None = None
    """Fires verifications on the scheduler's tick (``services.verify.VerifyScheduler``)."""
    release_credential: Callable[[str | None], object] | None = None
    """Told the cloud of each deleted backup: revokes a stored credential nothing needs any
    more (keystone mode: ``PolicyCredentials.release``)."""

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.store, self.clouds, self.settings)
        self.runner = Runner(
            self.store,
            self.clouds,
            self.clock,
            self.settings,
            release_credential=self.release_credential,
        )
        self.worker = Worker(
            self.store, self.runner, self.clock, self.settings, name=self.worker_name
        )
        self.collector = Collector(
            self.store,
            self.clouds,
            self.clock,
            self.settings,
            release_credential=self.release_credential,
        )
        self.orphans = OrphanSweeper(self.store, self.clouds, self.clock, self.settings)
        self.restores = (
            RestoreRunner(
                self.store,
                self.clouds,
                self.clock,
                owner=self.worker.name,
                lease=self.settings.lease,
                poll=min(self.settings.poll_interval, RESTORE_POLL),
            )
            if isinstance(self.store, RestoreJobStore)
            else None
        )
        self._last_collect: datetime | None = None
        self._last_tick: datetime | None = None
        self._next_fire: datetime | None = None
        self._periodic_last: dict[int, datetime] = {}

    def _tick_due(self, now: datetime) -> bool:
        """Tick when a fire time has come, and at least every poll interval (other
        processes may add or change schedules)."""
        if self._last_tick is None or now - self._last_tick >= self.settings.poll_interval:
            return True
        return self._next_fire is not None and self._next_fire <= now

    def step(self, stop: threading.Event | None = None) -> int:
        """One cycle; returns how much work was done (0 = idle).

        ``stop`` ends it early: nothing more is claimed once it is set, the step in
        progress finishes, and runs claimed but not advanced are given back.
        """

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        done = 0
        now = self.clock.now()
        if self.run_scheduler and not stopping() and self._tick_due(now):
            done += self.scheduler.tick(now).runs
            if self.verifier is not None:
                done += self.verifier.tick(now)
            self._last_tick = now
            self._next_fire = self._next_fire_time()
        if self.run_worker and not stopping():
            done += self.worker.work_once(stop)
            if self.restores is not None and not stopping():
                done += self.restores.work_once(stop=stop)
            now = self.clock.now()
            if not stopping() and (
                self._last_collect is None
                or now - self._last_collect >= self.settings.poll_interval
            ):
                self._last_collect = now
                done += self.orphans.sweep_due()
                done += self.collector.collect_pending()
        return done

    def next_event(self) -> datetime | None:
        """When there is next something to do (a fire time or a run's wake-up)."""
        times = []
        if self.run_scheduler:
            self._next_fire = self._next_fire_time()
            times.append(self._next_fire)
        if self.run_worker:
            host_limit = self.settings.max_snapshots_per_host
            times.append(
                self.store.next_wakeup()
                if host_limit is None
                else self.store.next_wakeup(host_limit)
            )
            if self.restores is not None:
                times.append(self.restores.store.next_restore_wakeup())
            if self.store.backups_to_collect(limit=1):
                times.append(self.clock.now() + self.settings.poll_interval)
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def run_periodic(self, now: datetime | None = None) -> int:
        """Run the periodic tasks that are due; one's failure is logged, never raised."""
        now = now or self.clock.now()
        ran = 0
        for index, task in enumerate(self.periodic):
            last = self._periodic_last.get(index)
            if last is not None and now - last < task.interval:
                continue
            self._periodic_last[index] = now
            ran += 1
            try:
                task.run(now)
            except Exception:
                log.exception("periodic %s failed; it runs again in %s", task.name, task.interval)
        return ran

    def _periodic_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_periodic()
            stop.wait(PERIODIC_CHECK_SECONDS)

    def _next_fire_time(self) -> datetime | None:
        times = [self.store.next_fire_time()]
        if self.verifier is not None:
            times.append(self.verifier.next_time())
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def serve(
        self,
        stop: threading.Event,
        *,
        idle_max: float = 5.0,
        on_started: Callable[[], None] | None = None,
        on_cycle: Callable[[int], None] | None = None,
    ) -> None:
        """Run until ``stop`` is set, sleeping while idle (at most ``idle_max`` real seconds).

        Periodic tasks run in a thread of their own: a slow webhook never delays a run.
        ``on_started`` is called once the loop begins (readiness), ``on_cycle`` after each
        cycle with the work it did.
        """
        thread = None
        if self.periodic:
            thread = threading.Thread(
                target=self._periodic_loop, args=(stop,), name="stackback-periodic", daemon=True
            )
            thread.start()
        try:
            if on_started is not None:
                on_started()
            self._serve(stop, idle_max, on_cycle)
        finally:
            if thread is not None:
                thread.join(timeout=idle_max)

    def _serve(
        self, stop: threading.Event, idle_max: float, on_cycle: Callable[[int], None] | None
    ) -> None:
        while not stop.is_set():
            wake = None
            try:
                done = self.step(stop)
                if on_cycle is not None:
                    on_cycle(done)
                if done:
                    continue
                wake = self.next_event()
            except Exception:  # e.g. the database restarting: keep serving, the next cycle retries
                log.exception("engine cycle failed")
            rate = float(getattr(self.clock, "factor", 1.0))  # a ScaledClock runs faster
            delay = idle_max
            if wake is not None:
                until_wake = (wake - self.clock.now()).total_seconds() / rate
                delay = min(idle_max, max(0.01, until_wake))
            stop.wait(delay)

    def drain(self, until: datetime, *, max_cycles: int = 1_000_000) -> None:
        """Virtual-clock driver: work, then jump the clock to the next event, until ``until``."""
        advance = getattr(self.clock, "advance_to", None)
        if advance is None:
            raise TypeError("drain needs a virtual clock")
        for _ in range(max_cycles):
            while self.step():
                pass
            self.run_periodic()
            wake = self.next_event()
            if wake is None or wake > until:
                advance(until)
                self.step()
                self.run_periodic()
                return
            advance(max(wake, self.clock.now() + timedelta(seconds=1)))
