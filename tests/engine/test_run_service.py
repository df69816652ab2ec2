"""The run service on both databases: cancel fences a run's worker off, a wait drives one run."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stackback.cloud.simulator.config import SimConfig
from stackback.errors import CloudUnreachable, Conflict, InvalidInput, WaitTimedOut
from stackback.policy import BackupStatus, Run, RunState
from stackback.retention import RetentionPolicy
from stackback.services.backups import BackupService
from stackback.services.policies import PolicySpec
from stackback.services.runs import RunService
from stackback.store.sql import RunFilter
from tests.engine.conftest import Rig


def service(rig: Rig) -> RunService:
    return RunService(rig.store, lambda _name: rig.sim, rig.clock, rig.engine.settings)


def manual_run(rig: Rig, server: str) -> Run:
    return BackupService(rig.store, lambda _name: rig.sim, rig.clock).backup_now(
        server, label=None, keep_last=None, cloud=None
    )


def test_a_cancelled_pending_run_is_never_started(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    run = manual_run(rig, server.id)
    cancelled = service(rig).cancel(run.id)
    assert cancelled.state is RunState.CANCELLED and cancelled.finished_at is not None
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    assert rig.store.get_run(run.id).state is RunState.CANCELLED
    assert rig.sim.images() == []
    with pytest.raises(Conflict, match="already ended"):
        service(rig).cancel(run.id)


def test_cancelling_an_active_run_fences_its_worker_and_frees_the_server(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    run = manual_run(rig, server.id)
    [claimed] = rig.store.claim_runs(rig.clock.now(), "w-old", lease_seconds=300)
    rig.engine.runner.advance(claimed)  # start and snapshot: the image is asked for
    waiting = rig.store.get_run(run.id)
    assert waiting.state is RunState.WAITING
    [held] = rig.store.claim_runs(rig.clock.now(), "w-old", lease_seconds=300, run_id=run.id)
    images = [i.id for i in rig.sim.images()]

    cancelled = service(rig).cancel(run.id)
    assert (cancelled.state, cancelled.lease_owner) == (RunState.CANCELLED, None)
    backup = rig.store.backup_for_run(run.id)
    assert backup is not None and backup.status is BackupStatus.FAILED

    rig.clock.advance(3600)  # the image is ready; the old worker polls it
    rig.engine.runner.advance(held)  # fenced: LeaseLost, nothing written
    after = rig.store.get_run(run.id)
    assert after.state is RunState.CANCELLED
    assert rig.store.backup_for_run(run.id).status is BackupStatus.FAILED  # type: ignore[union-attr]
    assert [i.id for i in rig.sim.images()] == images  # the cloud is left as it was
    # the server is free: the next backup of it starts at once
    again = manual_run(rig, server.id)
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    assert rig.store.get_run(again.id).state is RunState.SUCCEEDED


def test_wait_drives_only_its_run_and_times_out(rig: Rig) -> None:
    web = rig.sim.create_server("web")
    db = rig.sim.create_server("db")
    other = manual_run(rig, db.id)
    mine = manual_run(rig, web.id)
    seen: list[RunState] = []
    done = service(rig).wait(mine.id, timeout=3600, progress=lambda r: seen.append(r.state))
    assert done.state is RunState.SUCCEEDED
    assert seen[0] is RunState.PENDING and seen[-1] is RunState.SUCCEEDED
    assert rig.store.get_run(other.id).state is RunState.PENDING
    rig.sim.configure(SimConfig(image_snapshot_seconds=3600, image_base_seconds=3600))
    slow = manual_run(rig, web.id)
    with pytest.raises(WaitTimedOut, match="goes on") as timed_out:
        service(rig).wait(slow.id, timeout=60)
    assert timed_out.value.run_id == slow.id
    assert rig.store.get_run(slow.id).state is RunState.WAITING


def test_a_scheduled_run_still_retries_an_unreachable_cloud(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    rig.policies.create(
        PolicySpec(
            name="nightly",
            targets=(server.id,),
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=3),
        )
    )
    rig.sim.fail_next("get_server", CloudUnreachable, count=2)
    rig.engine.drain(rig.clock.now() + timedelta(days=1))
    (run,) = rig.store.list_runs(RunFilter(limit=10))
    assert run.state is RunState.SUCCEEDED
    assert [s.outcome for s in run.steps].count("retry") == 2


def test_an_unreachable_cloud_fails_an_on_demand_run_at_its_first_call(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    rig.sim.fail_next("get_server", CloudUnreachable, count=1)
    run = manual_run(rig, server.id)
    rig.engine.drain(rig.clock.now() + timedelta(seconds=5))
    failed = rig.store.get_run(run.id)
    assert failed.state is RunState.FAILED
    assert "cloud-unreachable" in (failed.error or "")
    assert [s.outcome for s in failed.steps] == ["failed"]


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan")])
def test_a_wait_needs_a_positive_timeout(rig: Rig, timeout: float) -> None:
    run = manual_run(rig, rig.sim.create_server("web").id)
    with pytest.raises(InvalidInput, match="--timeout"):
        service(rig).wait(run.id, timeout=timeout)
    assert rig.store.get_run(run.id).state is RunState.PENDING
