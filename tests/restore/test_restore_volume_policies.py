"""A volume policy's backup (a Cinder snapshot or a Cinder backup) restores as a new volume."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stackback.errors import InvalidInput
from stackback.policy import Backup, RunState
from stackback.ports import MARKER_RESTORE, RESOURCE_VOLUME
from stackback.restoreplan import RestoreMode, RestoreOverrides, RestoreState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.store.sql import RunFilter
from tests.restore.conftest import RestoreRig


def volume_backups(rig: RestoreRig, kind: str, volume_id: str, days: int = 1) -> list[Backup]:
    PolicyService(rig.store, rig.clock).create(
        PolicySpec(
            name=f"vol-{kind}",
            kind=kind,
            volumes=(volume_id,),
            full_every=5 if kind == "volume-backup" else None,
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=5),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(days=days))
    runs = rig.store.list_runs(RunFilter(limit=10))
    assert runs and all(r.state is RunState.SUCCEEDED for r in runs), [r.error for r in runs]
    return [rig.store.get_backup(r.backup_id or "") for r in runs]


@pytest.mark.parametrize("kind", ["volume-snapshot", "volume-backup"])
def test_a_volume_backup_restores_as_a_new_volume_and_no_server(rig: RestoreRig, kind: str) -> None:
    source = rig.sim.create_volume_standalone("data", size_gb=3)
    newest = volume_backups(rig, kind, source.id, days=2)[0]
    if kind == "volume-backup":
        assert newest.parent_id is not None  # an incremental one restores whole
    servers_before, volumes_before = rig.inventory()

    plan = rig.restores.plan(newest.id, overrides=RestoreOverrides(name="data-again")).plan
    assert plan.volume_only and len(plan.volumes) == 1
    assert plan.volumes[0].from_backup is (kind == "volume-backup")
    job = rig.runner().drive(
        rig.restores.start(newest.id, overrides=RestoreOverrides(name="data-again")).id
    )
    assert job.state is RestoreState.SUCCEEDED, job.error
    assert rig.inventory() == (servers_before, volumes_before + 1)
    (made,) = rig.sim.find_restored(job.id)
    assert made.kind == RESOURCE_VOLUME and made.name == "data-again"
    assert made.metadata[MARKER_RESTORE] == job.id
    restored = rig.sim.get_volume(made.id)
    assert (restored.status, restored.size_gb) == ("available", 3)


def test_only_as_new_and_no_server_placement(rig: RestoreRig) -> None:
    source = rig.sim.create_volume_standalone("data")
    backup = volume_backups(rig, "volume-snapshot", source.id)[0]
    with pytest.raises(InvalidInput, match="as a new volume only"):
        rig.restores.plan(backup.id, mode=RestoreMode.IN_PLACE)
    with pytest.raises(InvalidInput, match="--flavor"):
        rig.restores.plan(backup.id, overrides=RestoreOverrides(flavor="m1.small"))


def test_a_cancelled_volume_restore_removes_the_volume_it_made(rig: RestoreRig) -> None:
    source = rig.sim.create_volume_standalone("data")
    backup = volume_backups(rig, "volume-backup", source.id)[0]
    before = rig.inventory()
    job = rig.restores.start(backup.id)
    runner = rig.runner()
    (claimed,) = rig.store.claim_restores(rig.clock.now(), "w-restore", lease_seconds=60)
    job = runner.advance(claimed)
    assert job.state is RestoreState.RUNNING and rig.inventory() == (before[0], before[1] + 1)
    rig.restores.cancel(job.id)
    job = runner.drive(job.id)
    assert job.state is RestoreState.CANCELLED
    assert rig.inventory() == before
