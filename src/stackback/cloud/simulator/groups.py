"""Cinder groups, group types and group snapshots, as the simulator models them.

* A group type promises consistent group snapshots through its group spec
  ``consistent_group_snapshot_enabled="<is> True"``; a volume is in at most one group.
* A group snapshot (``POST /group_snapshots``) makes one member snapshot per volume of the
  group at once, named as the group snapshot and without metadata; all of them are
  ``creating`` for ``volume_snapshot_seconds``, then ``available``. The simulator refuses
  (``CloudRejected``) a group snapshot of a group whose type does not promise consistency:
  stackback must never take one and call it consistent.
* Deleting a group snapshot deletes its members with it; a member cannot be deleted on its
  own (Cinder's 400 "must not be part of a group", ``CloudBusy`` as the adapter reports it).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence

from stackback.cloud.simulator.db import SimCall
from stackback.cloud.simulator.model import instant, snapshot_state
from stackback.cloud.simulator.pausing import snapshot_volume
from stackback.cloud.states import CINDER_SNAPSHOT_STATES
from stackback.consistency import CONSISTENT_GROUP_SPEC, VolumeGroup, promises_consistent_snapshots
from stackback.databases import read_markers
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected
from stackback.policy import ArtifactKind
from stackback.ports import ArtifactInfo, ArtifactRef, GroupSnapshot

CINDER_NAME_MAX = 255
MEMBER_REFUSAL = (
    "Invalid snapshot: Snapshot status must be available or error and must not be part of a group."
)


def add_group_type(call: SimCall, name: str, specs: Mapping[str, str]) -> str:
    type_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO group_types (id, name, specs) VALUES (?, ?, ?)",
        (type_id, name, json.dumps(dict(specs))),
    )
    return type_id


def add_group(call: SimCall, name: str, group_type: str, volume_ids: Sequence[str]) -> str:
    if (
        call.conn.execute("SELECT 1 FROM group_types WHERE id = ?", (group_type,)).fetchone()
        is None
    ):
        raise CloudNotFound(f"Group type {group_type} could not be found.")
    group_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO volume_groups (id, project, name, group_type, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (group_id, call.project, name, group_type, call.now),
    )
    for volume_id in volume_ids:
        row = call.conn.execute(
            "SELECT group_id FROM volumes WHERE id = ? AND project = ?", (volume_id, call.project)
        ).fetchone()
        if row is None:
            raise CloudNotFound(f"Volume {volume_id} could not be found.")
        if row["group_id"]:
            raise CloudRejected(f"Volume {volume_id} is already in group {row['group_id']}.")
        call.conn.execute("UPDATE volumes SET group_id = ? WHERE id = ?", (group_id, volume_id))
    return group_id


def _group(call: SimCall, row: sqlite3.Row) -> VolumeGroup:
    type_row = call.conn.execute(
        "SELECT * FROM group_types WHERE id = ?", (row["group_type"],)
    ).fetchone()
    specs = json.loads(type_row["specs"]) if type_row is not None else {}
    members = call.conn.execute(
        "SELECT id FROM volumes WHERE group_id = ? ORDER BY created_at, id", (row["id"],)
    ).fetchall()
    consistent = promises_consistent_snapshots(specs)
    return VolumeGroup(
        id=row["id"],
        name=row["name"],
        volume_ids=tuple(m["id"] for m in members),
        group_type=row["group_type"],
        consistent=consistent,
        why_not="" if consistent else f"its type does not set {CONSISTENT_GROUP_SPEC}",
    )


def groups_of(call: SimCall, volume_ids: Sequence[str]) -> list[VolumeGroup]:
    rows = call.conn.execute(
        "SELECT g.* FROM volume_groups g WHERE g.project = ? AND g.id IN"
        " (SELECT group_id FROM volumes WHERE id IN (SELECT value FROM json_each(?)))"
        " ORDER BY g.created_at, g.id",
        (call.project, json.dumps(list(volume_ids))),
    ).fetchall()
    return [_group(call, row) for row in rows]


def create_group_snapshot(
    call: SimCall, group_id: str, name: str, description: str
) -> GroupSnapshot:
    row = call.conn.execute(
        "SELECT * FROM volume_groups WHERE id = ? AND project = ?", (group_id, call.project)
    ).fetchone()
    if row is None:
        raise CloudNotFound(f"Group {group_id} could not be found.")
    group = _group(call, row)
    if not group.consistent:
        raise CloudRejected(
            f"group {group_id}: its type does not promise consistent group snapshots"
        )
    if len(name) > CINDER_NAME_MAX or len(description) > CINDER_NAME_MAX:
        raise CloudRejected("Invalid input: group snapshot name or description over 255")
    snapshot_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO group_snapshots (id, project, group_id, name, description, created_at,"
        " ready_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            snapshot_id,
            call.project,
            group_id,
            name,
            description,
            call.now,
            call.now + call.config.volume_snapshot_seconds,
        ),
    )
    members: dict[str, ArtifactRef] = {}
    for volume_id in group.volume_ids:
        member = snapshot_volume(call, volume_id, name, {})
        call.conn.execute(
            "UPDATE snapshots SET group_snapshot_id = ? WHERE id = ?", (snapshot_id, member)
        )
        members[volume_id] = ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, member)
    return GroupSnapshot(ArtifactRef(ArtifactKind.GROUP_SNAPSHOT, snapshot_id), members)


def members_of(call: SimCall, snapshot_id: str) -> dict[str, ArtifactRef]:
    rows = call.conn.execute(
        "SELECT id, volume_id FROM snapshots WHERE group_snapshot_id = ? AND project = ?"
        " AND gone_at IS NULL ORDER BY created_at, id",
        (snapshot_id, call.project),
    ).fetchall()
    return {r["volume_id"]: ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, r["id"]) for r in rows}


def group_snapshot_row(call: SimCall, snapshot_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM group_snapshots WHERE id = ? AND project = ?", (snapshot_id, call.project)
    ).fetchone()
    if row is None or snapshot_state(row, call.now) == "deleted":
        return None
    return row


def delete_group_snapshot(call: SimCall, snapshot_id: str) -> None:
    """Delete a group snapshot and its members (it must be available)."""
    row = group_snapshot_row(call, snapshot_id)
    if row is None:
        return
    if snapshot_state(row, call.now) != "available":
        raise CloudBusy("Invalid group snapshot: group snapshot status must be available or error")
    gone_at = call.now + call.config.snapshot_delete_seconds
    call.conn.execute("UPDATE group_snapshots SET gone_at = ? WHERE id = ?", (gone_at, snapshot_id))
    call.conn.execute(
        "UPDATE snapshots SET gone_at = ? WHERE group_snapshot_id = ? AND gone_at IS NULL",
        (gone_at, snapshot_id),
    )


def in_live_group_snapshot(call: SimCall, snapshot: sqlite3.Row) -> bool:
    """Is this volume snapshot a member of a group snapshot that is not being deleted?"""
    owner = snapshot["group_snapshot_id"]
    if not owner:
        return False
    row = group_snapshot_row(call, owner)
    return row is not None and row["gone_at"] is None


def group_snapshot_artifacts(call: SimCall, ids: Sequence[str] | None = None) -> list[ArtifactInfo]:
    rows = call.conn.execute(
        "SELECT * FROM group_snapshots WHERE project = ? ORDER BY created_at, id", (call.project,)
    ).fetchall()
    found = []
    for row in rows:
        if ids is not None and row["id"] not in ids:
            continue
        status = snapshot_state(row, call.now)
        if status == "deleted":
            continue
        members = call.conn.execute(
            "SELECT id FROM snapshots WHERE group_snapshot_id = ? ORDER BY created_at, id",
            (row["id"],),
        ).fetchall()
        found.append(
            ArtifactInfo(
                ref=ArtifactRef(ArtifactKind.GROUP_SNAPSHOT, row["id"]),
                status=CINDER_SNAPSHOT_STATES[status],
                name=row["name"],
                metadata=read_markers(row["description"]),
                created_at=instant(row["created_at"]),
                children=tuple(ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, m["id"]) for m in members),
                detail=f"cinder group snapshot status {status} (group {row['group_id']})",
                raw_status=status,
            )
        )
    return found
