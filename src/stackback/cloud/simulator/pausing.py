"""Simulated Nova pause/unpause and Cinder forced snapshots (whole-server backups).

Nova's ``pause`` needs an ACTIVE server with no task running (else 409,
``InstanceInvalidState``); ``unpause`` needs a PAUSED one with no task running either, so a
paused server cannot be unpaused while Nova uploads its snapshot (409 "task_state
image_snapshot", seen on the plane). Every pause is kept in
the ``pauses`` table with when it began and ended, so tests can check a backup recorded as
``paused`` against what really happened. Cinder snapshots a volume that is in use
only with ``force=True``, which the port always passes.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from stackback.cloud.simulator.compute import image_in_progress
from stackback.cloud.simulator.db import SimCall
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected, QuotaExceeded

CINDER_NAME_MAX = 255


@dataclass(frozen=True)
class SimPause:
    """One pause of a server: when it began and (once unpaused) ended."""

    server_id: str
    paused_at: float
    unpaused_at: float | None


def _server(call: SimCall, server_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM servers WHERE id = ? AND project = ?", (server_id, call.project)
    ).fetchone()
    if row is None:
        raise CloudNotFound(f"Instance {server_id} could not be found.")
    return row


def pause(call: SimCall, server_id: str) -> None:
    server = _server(call, server_id)
    task_until = server["task_until"]
    if server["status"] != "ACTIVE":
        raise CloudBusy(
            f"Cannot 'pause' instance {server_id} while it is in "
            f"vm_state {server['status'].lower()}"
        )
    if task_until is not None and task_until > call.now:
        raise CloudBusy(f"Cannot 'pause' instance {server_id} while it is in task_state busy")
    call.conn.execute("UPDATE servers SET status = 'PAUSED' WHERE id = ?", (server_id,))
    call.conn.execute(
        "INSERT INTO pauses (server_id, paused_at) VALUES (?, ?)", (server_id, call.now)
    )


def unpause(call: SimCall, server_id: str) -> None:
    server = _server(call, server_id)
    if server["status"] != "PAUSED":
        raise CloudBusy(
            f"Cannot 'unpause' instance {server_id} while it is in "
            f"vm_state {server['status'].lower()}"
        )
    if image_in_progress(call, server_id):
        raise CloudBusy(
            f"Cannot 'unpause' instance {server_id} while it is in task_state image_snapshot"
        )
    call.conn.execute("UPDATE servers SET status = 'ACTIVE' WHERE id = ?", (server_id,))
    call.conn.execute(
        "UPDATE pauses SET unpaused_at = ? WHERE server_id = ? AND unpaused_at IS NULL",
        (call.now, server_id),
    )


def status(call: SimCall, server_id: str) -> str:
    return str(_server(call, server_id)["status"])


def snapshot_volume(call: SimCall, volume_id: str, name: str, metadata: Mapping[str, str]) -> str:
    """A forced Cinder snapshot of a volume, attached or not."""
    volume: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM volumes WHERE id = ? AND project = ?", (volume_id, call.project)
    ).fetchone()
    if volume is None:
        raise CloudNotFound(f"Volume {volume_id} could not be found.")
    if len(name) > CINDER_NAME_MAX:
        raise CloudRejected(f"Invalid input: snapshot name {name!r} is over 255 characters")
    limit = call.config.max_volume_snapshots
    if limit is not None:
        (count,) = call.conn.execute(
            "SELECT count(*) FROM snapshots WHERE project = ?", (call.project,)
        ).fetchone()
        if count + 1 > limit:
            raise QuotaExceeded(f"quota of {limit} snapshots in project {call.project} is used up")
    snapshot_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO snapshots (id, project, name, volume_id, size, metadata, created_at,"
        " ready_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            snapshot_id,
            call.project,
            name,
            volume_id,
            volume["size"],
            json.dumps({k: str(v) for k, v in metadata.items()}),
            call.now,
            call.now + call.config.volume_snapshot_seconds,
        ),
    )
    return snapshot_id


def pauses(conn: sqlite3.Connection, server_id: str) -> list[SimPause]:
    rows = conn.execute(
        "SELECT * FROM pauses WHERE server_id = ? ORDER BY id", (server_id,)
    ).fetchall()
    return [SimPause(r["server_id"], r["paused_at"], r["unpaused_at"]) for r in rows]


def add_volume(call: SimCall, server_id: str, size_gb: int | None) -> str:
    taken = {
        row["device_name"]
        for row in call.conn.execute(
            "SELECT device_name FROM volumes WHERE server_id = ?", (server_id,)
        )
    }
    device = next(f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{c}" not in taken)
    volume_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO volumes (id, project, server_id, size, device_name, boot_index,"
        " volume_type, delete_on_termination, created_at, ready_at)"
        " VALUES (?, ?, ?, ?, ?, NULL, ?, 0, ?, ?)",
        (
            volume_id,
            call.project,
            server_id,
            size_gb or call.config.default_volume_gb,
            device,
            call.config.volume_types[0] if call.config.volume_types else None,
            call.now,
            call.now,
        ),
    )
    return volume_id


def detach_volume(call: SimCall, server_id: str, volume_id: str) -> None:
    """Nova ``DELETE os-volume_attachments``: never the root volume."""
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM volumes WHERE id = ? AND project = ? AND server_id = ?",
        (volume_id, call.project, server_id),
    ).fetchone()
    if row is None:
        raise CloudNotFound(f"volume {volume_id} is not attached to instance {server_id}")
    if row["boot_index"] == 0:
        raise CloudRejected("Cannot detach a root device volume")
    call.conn.execute(
        "UPDATE volumes SET server_id = '', boot_index = NULL WHERE id = ?", (volume_id,)
    )
