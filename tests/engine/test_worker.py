"""The worker: lease renewal within a batch, and one run's failure not stopping the others."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.engine.worker import Worker
from stackback.policy import Run
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from tests.engine.conftest import Rig


class _SlowRunner:
    """Stands in for the runner: each run takes 60% of a lease; the first one may blow up."""

    def __init__(self, rig: Rig, settings: EngineSettings, *, explode_first: bool) -> None:
        self.rig = rig
        self.settings = settings
        self.explode_first = explode_first
        self.leases_seen: dict[str, datetime | None] = {}

    def forget_cached_policies(self) -> None:
        pass

    def advance(self, run: Run) -> None:
        self.leases_seen[run.id] = self.rig.store.get_run(run.id).lease_expires_at
        self.rig.clock.advance(self.settings.lease.total_seconds() * 0.6)
        if self.explode_first and len(self.leases_seen) == 1:
            raise RuntimeError("boom")

    def poll(self, runs: list[Run]) -> None:
        pass


def _two_due_runs(rig: Rig) -> None:
    rig.policies.create(
        PolicySpec(
            name="two",
            targets=("a", "b"),
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=1),
        )
    )
    Engine(rig.store, lambda _n: rig.sim, rig.clock, run_worker=False).drain(
        rig.clock.now() + timedelta(hours=1, minutes=1)
    )


def test_runs_later_in_a_batch_get_their_lease_renewed(rig: Rig) -> None:
    _two_due_runs(rig)
    settings = EngineSettings()
    runner = _SlowRunner(rig, settings, explode_first=False)
    claimed_at = rig.clock.now()
    worker = Worker(rig.store, runner, rig.clock, settings, name="w")  # type: ignore[arg-type]
    assert worker.work_once() == 2
    first, second = runner.leases_seen.values()
    assert first == claimed_at + settings.lease
    assert second is not None and second > claimed_at + settings.lease


def test_one_failing_run_does_not_stop_the_rest_of_the_batch(rig: Rig) -> None:
    _two_due_runs(rig)
    runner = _SlowRunner(rig, EngineSettings(), explode_first=True)
    worker = Worker(rig.store, runner, rig.clock, name="w")  # type: ignore[arg-type]
    assert worker.work_once() == 2
    assert len(runner.leases_seen) == 2


def test_serve_outlives_a_database_failure_between_cycles(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL restart or a locked file while asking when to wake must not end serve."""
    asked = 0
    original = rig.store.next_wakeup

    def flaky() -> datetime | None:
        nonlocal asked
        asked += 1
        if asked == 1:
            raise OperationalError("SELECT ...", {}, Exception("server closed the connection"))
        return original()

    monkeypatch.setattr(rig.store, "next_wakeup", flaky)
    stop = threading.Event()
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            rig.engine.serve(stop, idle_max=0.01)
        except BaseException as error:  # the test reports it below
            failures.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    deadline = time.monotonic() + 10
    while asked < 3 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    stop.set()
    thread.join(10)
    assert failures == [] and asked >= 3
