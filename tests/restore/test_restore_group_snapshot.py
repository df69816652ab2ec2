"""A whole-server backup whose data volumes were taken as one Cinder group snapshot restores
as new like any other: every data volume from its member snapshot, at its device."""

from __future__ import annotations

from stackback.policy import ArtifactKind
from stackback.restoreplan import RestoreState
from tests.restore.conftest import RestoreRig
from tests.restore.test_restore_volumes import _attached, whole_server_backup


def test_as_new_from_a_group_snapshot_brings_back_every_data_volume(rig: RestoreRig) -> None:
    source = rig.sim.create_server("db", volumes=2)
    group_type = rig.sim.create_group_type("cg", {"consistent_group_snapshot_enabled": "<is> True"})
    rig.sim.create_volume_group("grp", group_type, source.attached_volumes)
    backup = whole_server_backup(rig, source.id)
    assert ArtifactKind.GROUP_SNAPSHOT in {a.kind for a in backup.artifacts}
    (taken,) = rig.sim.group_snapshots()
    members = {c.id for c in taken.children}
    before = _attached(rig, source.id)

    plan = rig.restores.plan(backup.id).plan
    assert {v.snapshot_id for v in plan.volumes} == members

    job = rig.runner().drive(rig.restores.start(backup.id).id)
    assert job.state is RestoreState.SUCCEEDED, job.error
    assert job.server_id is not None
    after = _attached(rig, job.server_id)
    assert set(after) == set(before)
    assert {new["snapshot_id"] for new in after.values()} == members
