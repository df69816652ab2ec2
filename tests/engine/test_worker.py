"""The worker: lease renewal between and during steps (the heartbeat), a stop
between runs, and one run's failure not stopping the others."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from stackback.clock import SystemClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig
from stackback.engine import worker as worker_module
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.engine.worker import Worker
from stackback.errors import LeaseLost
from stackback.policy import Run, RunState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from stackback.store.sql import SqlStore
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


class _LongStepRunner(_SlowRunner):
    """A step whose cloud call outlasts the lease: the clock moves on while it blocks."""

    def __init__(self, rig: Rig, settings: EngineSettings, *, slices: int) -> None:
        super().__init__(rig, settings, explode_first=False)
        self.slices = slices
        self.lease_after: dict[str, datetime | None] = {}
        self.ended_at: dict[str, datetime] = {}
        self.stop: threading.Event | None = None

    def advance(self, run: Run) -> None:
        for _ in range(self.slices):
            self.rig.clock.advance(self.settings.lease.total_seconds() * 0.4)
            time.sleep(worker_module.HEARTBEAT_CHECK_SECONDS * 3)  # the heartbeat's turn
        self.lease_after[run.id] = self.rig.store.get_run(run.id).lease_expires_at
        self.ended_at[run.id] = self.rig.clock.now()
        if self.stop is not None:
            self.stop.set()


@pytest.mark.slow  # real time: leases and heartbeats on the wall clock
def test_a_heartbeat_keeps_the_lease_through_a_call_longer_than_the_lease(rig: Rig) -> None:
    """Else another worker takes the run over mid-call and snapshots the server again."""
    _two_due_runs(rig)
    settings = EngineSettings()
    runner = _LongStepRunner(rig, settings, slices=3)  # 1.2 leases in one step
    worker = Worker(rig.store, runner, rig.clock, settings, name="w")  # type: ignore[arg-type]
    assert worker.work_once() == 2
    for run_id, lease in runner.lease_after.items():
        assert lease is not None and lease > runner.ended_at[run_id]  # still held at the end
    assert rig.store.claim_runs(rig.clock.now(), "other", lease_seconds=60, limit=2) == []


@pytest.mark.slow  # real time: leases and heartbeats on the wall clock
def test_the_hold_limit_counts_from_each_step_not_from_the_batch(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two steps of 1.6 leases each under a limit of 2: neither may lose its lease."""
    monkeypatch.setattr(worker_module, "HOLD_AT_MOST", 2)
    _two_due_runs(rig)
    settings = EngineSettings()
    runner = _LongStepRunner(rig, settings, slices=4)
    worker = Worker(rig.store, runner, rig.clock, settings, name="w")  # type: ignore[arg-type]
    assert worker.work_once() == 2
    for run_id, lease in runner.lease_after.items():
        assert lease is not None and lease > runner.ended_at[run_id]


@pytest.mark.slow  # real time: leases and heartbeats on the wall clock
def test_a_step_hung_longer_than_the_hold_limit_is_left_to_be_taken_over(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "HOLD_AT_MOST", 1)
    _two_due_runs(rig)
    settings = EngineSettings(claim_batch=1)
    runner = _LongStepRunner(rig, settings, slices=5)  # renewed until 1.8 leases, no later
    worker = Worker(rig.store, runner, rig.clock, settings, name="w")  # type: ignore[arg-type]
    assert worker.work_once() == 1
    [run_id] = runner.lease_after
    claimed = rig.store.claim_runs(rig.clock.now(), "other", lease_seconds=60, limit=2)
    assert run_id in [r.id for r in claimed]


class _HungThenSlowRunner(_LongStepRunner):
    """The first step outlasts the hold limit; the next ones are only slow."""

    def __init__(self, rig: Rig, settings: EngineSettings, *, slices: list[int]) -> None:
        super().__init__(rig, settings, slices=0)
        self.slices_per_step = slices

    def advance(self, run: Run) -> None:
        self.slices = self.slices_per_step[len(self.lease_after)]
        super().advance(run)


@pytest.mark.slow  # real time: leases and heartbeats on the wall clock
def test_a_step_past_the_hold_limit_leaves_the_later_steps_of_its_batch_renewed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a limit of 1 lease: the first step (1.2 leases) loses its renewals past the
    limit, the second (1.6 leases, under the limit) keeps its lease to the end."""
    monkeypatch.setattr(worker_module, "HOLD_AT_MOST", 1)
    _two_due_runs(rig)
    settings = EngineSettings()
    claimed_at = rig.clock.now()
    runner = _HungThenSlowRunner(rig, settings, slices=[3, 4])
    worker = Worker(rig.store, runner, rig.clock, settings, name="w")  # type: ignore[arg-type]
    assert worker.work_once() == 2
    hung, slow = runner.lease_after
    # renewed at 0.4 and 0.8 leases, not at 1.2 (past the limit)
    assert runner.lease_after[hung] == claimed_at + settings.lease * 1.8
    lease = runner.lease_after[slow]
    assert lease is not None and lease > runner.ended_at[slow]


def test_an_expired_lease_is_not_renewed(rig: Rig) -> None:
    """From its expiry on, another worker may claim the run: the old holder must not extend it."""
    _two_due_runs(rig)
    [run] = rig.store.claim_runs(rig.clock.now(), "w", lease_seconds=60, limit=1)
    later = rig.clock.now() + timedelta(seconds=61)
    with pytest.raises(LeaseLost):
        rig.store.renew_lease(run.id, run.attempt, now=later, until=later + timedelta(minutes=5))
    soon = rig.clock.now() + timedelta(seconds=30)
    rig.store.renew_lease(run.id, run.attempt, now=soon, until=soon + timedelta(minutes=5))
    assert rig.store.get_run(run.id).lease_expires_at == soon + timedelta(minutes=5)
    rig.store.release_run(run.id, run.attempt, not_before=None)  # given back: not renewed
    with pytest.raises(LeaseLost):
        rig.store.renew_lease(run.id, run.attempt, now=soon, until=soon + timedelta(minutes=5))
    assert rig.store.get_run(run.id).lease_expires_at is None


def test_a_stop_gives_the_rest_of_the_batch_back(rig: Rig) -> None:
    _two_due_runs(rig)
    settings = EngineSettings()
    runner = _LongStepRunner(rig, settings, slices=0)
    runner.stop = threading.Event()
    worker = Worker(rig.store, runner, rig.clock, settings, name="w")  # type: ignore[arg-type]
    assert worker.work_once(runner.stop) == 1
    [advanced] = runner.lease_after
    # the other run is given back at once, for any worker to take
    [other] = rig.store.claim_runs(rig.clock.now(), "next", lease_seconds=60, limit=2)
    assert other.id != advanced and other.lease_owner == "next"


class _SlowToReachNova:
    """The simulator, whose createImage request takes longer than a lease to arrive."""

    def __init__(self, inner: SimulatedCloud, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def start_server_image(self, *args: object, **kwargs: object) -> object:
        time.sleep(self.delay)
        return self.inner.start_server_image(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow  # real time: leases and heartbeats on the wall clock
def test_no_second_snapshot_while_a_slow_create_image_is_in_flight(
    store: SqlStore, tmp_path: Path
) -> None:
    """Real clock, two workers: the one waiting for Nova keeps its lease, so the other
    cannot take the run over and snapshot the server a second time."""
    clock = SystemClock()
    sim = SimulatedCloud(tmp_path / "cloud.sqlite", clock, project="demo")
    sim.configure(replace(SimConfig(), image_base_seconds=0.2, volume_snapshot_seconds=0.2))
    server = sim.create_server("web", volume_backed=True)
    settings = EngineSettings(lease=timedelta(seconds=1), poll_interval=timedelta(seconds=0.1))
    slow = _SlowToReachNova(sim, delay=2.5)
    first = Engine(store, lambda _n: slow, clock, settings, run_scheduler=False, worker_name="a")  # type: ignore[arg-type,return-value]
    other = Engine(store, lambda _n: sim, clock, settings, run_scheduler=False, worker_name="b")
    run = store.create_manual_run(target=server.id, now=clock.now(), label="m", retention=None)
    waiting_for_nova = threading.Thread(target=first.worker.work_once)
    waiting_for_nova.start()
    time.sleep(1.5)  # past the lease the first worker claimed the run with
    assert other.worker.work_once() == 0
    waiting_for_nova.join()
    deadline = time.monotonic() + 20
    while not store.get_run(run.id).state.is_terminal and time.monotonic() < deadline:
        other.step()
        time.sleep(0.1)
    assert store.get_run(run.id).state is RunState.SUCCEEDED
    assert sim.api_calls()["start_server_image"] == 1
