"""The :class:`~stackback.ports.GroupCloud` port over Cinder's group APIs (openstacksdk's
``block_storage`` v3 group, group type and group snapshot resources; microversion 3.14+).

A group type promises consistent group snapshots through its group spec
``consistent_group_snapshot_enabled``; Cinder shows group specs to admins only, so with a
project member's credentials no group can be seen to promise it and every volume is
snapshotted on its own (the backup says why). A group snapshot of a group that is not
seen to promise it is refused here before Cinder is asked (Cinder would take a generic,
not consistent, one). Group snapshots carry no metadata: the markers are in their
description (``stackback.databases.read_markers``); their member snapshots are listed
with ``group_snapshot_id`` and are their ``children``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from stackback.cloud.openstack.convert import cinder_snapshot_status, timestamp
from stackback.cloud.openstack.errors import cloud_errors
from stackback.consistency import CONSISTENT_GROUP_SPEC, VolumeGroup, promises_consistent_snapshots
from stackback.databases import read_markers
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected
from stackback.policy import ArtifactKind
from stackback.ports import ArtifactInfo, ArtifactRef, GroupSnapshot

SPECS_HIDDEN = (
    "its group type's specs are not visible to these credentials (Cinder shows them to "
    f"admins only), so it cannot be seen to promise consistent snapshots ({CONSISTENT_GROUP_SPEC})"
)


class OpenStackGroupOperations:
    """The Cinder group calls, mixed into :class:`~stackback.cloud.openstack.OpenStackCloud`."""

    @property
    def conn(self) -> Connection:
        raise NotImplementedError

    @property
    def _where(self) -> str:
        raise NotImplementedError

    def volume_groups_of(self, volume_ids: Sequence[str]) -> list[VolumeGroup]:
        """The groups any of these volumes is in (by each volume's ``group_id``)."""
        cinder: Any = self.conn.block_storage
        with cloud_errors(f"looking up the groups of volumes on {self._where}"):
            group_ids: list[str] = []
            for volume_id in volume_ids:
                group_id = getattr(cinder.get_volume(volume_id), "group_id", None)
                if group_id and str(group_id) not in group_ids:
                    group_ids.append(str(group_id))
            if not group_ids:
                return []
            volumes = list(cinder.volumes(details=True))
            return [self._group(cinder, group_id, volumes) for group_id in group_ids]

    def create_group_snapshot(self, group_id: str, name: str, description: str) -> GroupSnapshot:
        """``POST /group_snapshots`` of a group seen to promise consistency; its members."""
        cinder: Any = self.conn.block_storage
        with cloud_errors(f"group snapshot of group {group_id} on {self._where}"):
            group = self._group(cinder, group_id, list(cinder.volumes(details=True)))
            if not group.consistent:
                raise CloudRejected(f"group {group_id}: {group.why_not}")
            made = cinder.create_group_snapshot(
                group_id=group_id, name=name, description=description
            )
        members = self.group_snapshot_members(str(made.id))
        return GroupSnapshot(ArtifactRef(ArtifactKind.GROUP_SNAPSHOT, str(made.id)), members)

    def group_snapshot_members(self, group_snapshot_id: str) -> dict[str, ArtifactRef]:
        """Volume id → member snapshot (Cinder lists them with ``group_snapshot_id``)."""
        cinder: Any = self.conn.block_storage
        with cloud_errors(f"listing the snapshots of group snapshot {group_snapshot_id}"):
            return {
                str(s.volume_id): ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, str(s.id))
                for s in cinder.snapshots(details=True)
                if getattr(s, "group_snapshot_id", None) == group_snapshot_id
                and s.status != "deleted"
            }

    def _group(self, cinder: Any, group_id: str, volumes: Sequence[Any]) -> VolumeGroup:
        group = cinder.get_group(group_id)
        group_type = cinder.get_group_type(group.group_type)
        specs = {str(k): str(v) for k, v in (group_type.group_specs or {}).items()}
        consistent = promises_consistent_snapshots(specs)
        why = ""
        if not consistent:
            why = (
                f"its type {group_type.name} does not promise consistent snapshots"
                if specs
                else SPECS_HIDDEN
            )
        return VolumeGroup(
            id=str(group.id),
            name=str(group.name or group.id),
            volume_ids=tuple(
                str(v.id) for v in volumes if getattr(v, "group_id", None) == group.id
            ),
            group_type=str(group.group_type),
            consistent=consistent,
            why_not=why,
        )

    def _group_snapshots(self, *, optional: bool = False) -> list[ArtifactInfo]:
        """The project's group snapshots with their members; ``optional``: a cloud without
        the group API (older than 3.14) has none."""
        cinder: Any = self.conn.block_storage
        try:
            with cloud_errors(f"listing group snapshots on {self._where}"):
                found = list(cinder.group_snapshots(details=True))
                if not found:
                    return []
                snapshots = list(cinder.snapshots(details=True))
        except (CloudRejected, CloudNotFound):
            if optional:
                return []
            raise
        return [_group_snapshot_info(g, snapshots) for g in found if g.status != "deleted"]

    def _delete_group_snapshot(self, snapshot_id: str) -> None:
        """Deletes its members with it; one not ``available`` (400) is ``CloudBusy``."""
        try:
            with cloud_errors(f"deleting group snapshot {snapshot_id} on {self._where}"):
                cinder: Any = self.conn.block_storage
                cinder.delete_group_snapshot(snapshot_id, ignore_missing=True)
        except CloudRejected as exc:
            if not isinstance(exc.__cause__, sdk_exc.BadRequestException):
                raise
            raise CloudBusy(f"{exc.message} (group snapshot not deletable now)") from exc


def _group_snapshot_info(group_snapshot: Any, snapshots: Sequence[Any]) -> ArtifactInfo:
    members = [s for s in snapshots if getattr(s, "group_snapshot_id", None) == group_snapshot.id]
    status = str(group_snapshot.status or "")
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.GROUP_SNAPSHOT, str(group_snapshot.id)),
        status=cinder_snapshot_status(status),
        name=str(group_snapshot.name or ""),
        metadata=read_markers(group_snapshot.description),
        created_at=timestamp(group_snapshot.created_at),
        children=tuple(ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, str(s.id)) for s in members),
        detail=f"cinder group snapshot status {status} (group {group_snapshot.group_id})",
        raw_status=status,
    )
