"""Whole-server backups on the real plane (fake Nova and Cinder drivers), through the engine.

An image-backed server with two attached Cinder volumes gets a ``paused`` backup: its image
and one forced snapshot per attached volume, all stamped with the backup's markers, the
pause checked against Nova's own instance actions and the server ACTIVE afterwards. One
volume is then detached and a ``crash`` backup takes only what is still attached, with no
pause. The test prints (and writes to ``whole-server-figures.txt`` in its tmp dir) the
pause's duration and the artifacts the paused backup grouped.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stackback.clock import SystemClock
from stackback.cloud.openstack import OpenStackCloud
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.policy import ArtifactKind, Backup, Policy, RunState
from stackback.ports import (
    CREATED_BY_VALUE,
    MARKER_BACKUP,
    MARKER_CREATED_BY,
    MARKER_POLICY,
    MARKER_RUN,
    MARKER_TARGET,
    MARKER_VOLUME,
    ArtifactRef,
)
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import SqlStore
from tests.cloud.contract import unique
from tests.cloud.test_contract_openstack import Plane, PlaneHarness

pytestmark = pytest.mark.openstack

MAX_PAUSE_S = 60
_PAUSED_FOR = re.compile(r"server paused (?P<seconds>\d+(\.\d+)?)s")


@pytest.fixture
def harness(openstack_plane: Plane) -> Iterator[PlaneHarness]:
    harness = PlaneHarness(openstack_plane)
    try:
        yield harness
    finally:
        harness.close()


class _Rig:
    def __init__(self, harness: PlaneHarness, tmp_path: Path, cloud_name: str = "alpha") -> None:
        db = create_db_engine(f"sqlite:///{tmp_path / 'stackback.db'}")
        upgrade(db)
        self.store = SqlStore(db)
        self.clock = SystemClock()
        self.cloud = OpenStackCloud(harness.plane.connection(cloud_name), cloud_name=cloud_name)
        settings = EngineSettings(
            poll_interval=timedelta(seconds=1), pause_poll_interval=timedelta(seconds=0.5)
        )
        self.engine = Engine(
            self.store, lambda _name: self.cloud, self.clock, settings, worker_name="w-whole"
        )
        self.policies = PolicyService(self.store, self.clock)

    def policy(self, server_id: str, consistency: str) -> Policy:
        return self.policies.create(
            PolicySpec(
                name=unique(f"whole-{consistency}"),
                targets=(server_id,),
                kind="server-consistent",
                schedules=("0 1 * * *",),
                retention=RetentionPolicy(last=5),
                consistency=consistency,
                fallback="fail",
                max_pause_seconds=MAX_PAUSE_S,
            )
        )

    def backup(self, server_id: str, policy: Policy) -> Backup:
        run = self.store.create_manual_run(
            target=server_id, now=self.clock.now(), label=None, retention=None, policy=policy
        )
        deadline = time.monotonic() + 120
        while not self.store.get_run(run.id).state.is_terminal:
            assert time.monotonic() < deadline, "the run did not end in 120 s"
            if not self.engine.step():
                time.sleep(0.5)
        done = self.store.get_run(run.id)
        assert done.state is RunState.SUCCEEDED, done.error
        backup = self.store.backup_for_run(run.id)
        assert backup is not None
        return backup


def _actions(harness: PlaneHarness, server_id: str, conn: Any = None) -> list[Any]:
    """Nova's instance actions of the server, oldest first."""
    found = list((conn or harness.alpha).compute.server_actions(server_id))
    return sorted(found, key=lambda a: (str(a.start_time), str(a.request_id)))


def _metadata(
    harness: PlaneHarness, kind: ArtifactKind, cloud_id: str, conn: Any = None
) -> dict[str, str]:
    conn = conn or harness.alpha
    if kind is ArtifactKind.IMAGE:
        image = conn.image.get_image(cloud_id)
        return {str(k): str(v) for k, v in (image.properties or {}).items()}
    snapshot = conn.block_storage.get_snapshot(cloud_id)
    return {str(k): str(v) for k, v in (snapshot.metadata or {}).items()}


def _check_grouped(
    harness: PlaneHarness, backup: Backup, server_id: str, volumes: set[str]
) -> list[tuple[str, str]]:
    """One image and one snapshot per attached volume, each stamped for this very backup."""
    kinds = sorted(a.kind.value for a in backup.artifacts)
    assert kinds == ["image"] + ["volume-snapshot"] * len(volumes), kinds
    snapshotted: set[str] = set()
    for artifact in backup.artifacts:
        stamp = _metadata(harness, artifact.kind, artifact.cloud_id)
        assert stamp.get(MARKER_CREATED_BY) == CREATED_BY_VALUE
        assert stamp.get(MARKER_BACKUP) == backup.id
        assert stamp.get(MARKER_RUN) == backup.run_id
        assert stamp.get(MARKER_POLICY) == backup.policy_id
        assert stamp.get(MARKER_TARGET) == server_id
        if artifact.kind is ArtifactKind.VOLUME_SNAPSHOT:
            found = harness.alpha.block_storage.get_snapshot(artifact.cloud_id)
            assert stamp.get(MARKER_VOLUME) == found.volume_id
            snapshotted.add(str(found.volume_id))
    assert snapshotted == volumes
    return [(a.cloud_id, a.kind.value) for a in backup.artifacts]


def _clean(rig: _Rig, harness: PlaneHarness, backups: list[Backup]) -> None:
    """Delete what the backups made, so that the harness can delete their volumes."""
    refs = [ArtifactRef(a.kind, a.cloud_id) for b in backups for a in b.artifacts]
    deadline = time.monotonic() + 60
    while refs and time.monotonic() < deadline:
        left = []
        for ref in refs:
            try:
                rig.cloud.delete_artifact(ref)
            except Exception:
                left.append(ref)
        refs = left
        if refs:
            time.sleep(1)
    for backup in backups:
        for a in backup.artifacts:
            if a.kind is ArtifactKind.VOLUME_SNAPSHOT:
                with contextlib.suppress(Exception):
                    harness.alpha.block_storage.wait_for_delete(
                        harness.alpha.block_storage.get_snapshot(a.cloud_id), interval=1, wait=60
                    )


def test_a_paused_whole_server_backup_on_the_plane_then_a_crash_one_after_a_detach(
    harness: PlaneHarness, tmp_path: Path
) -> None:
    rig = _Rig(harness, tmp_path)
    backups: list[Backup] = []
    try:
        server = harness.create_server(unique("whole-e2e"))
        first, second = harness.attach_new_volume(server.id), harness.attach_new_volume(server.id)
        before = {a.request_id for a in _actions(harness, server.id)}

        paused = rig.backup(server.id, rig.policy(server.id, "paused"))
        backups.append(paused)
        grouped = _check_grouped(harness, paused, server.id, {first, second})
        assert paused.consistency == "paused", paused.consistency_detail
        new = [a for a in _actions(harness, server.id) if a.request_id not in before]
        names = [a.action for a in new]
        assert "pause" in names and "unpause" in names, names
        assert names.index("pause") < names.index("createImage") < names.index("unpause"), names
        assert harness.alpha.compute.get_server(server.id).status == "ACTIVE"
        found = _PAUSED_FOR.search(paused.consistency_detail or "")
        assert found, paused.consistency_detail
        held = float(found["seconds"])
        assert 0 < held <= MAX_PAUSE_S
        line = (
            f"whole-server paused backup {paused.id} on the plane: paused {held:.1f}s "
            f"(max {MAX_PAUSE_S}s); grouped "
            + ", ".join(f"{kind} {cloud_id}" for cloud_id, kind in grouped)
        )
        print("\n" + line)
        (tmp_path / "whole-server-figures.txt").write_text(line + "\n")

        harness.alpha.compute.delete_volume_attachment(server.id, second)
        harness.alpha.block_storage.wait_for_status(
            harness.alpha.block_storage.get_volume(second), "available", interval=1, wait=120
        )
        before = {a.request_id for a in _actions(harness, server.id)}
        crash = rig.backup(server.id, rig.policy(server.id, "crash"))
        backups.append(crash)
        _check_grouped(harness, crash, server.id, {first})
        assert crash.consistency == "crash", crash.consistency_detail
        names = [a.action for a in _actions(harness, server.id) if a.request_id not in before]
        assert "pause" not in names, names
        assert harness.alpha.compute.get_server(server.id).status == "ACTIVE"
    finally:
        with contextlib.suppress(Exception):
            _clean(rig, harness, [rig.store.get_backup(b.id) for b in backups])
        rig.store.dispose()


def test_volumes_of_a_consistent_group_are_one_group_snapshot_in_a_paused_backup_on_the_plane(
    harness: PlaneHarness, tmp_path: Path
) -> None:
    """As admin (only admins can read a group type's promise): two attached volumes in a
    group whose type promises consistent snapshots, one attached volume in no group."""
    rig = _Rig(harness, tmp_path, cloud_name="admin")
    admin = harness.admin
    cinder: Any = admin.block_storage
    server_id = ""
    backup: Backup | None = None
    try:
        server = admin.compute.create_server(
            name=unique("whole-group"),
            flavor_id=harness.flavor_id,
            image_id=harness.image_id,
            networks="none",
        )
        server_id = server.id
        group_id, grouped = harness.create_volume_group(True, 2)
        alone = cinder.create_volume(size=1, name=unique("whole-alone"))
        cinder.wait_for_status(alone, "available", interval=1, wait=120)
        admin.compute.wait_for_server(server, interval=1, wait=180)
        for volume_id in (*grouped, alone.id):
            admin.compute.create_volume_attachment(server_id, volume_id=volume_id)
            cinder.wait_for_status(cinder.get_volume(volume_id), "in-use", interval=1, wait=120)
        before = {a.request_id for a in _actions(harness, server_id, admin)}

        backup = rig.backup(server_id, rig.policy(server_id, "paused"))
        kinds = sorted(a.kind.value for a in backup.artifacts)
        assert kinds == ["group-snapshot", "image"] + ["volume-snapshot"] * 3, kinds
        (group_snapshot,) = [
            a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.GROUP_SNAPSHOT
        ]
        found = cinder.get_group_snapshot(group_snapshot)
        assert found.group_id == group_id and found.status == "available"
        recorded = {a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.VOLUME_SNAPSHOT}
        members = {
            str(s.volume_id): str(s.id) for s in cinder.snapshots(details=True) if s.id in recorded
        }
        assert set(members) == {*grouped, alone.id}
        in_group = {
            str(s.id)
            for s in cinder.snapshots(details=True)
            if getattr(s, "group_snapshot_id", None) == group_snapshot
        }
        assert in_group == {members[v] for v in grouped}
        for snapshot_id in recorded:
            stamp = _metadata(harness, ArtifactKind.VOLUME_SNAPSHOT, snapshot_id, admin)
            assert stamp.get(MARKER_BACKUP) == backup.id
            assert stamp.get(MARKER_VOLUME) in members
        detail = backup.consistency_detail or ""
        assert f"group snapshot {group_snapshot} of consistency group {group_id}" in detail
        assert f"per volume: {alone.id}" in detail
        assert backup.consistency == "paused", detail
        names = [
            a.action for a in _actions(harness, server_id, admin) if a.request_id not in before
        ]
        assert "pause" in names and "unpause" in names, names
        assert admin.compute.get_server(server_id).status == "ACTIVE"
        line = f"whole-server paused backup {backup.id} with a consistency group: {detail}"
        print("\n" + line)
        (tmp_path / "whole-server-group.txt").write_text(line + "\n")
    finally:
        if backup is not None:
            with contextlib.suppress(Exception):
                _clean(rig, harness, [rig.store.get_backup(backup.id)])
        if server_id:
            with contextlib.suppress(Exception):
                admin.compute.delete_server(server_id)
                admin.compute.wait_for_delete(server, interval=1, wait=120)
        with contextlib.suppress(Exception):
            cinder.delete_volume(alone.id)
        rig.store.dispose()
