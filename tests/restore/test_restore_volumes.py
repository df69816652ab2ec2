"""restore --in-place --volumes: a whole-server backup of an image-backed server puts back
its root disk and each data volume (a new volume from its snapshot, attached in place of the
old one, which is detached and kept)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from stackback.errors import InvalidInput
from stackback.policy import ArtifactKind, Backup, RunState
from stackback.ports import MARKER_RESTORE
from stackback.restoreplan import RestoreMode, RestoreState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.store.sql import RunFilter
from tests.restore.conftest import RestoreRig


def whole_server_backup(rig: RestoreRig, server_id: str) -> Backup:
    PolicyService(rig.store, rig.clock).create(
        PolicySpec(
            name="whole",
            targets=(server_id,),
            kind="server-consistent",
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=3),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(days=1))
    (run,) = rig.store.list_runs(RunFilter(limit=10))
    assert run.state is RunState.SUCCEEDED, run.error
    return rig.store.get_backup(run.backup_id or "")


def _attached(rig: RestoreRig, server_id: str) -> dict[str, Any]:
    with rig.sim._db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM volumes WHERE server_id = ? ORDER BY device_name", (server_id,)
        ).fetchall()
    return {row["device_name"]: row for row in rows}


def test_in_place_with_volumes_swaps_each_data_volume_and_keeps_the_old_one(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("db", volumes=2)
    backup = whole_server_backup(rig, source.id)
    before = _attached(rig, source.id)
    snapshots = {a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.VOLUME_SNAPSHOT}

    plan = rig.restores.plan(backup.id, mode=RestoreMode.IN_PLACE, with_volumes=True).plan
    assert {v.replaces for v in plan.volumes} == set(source.attached_volumes)
    assert sum("detached and kept" in note for note in plan.notes) == 2

    job = rig.runner().drive(
        rig.restores.start(backup.id, mode=RestoreMode.IN_PLACE, with_volumes=True).id
    )
    assert job.state is RestoreState.SUCCEEDED, job.error
    after = _attached(rig, source.id)
    assert set(after) == set(before)  # the same devices
    for device, old in before.items():
        new = after[device]
        assert new["id"] != old["id"]
        assert new["snapshot_id"] in snapshots
        assert job.id in new["metadata"] and MARKER_RESTORE in new["metadata"]
    kept = [rig.sim.resource_status("volume", v) for v in source.attached_volumes]
    assert [v.status for v in kept] == ["available", "available"]  # detached, not deleted
    details = " ".join(step.detail for step in job.steps)
    assert all(f"volume {v}" in details and "kept" in details for v in source.attached_volumes)


def test_volumes_needs_in_place_and_a_backup_with_volume_snapshots(rig: RestoreRig) -> None:
    source = rig.sim.create_server("db", volumes=1)
    backup = whole_server_backup(rig, source.id)
    with pytest.raises(InvalidInput, match="--in-place"):
        rig.restores.plan(backup.id, with_volumes=True)
    plain = rig.sim.create_server("web", volumes=1)
    image_only = rig.backup(plain.id)
    with pytest.raises(InvalidInput, match="no data volume snapshots"):
        rig.restores.plan(image_only.id, mode=RestoreMode.IN_PLACE, with_volumes=True)


def test_in_place_without_volumes_says_the_snapshots_are_not_restored(rig: RestoreRig) -> None:
    source = rig.sim.create_server("db", volumes=1)
    backup = whole_server_backup(rig, source.id)
    plan = rig.restores.plan(backup.id, mode=RestoreMode.IN_PLACE).plan
    assert plan.volumes == ()
    assert any("--in-place --volumes" in note for note in plan.notes)


def test_as_new_a_whole_server_backup_comes_back_with_every_data_volume(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("db", volumes=2)
    backup = whole_server_backup(rig, source.id)
    before = _attached(rig, source.id)
    snapshots = {a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.VOLUME_SNAPSHOT}

    plan = rig.restores.plan(backup.id).plan
    assert plan.image_id is not None  # the root disk from the image, as before
    assert {v.snapshot_id for v in plan.volumes} == snapshots
    assert all(v.replaces is None and v.boot_index is None for v in plan.volumes)
    assert not any("not restored" in note for note in plan.notes)

    job = rig.runner().drive(rig.restores.start(backup.id).id)
    assert job.state is RestoreState.SUCCEEDED, job.error
    assert job.server_id is not None and job.server_id != source.id
    after = _attached(rig, job.server_id)
    assert set(after) == set(before)  # every data volume, at its device
    for device, old in before.items():
        new = after[device]
        assert new["id"] != old["id"] and new["snapshot_id"] in snapshots
        assert new["size"] == old["size"]
        assert job.id in new["metadata"] and MARKER_RESTORE in new["metadata"]
    assert _attached(rig, source.id).keys() == before.keys()  # the source is left as it was
