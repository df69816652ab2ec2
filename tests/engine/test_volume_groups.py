"""Cinder consistency groups in whole-server backups, on the simulator: volumes of a group
whose type promises consistent group snapshots are taken as one group snapshot, others per
volume; the backup says which, and never claims a group snapshot that was not taken."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest

from stackback.engine import consistent as consistent_module
from stackback.errors import CloudRejected
from stackback.policy import ArtifactKind, Backup, BackupStatus, RunState
from stackback.ports import MARKER_BACKUP, MARKER_RUN, MARKER_VOLUME
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from stackback.store.sql import RunFilter
from tests.engine.conftest import Rig
from tests.engine.test_whole_server import DAY, data_server, one_day, policy

PROMISE = {"consistent_group_snapshot_enabled": "<is> True"}
_CLAIMED = re.compile(r"group snapshot (?P<id>[0-9a-f-]{36})")


def _group(rig: Rig, volumes: tuple[str, ...], specs: dict[str, str] | None = None) -> str:
    group_type = rig.sim.create_group_type("cg", PROMISE if specs is None else specs)
    return rig.sim.create_volume_group("grp", group_type, volumes)


def _claims_are_true(rig: Rig, backup: Backup) -> set[str]:
    """Every group snapshot the detail names was taken, is this backup's, and is recorded."""
    claimed = set(_CLAIMED.findall(backup.consistency_detail or ""))
    taken = {info.ref.id: info for info in rig.sim.group_snapshots()}
    recorded = {a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.GROUP_SNAPSHOT}
    assert claimed <= set(taken), "the detail claims a group snapshot that was not taken"
    assert claimed == recorded
    for snapshot in claimed:
        assert taken[snapshot].metadata.get(MARKER_BACKUP) == backup.id
    return claimed


def _members(rig: Rig, backup: Backup) -> dict[str, str]:
    """Volume id → snapshot id of the backup's volume snapshots."""
    ids = {a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.VOLUME_SNAPSHOT}
    return {s.volume_id: s.id for s in rig.sim.snapshots() if s.id in ids}


def test_a_group_that_promises_consistency_is_one_group_snapshot_the_rest_per_volume(
    rig: Rig,
) -> None:
    server = data_server(rig, volumes=3)
    first, second, third = server.attached_volumes
    group = _group(rig, (first, second))
    policy(rig, server.id, consistency="paused")
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED and backup.status is BackupStatus.AVAILABLE
    (taken,) = rig.sim.group_snapshots()
    assert _claims_are_true(rig, backup) == {taken.ref.id}
    members = _members(rig, backup)
    assert set(members) == {first, second, third}
    assert {c.id for c in taken.children} == {members[first], members[second]}
    assert members[third] not in {c.id for c in taken.children}
    for snap in rig.sim.snapshots():
        assert snap.metadata[MARKER_BACKUP] == backup.id
        assert snap.metadata[MARKER_VOLUME] == snap.volume_id
        assert snap.metadata[MARKER_RUN] == run.id
    detail = backup.consistency_detail or ""
    assert f"consistency group {group}" in detail and f"per volume: {third}" in detail
    assert backup.consistency == "paused"


def test_a_group_whose_type_promises_nothing_is_snapshotted_per_volume_and_says_why(
    rig: Rig,
) -> None:
    server = data_server(rig, volumes=2)
    group = _group(rig, server.attached_volumes, specs={})
    policy(rig, server.id)
    _, backup = one_day(rig)
    assert rig.sim.group_snapshots() == []
    assert _claims_are_true(rig, backup) == set()
    assert set(_members(rig, backup)) == set(server.attached_volumes)
    detail = backup.consistency_detail or ""
    assert "per volume" in detail and f"group {group}: its type does not set" in detail


def test_a_group_holding_a_volume_outside_the_backup_is_snapshotted_per_volume(
    rig: Rig,
) -> None:
    server = data_server(rig, volumes=1)
    elsewhere = rig.sim.create_volume_standalone("other").id
    _group(rig, (server.attached_volumes[0], elsewhere))
    policy(rig, server.id)
    _, backup = one_day(rig)
    assert rig.sim.group_snapshots() == []
    assert f"also holds {elsewhere}" in (backup.consistency_detail or "")
    assert set(_members(rig, backup)) == {server.attached_volumes[0]}


def test_a_group_snapshot_cinder_refuses_is_taken_per_volume_and_never_claimed(
    rig: Rig,
) -> None:
    server = data_server(rig, volumes=2)
    _group(rig, server.attached_volumes)
    rig.sim.fail_next("create_group_snapshot", CloudRejected)
    policy(rig, server.id)
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED
    assert rig.sim.group_snapshots() == []
    assert _claims_are_true(rig, backup) == set()
    assert "Cinder refused a group snapshot" in (backup.consistency_detail or "")
    assert set(_members(rig, backup)) == set(server.attached_volumes)


def test_rotation_deletes_a_group_snapshot_with_its_members(rig: Rig) -> None:
    server = data_server(rig, volumes=2)
    _group(rig, server.attached_volumes)
    rig.policies.create(
        PolicySpec(
            name="one",
            targets=(server.id,),
            kind="server-consistent",
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=1),
        )
    )
    _, old = one_day(rig)
    _, new = one_day(rig)
    gone = rig.store.get_backup(old.id)
    assert gone.status is BackupStatus.DELETED, [
        (a.kind, a.status, a.error) for a in gone.artifacts
    ]
    left = rig.sim.group_snapshots()
    assert [g.metadata[MARKER_BACKUP] for g in left] == [new.id]
    assert all(s.metadata[MARKER_BACKUP] == new.id for s in rig.sim.snapshots())
    assert all(a.error is None for a in gone.artifacts)


def test_members_going_with_their_group_snapshot_are_waited_for_not_deleted_again(
    rig: Rig,
) -> None:
    rig.sim.configure(replace(rig.sim.config(), snapshot_delete_seconds=120))
    server = data_server(rig, volumes=2)
    _group(rig, server.attached_volumes)
    made = policy(rig, server.id)
    _, old = one_day(rig)
    _, _new = one_day(rig)
    rig.store.update_backup(old.id, status=BackupStatus.DELETING)
    for _ in range(3):
        rig.engine.collector.collect_pending()
        rig.clock.advance(60)
    gone = rig.store.get_backup(old.id)
    assert gone.status is BackupStatus.DELETED
    assert [a.error for a in gone.artifacts if a.error] == []
    assert made.id == gone.policy_id


class _WorkerDied(BaseException):
    """Stands for kill -9: nothing of the dying worker runs after it."""


def test_a_worker_dying_before_stamping_the_members_is_resumed_without_snapshotting_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = data_server(rig, volumes=2)
    _group(rig, server.attached_volumes)
    policy(rig, server.id)

    def failpoint(at: str) -> None:
        if at == "after-group-snapshot":
            raise _WorkerDied(at)

    monkeypatch.setattr(consistent_module, "failpoint", failpoint)
    with pytest.raises(_WorkerDied):
        rig.engine.drain(rig.clock.now() + DAY)
    assert all(MARKER_BACKUP not in s.metadata for s in rig.sim.snapshots())  # not stamped
    monkeypatch.undo()
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))  # the lease expires: taken over
    run = rig.store.list_runs(RunFilter(limit=10))[0]
    assert run.state is RunState.SUCCEEDED and run.attempt > 1
    backup = rig.store.get_backup(run.backup_id or "")
    assert len(rig.sim.snapshots()) == 2 and len(rig.sim.group_snapshots()) == 1
    assert _members(rig, backup).keys() == set(server.attached_volumes)
    for snap in rig.sim.snapshots():
        assert snap.metadata[MARKER_BACKUP] == backup.id
        assert snap.metadata[MARKER_VOLUME] == snap.volume_id
