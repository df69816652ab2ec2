"""kill -9 a worker process at every step boundary of a run, restart, check nothing broke."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stackback.clock import SystemClock
from stackback.cloud import CloudProvider
from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.policy import ArtifactStatus, BackupStatus, RunState
from stackback.store.sql import BackupFilter, SqlStore
from tests.engine.processes import start, stop, wait_until

pytestmark = pytest.mark.slow

FAILPOINTS = [
    "after-start",
    "after-backup-record",
    "after-create-image",
    "after-record-artifact",
    "after-backup-available",
    "after-rotation-decided",
]
FAST = SimConfig(
    image_snapshot_seconds=0.05,
    image_base_seconds=0.05,
    image_seconds_per_gb=0,
    volume_snapshot_seconds=0.05,
)


def _finish(store: SqlStore, clouds: CloudProvider, run_id: str) -> None:
    engine = Engine(
        store, clouds, SystemClock(), EngineSettings(poll_interval=timedelta(seconds=0.05))
    )
    wait_until(
        lambda: engine.step() >= 0 and store.get_run(run_id).state.is_terminal,
        30,
        what=f"run {run_id} to finish",
    )


@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_worker_killed_at_a_step_boundary_resumes_without_harm(
    failpoint: str, store: SqlStore, db_url: str, tmp_path: Path
) -> None:
    sim_path = tmp_path / "cloud.sqlite"
    cloud_spec = f"sim:{sim_path}"
    sim = SimulatedCloud(sim_path, SystemClock(), project="demo")
    sim.configure(FAST)
    server = sim.create_server("web")
    clouds = CloudProvider(cloud_spec, SystemClock(), tmp_path)
    keep_one = {"last": 1}

    first = store.create_manual_run(
        target=server.id,
        now=SystemClock().now(),
        label="manual",
        retention=keep_one,
        cloud=cloud_spec,
    )
    _finish(store, clouds, first.id)
    old = store.get_backup(store.get_run(first.id).backup_id or "")
    assert old.status is BackupStatus.AVAILABLE

    run = store.create_manual_run(
        target=server.id,
        now=SystemClock().now(),
        label="manual",
        retention=keep_one,
        cloud=cloud_spec,
    )
    worker_args = [
        "--db",
        db_url,
        "--os-cloud",
        cloud_spec,
        "worker",
        "--lease",
        "1",
        "--poll-interval",
        "0.05",
    ]
    doomed = start(worker_args, env={"STACKBACK_FAILPOINTS": failpoint}, log=tmp_path / "w1.log")
    assert doomed.wait(60) == -9, (tmp_path / "w1.log").read_text()

    crashed = store.get_run(run.id)
    assert not crashed.state.is_terminal
    new = store.backup_for_run(run.id)
    old_now = store.get_backup(old.id)
    if new is None or new.status is not BackupStatus.AVAILABLE:
        assert old_now.status is BackupStatus.AVAILABLE, "deleted before the new backup was good"
        assert old.artifacts[0].cloud_id in {i.id for i in sim.images()}

    survivor = start(worker_args, log=tmp_path / "w2.log")
    try:
        wait_until(lambda: store.get_run(run.id).state.is_terminal, 60, what="the resumed run")
        wait_until(
            lambda: store.get_backup(old.id).status is BackupStatus.DELETED,
            30,
            what="the rotated backup to be deleted",
        )
    finally:
        assert stop([survivor]) == [0]

    done = store.get_run(run.id)
    assert done.state is RunState.SUCCEEDED, done.error
    assert done.attempt >= 2
    assert sim.api_calls()["start_server_image"] == 2, "a resumed run snapshotted twice"
    backups = store.list_backups(BackupFilter(target=server.id, include_deleted=True))
    assert sorted(b.status.value for b in backups) == ["available", "deleted"]
    (kept,) = [b for b in backups if b.status is BackupStatus.AVAILABLE]
    assert kept.run_id == run.id
    assert [a.status for a in kept.artifacts] == [ArtifactStatus.AVAILABLE]
    assert {i.id for i in sim.images()} == {kept.artifacts[0].cloud_id}
