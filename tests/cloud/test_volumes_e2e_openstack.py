"""A volume-snapshot policy on the real plane, in process: an in-use volume's forced Cinder
snapshot taken, stamped and rotated by the engine, then restored as a new volume."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from stackback.clock import SystemClock
from stackback.cloud.openstack import OpenStackCloud
from stackback.engine.loop import Engine
from stackback.engine.restore import RestoreRunner
from stackback.engine.settings import EngineSettings
from stackback.policy import BackupStatus, RunState
from stackback.ports import CREATED_BY_VALUE, MARKER_BACKUP, MARKER_CREATED_BY
from stackback.restoreplan import RestoreOverrides, RestoreState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.services.restores import RestoreService
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import BackupFilter, SqlStore
from tests.cloud.contract import unique
from tests.cloud.test_contract_openstack import Plane, PlaneHarness

pytestmark = pytest.mark.openstack


@pytest.fixture
def harness(openstack_plane: Plane) -> Iterator[PlaneHarness]:
    harness = PlaneHarness(openstack_plane)
    try:
        yield harness
    finally:
        harness.close()


def _run_to_the_end(engine: Engine, store: SqlStore, run_id: str) -> None:
    deadline = time.monotonic() + 180
    while not store.get_run(run_id).state.is_terminal:
        assert time.monotonic() < deadline, "the run did not end in 180 s"
        if not engine.step():
            time.sleep(1)


def test_a_volume_snapshot_policy_backs_up_rotates_and_restores_on_the_plane(
    harness: PlaneHarness, tmp_path: Path
) -> None:
    db = create_db_engine(f"sqlite:///{tmp_path / 'stackback.db'}")
    upgrade(db)
    store = SqlStore(db)
    clock = SystemClock()
    cloud = OpenStackCloud(harness.plane.connection("alpha"), cloud_name="alpha")
    settings = EngineSettings(poll_interval=timedelta(seconds=1))
    engine = Engine(store, lambda _name: cloud, clock, settings, worker_name="w-plane")
    made: list[str] = []
    try:
        server = harness.create_server(unique("vol-e2e"))
        volume_id = harness.attach_new_volume(server.id)
        policy = PolicyService(store, clock).create(
            PolicySpec(
                name="plane-vols",
                kind="volume-snapshot",
                volumes=(volume_id,),
                schedules=("0 1 * * *",),
                retention=RetentionPolicy(last=1),
            )
        )
        for _ in range(2):
            run = store.create_manual_run(
                target=volume_id, now=clock.now(), label=None, retention=None, policy=policy
            )
            _run_to_the_end(engine, store, run.id)
            done = store.get_run(run.id)
            assert done.state is RunState.SUCCEEDED, done.error
        deadline = time.monotonic() + 60
        while store.list_backups(BackupFilter(statuses=(BackupStatus.DELETING,))):
            assert time.monotonic() < deadline
            engine.collector.collect_pending()
            time.sleep(1)
        (kept,) = store.list_backups(BackupFilter(target=volume_id))
        assert kept.status is BackupStatus.AVAILABLE
        (snapshot,) = [a.cloud_id for a in kept.artifacts]
        found = harness.alpha.block_storage.get_snapshot(snapshot)
        assert found.metadata[MARKER_CREATED_BY] == CREATED_BY_VALUE
        assert found.metadata[MARKER_BACKUP] == kept.id
        gone = store.list_backups(BackupFilter(statuses=(BackupStatus.DELETED,)))
        assert len(gone) == 1

        restores = RestoreService(store, lambda _name: cloud, clock)
        job = restores.start(kept.id, overrides=RestoreOverrides(name=unique("vol-restored")))
        runner = RestoreRunner(
            store, lambda _name: cloud, clock, owner="w-plane", poll=timedelta(seconds=1)
        )
        job = runner.drive(job.id)
        assert job.state is RestoreState.SUCCEEDED, job.error
        (new,) = cloud.find_restored(job.id)
        made.append(new.id)
        assert harness.alpha.block_storage.get_volume(new.id).status == "available"
        harness.alpha.block_storage.delete_snapshot(snapshot, ignore_missing=True)
        harness.alpha.block_storage.wait_for_delete(
            harness.alpha.block_storage.get_snapshot(snapshot), interval=1, wait=120
        )
    finally:
        for volume in made:
            with contextlib.suppress(Exception):
                harness.alpha.block_storage.delete_volume(volume, ignore_missing=True)
        store.dispose()
