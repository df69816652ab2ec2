"""Cinder volumes and the Cinder backup service, as the simulator models them.

* A backup (``POST /backups``, ``force=True`` for an in-use volume) is ``creating`` for
  ``volume_backup_seconds``, then ``available``.
* An incremental backup's parent is chosen by Cinder, not by the caller: the latest
  available backup of the volume (none: 400, "No backups available to do an incremental
  backup."). It is read back as the backup's ``parent_id``.
* A backup whose failure was scripted (``KILL_VOLUME_BACKUP``) ends ``error`` instead. A
  failed incremental keeps its ``parent_id`` and, as in Cinder (``num_dependent_backups``
  counts every child, whatever its status), still counts against its parent; it is never
  chosen as a parent itself.
* Deleting a backup that increments depend on (failed ones too) is refused with a 400,
  "Incremental backups exist for this backup." (``CloudRejected``); one still ``creating``
  is refused too (``CloudBusy``, transient). One in ``error`` may be deleted.
* A volume restored from a backup (``POST /backups/{id}/restore`` with a new volume) is
  ``creating`` for ``volume_create_seconds``, then ``available``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping

from stackback.cloud.simulator.db import SimCall, consume_fault
from stackback.cloud.simulator.model import instant
from stackback.cloud.simulator.restore import volume_state
from stackback.cloud.states import CINDER_BACKUP_STATES
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected
from stackback.policy import ArtifactKind, Selector
from stackback.ports import ArtifactInfo, ArtifactRef, VolumeInfo

CINDER_NAME_MAX = 255
KILL_VOLUME_BACKUP = "kill_volume_backup"
"""A scripted fault: the next backup of the volume ends in ``error``."""


def volume_info(row: sqlite3.Row, now: float) -> VolumeInfo:
    return VolumeInfo(
        id=row["id"],
        name=row["name"] or row["id"],
        status=volume_state(row, now),
        size_gb=int(row["size"]),
        metadata=json.loads(row["metadata"] or "{}"),
        volume_type=row["volume_type"],
        availability_zone=row["availability_zone"],
    )


def find_volume(call: SimCall, volume: str) -> VolumeInfo:
    """By id, else by unique name."""
    row = call.conn.execute(
        "SELECT * FROM volumes WHERE id = ? AND project = ?", (volume, call.project)
    ).fetchone()
    if row is None:
        rows = call.conn.execute(
            "SELECT * FROM volumes WHERE name = ? AND project = ?", (volume, call.project)
        ).fetchall()
        if len(rows) > 1:
            raise CloudRejected(f"more than one volume is named {volume!r}: use its id")
        row = rows[0] if rows else None
    if row is None:
        raise CloudNotFound(f"Volume {volume} could not be found.")
    return volume_info(row, call.now)


def matching_volumes(call: SimCall, selector: Selector) -> list[VolumeInfo]:
    rows = call.conn.execute(
        "SELECT * FROM volumes WHERE project = ? ORDER BY created_at, id", (call.project,)
    ).fetchall()
    volumes = [volume_info(row, call.now) for row in rows]
    return [v for v in volumes if selector.matches(dict(v.metadata))]


def backup_state(row: sqlite3.Row, now: float) -> str:
    if now < row["ready_at"]:
        return "creating"
    return "error" if row["doomed"] else "available"


def start_backup(
    call: SimCall, volume_id: str, name: str, metadata: Mapping[str, str], *, incremental: bool
) -> str:
    volume = find_volume(call, volume_id)
    if volume.id != volume_id:
        raise CloudNotFound(f"Volume {volume_id} could not be found.")
    if len(name) > CINDER_NAME_MAX:
        raise CloudRejected(f"Invalid input: backup name {name!r} is over 255 characters")
    parent_id = None
    if incremental:
        rows = call.conn.execute(
            "SELECT * FROM volume_backups WHERE volume_id = ? AND project = ?"
            " ORDER BY created_at DESC, id DESC",
            (volume_id, call.project),
        ).fetchall()
        parent = next((r for r in rows if backup_state(r, call.now) == "available"), None)
        if parent is None:
            raise CloudRejected("Invalid backup: No backups available to do an incremental backup.")
        parent_id = parent["id"]
    doomed = consume_fault(call.conn, call.project, KILL_VOLUME_BACKUP, volume_id) is not None
    backup_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO volume_backups (id, project, name, volume_id, size, metadata, parent_id,"
        " created_at, ready_at, doomed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            backup_id,
            call.project,
            name,
            volume_id,
            volume.size_gb,
            json.dumps({k: str(v) for k, v in metadata.items()}),
            parent_id,
            call.now,
            call.now + call.config.volume_backup_seconds,
            int(doomed),
        ),
    )
    return backup_id


def backup_row(call: SimCall, backup_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM volume_backups WHERE id = ? AND project = ?", (backup_id, call.project)
    ).fetchone()
    return row


def delete_backup(call: SimCall, backup_id: str) -> None:
    row = backup_row(call, backup_id)
    if row is None:
        return
    if backup_state(row, call.now) not in ("available", "error"):
        raise CloudBusy("Invalid backup: Backup status must be available or error.")
    (children,) = call.conn.execute(
        "SELECT count(*) FROM volume_backups WHERE parent_id = ?", (backup_id,)
    ).fetchone()
    if children:
        raise CloudRejected("Invalid backup: Incremental backups exist for this backup.")
    call.conn.execute("DELETE FROM volume_backups WHERE id = ?", (backup_id,))


def backup_artifacts(call: SimCall, ids: list[str] | None = None) -> list[ArtifactInfo]:
    rows = call.conn.execute(
        "SELECT * FROM volume_backups WHERE project = ? ORDER BY created_at, id", (call.project,)
    ).fetchall()
    return [artifact_of_backup(r, call.now) for r in rows if ids is None or r["id"] in ids]


def artifact_of_backup(row: sqlite3.Row, now: float) -> ArtifactInfo:
    status = backup_state(row, now)
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.VOLUME_BACKUP, row["id"]),
        status=CINDER_BACKUP_STATES[status],
        name=row["name"],
        size=int(row["size"]),
        metadata=json.loads(row["metadata"]),
        created_at=instant(row["created_at"]),
        detail=f"cinder backup status {status}",
        raw_status=status,
        parent=ArtifactRef(ArtifactKind.VOLUME_BACKUP, row["parent_id"])
        if row["parent_id"]
        else None,
    )


def restore_backup(call: SimCall, backup_id: str, name: str, metadata: Mapping[str, str]) -> str:
    row = backup_row(call, backup_id)
    if row is None:
        raise CloudNotFound(f"Backup {backup_id} could not be found.")
    if backup_state(row, call.now) != "available":
        raise CloudBusy("Invalid backup: Backup status must be available.")
    volume_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO volumes (id, project, server_id, size, device_name, boot_index, name,"
        " volume_type, delete_on_termination, metadata, availability_zone, created_at,"
        " ready_at) VALUES (?, ?, '', ?, '', NULL, ?, ?, 0, ?, 'nova', ?, ?)",
        (
            volume_id,
            call.project,
            row["size"],
            name,
            call.config.volume_types[0] if call.config.volume_types else None,
            json.dumps({k: str(v) for k, v in metadata.items()}),
            call.now,
            call.now + call.config.volume_create_seconds,
        ),
    )
    return volume_id


def add_volume(
    call: SimCall, name: str, size_gb: int, metadata: Mapping[str, str], server_id: str = ""
) -> str:
    """A standalone volume (a test helper): available at once."""
    volume_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO volumes (id, project, server_id, size, device_name, boot_index, name,"
        " volume_type, delete_on_termination, metadata, availability_zone, created_at,"
        " ready_at) VALUES (?, ?, ?, ?, '', NULL, ?, ?, 0, ?, 'nova', ?, ?)",
        (
            volume_id,
            call.project,
            server_id,
            size_gb,
            name,
            call.config.volume_types[0] if call.config.volume_types else None,
            json.dumps({k: str(v) for k, v in metadata.items()}),
            call.now,
            call.now,
        ),
    )
    return volume_id
