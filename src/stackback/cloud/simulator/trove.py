"""The simulated Trove: database instances and their backups, as Trove's v1.0 API shows them.

Follows Trove's API reference and its backup model (``trove/backup/models.py``):

* ``POST /backups`` of an instance that is not ``ACTIVE``, or that is taking a
  backup (a backup of it is ``NEW`` or ``BUILDING``), is refused and creates
  nothing (:class:`CloudBusy`); a ``parent_id`` must name a ``COMPLETED``
  backup of the same instance (else :class:`CloudRejected`).
* A backup is ``NEW`` for ``db_backup_queue_seconds``, ``BUILDING`` for
  ``db_backup_seconds`` (a quarter of it for an incremental), then
  ``COMPLETED``, or ``FAILED`` when a failure was scripted for it. Its
  ``parent_id`` is kept as given.
* ``DELETE /backups/{id}`` deletes the backup and every backup built on it
  (Trove's ``Backup.delete`` walks the children); one still ``NEW`` or
  ``BUILDING`` is refused (:class:`CloudBusy`).
* ``POST /instances`` with ``restorePoint``: the new instance is ``BUILD`` for
  ``db_boot_seconds``, then ``ACTIVE`` (or ``ERROR`` when a failure was scripted).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence

from stackback.cloud.simulator.db import SimCall, consume_fault, draw, next_counter
from stackback.cloud.states import TROVE_BACKUP_STATES
from stackback.databases import read_markers
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected, QuotaExceeded
from stackback.policy import ArtifactKind
from stackback.ports import ArtifactInfo, ArtifactRef, DatabaseInfo, DatabaseRestore, DatabaseSpec

KILL_DB_BACKUP = "kill_db_backup"
"""A scripted fault: the next backup of the instance ends ``FAILED``."""
FAIL_DB_BOOT = "fail_db_boot"
"""A scripted fault: the next instance created ends in ``ERROR``."""

TROVE_OPERATIONS = frozenset(
    {
        "get_database",
        "find_databases",
        "start_database_backup",
        "database_backups",
        "restore_database",
        "delete_database",
    }
)


def backup_state(row: sqlite3.Row, now: float) -> str:
    """Trove's status of a backup at ``now``."""
    if now < row["building_at"]:
        return "NEW"
    if now < row["ready_at"]:
        return "BUILDING"
    return "FAILED" if row["doomed"] else "COMPLETED"


def instance_state(row: sqlite3.Row, now: float) -> str:
    """Trove's status of an instance at ``now``."""
    if row["status"] != "ACTIVE":
        return str(row["status"])
    if now < row["active_at"]:
        return "BUILD"
    return "ERROR" if row["boot_fails"] else "ACTIVE"


def _instance_of(row: sqlite3.Row, now: float) -> DatabaseInfo:
    return DatabaseInfo(
        id=row["id"],
        name=row["name"],
        status=instance_state(row, now),
        spec=DatabaseSpec(
            flavor=row["flavor"],
            volume_size=int(row["volume_size"]),
            datastore=row["datastore"],
            datastore_version=row["datastore_version"],
        ),
        project_id=row["project"],
    )


def find_instance_row(conn: sqlite3.Connection, project: str, ref: str) -> sqlite3.Row:
    """An instance of the project by id, else by unique name (``CloudNotFound``)."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM db_instances WHERE project = ? AND id = ?", (project, ref)
    ).fetchone()
    if row is not None:
        return row
    rows: list[sqlite3.Row] = conn.execute(
        "SELECT * FROM db_instances WHERE project = ? AND name = ?", (project, ref)
    ).fetchall()
    if len(rows) == 1:
        return rows[0]
    if rows:
        raise CloudRejected(f"more than one database instance is named {ref!r}: use its id")
    raise CloudNotFound(f"no database instance {ref!r} in project {project}")


def get_instance(call: SimCall, ref: str) -> DatabaseInfo:
    return _instance_of(find_instance_row(call.conn, call.project, ref), call.now)


def instances(call: SimCall) -> list[DatabaseInfo]:
    rows = call.conn.execute(
        "SELECT * FROM db_instances WHERE project = ? ORDER BY created_at, id", (call.project,)
    ).fetchall()
    return [_instance_of(row, call.now) for row in rows]


def insert_instance(
    call: SimCall,
    name: str,
    spec: DatabaseSpec,
    *,
    boot_seconds: float = 0.0,
    restore_point: str | None = None,
    boot_fails: bool = False,
) -> str:
    """A new instance (``BUILD`` for ``boot_seconds``); its id."""
    if f"{spec.datastore}:{spec.datastore_version}" not in call.config.datastores:
        raise CloudNotFound(
            f"datastore {spec.datastore} version {spec.datastore_version} is not offered"
        )
    if spec.flavor not in call.config.flavors:
        raise CloudNotFound(f"flavor {spec.flavor} could not be found")
    instance_id = _new_id(call, "db-instance")
    call.conn.execute(
        "INSERT INTO db_instances (id, project, name, status, flavor, volume_size, datastore,"
        " datastore_version, created_at, active_at, restore_point, boot_fails)"
        " VALUES (?, ?, ?, 'ACTIVE', ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            instance_id,
            call.project,
            name,
            spec.flavor,
            spec.volume_size,
            spec.datastore,
            spec.datastore_version,
            call.now,
            call.now + boot_seconds,
            restore_point,
            int(boot_fails),
        ),
    )
    return instance_id


def _backup_rows(
    call: SimCall, *, instance_id: str | None = None, ids: Sequence[str] | None = None
) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = call.conn.execute(
        "SELECT * FROM db_backups WHERE project = ? ORDER BY created_at, id", (call.project,)
    ).fetchall()
    if instance_id is not None:
        rows = [row for row in rows if row["instance_id"] == instance_id]
    if ids is not None:
        wanted = set(ids)
        rows = [row for row in rows if row["id"] in wanted]
    return rows


def backup_infos(
    call: SimCall, *, instance_id: str | None = None, ids: Sequence[str] | None = None
) -> list[ArtifactInfo]:
    """Backups as artifacts: markers read from the description, children as dependents."""
    children: dict[str, list[str]] = {}
    for row in call.conn.execute(
        "SELECT id, parent_id FROM db_backups WHERE project = ? AND parent_id IS NOT NULL"
        " ORDER BY created_at, id",
        (call.project,),
    ):
        children.setdefault(row["parent_id"], []).append(row["id"])
    infos = []
    for row in _backup_rows(call, instance_id=instance_id, ids=ids):
        status = backup_state(row, call.now)
        infos.append(
            ArtifactInfo(
                ref=ArtifactRef(ArtifactKind.DATABASE_BACKUP, row["id"]),
                status=TROVE_BACKUP_STATES[status],
                name=row["name"],
                size=int(row["size"] * 2**30) if status == "COMPLETED" else None,
                metadata=read_markers(row["description"]),
                created_at=None,
                detail=f"trove status {status}",
                raw_status=status,
                dependents=tuple(
                    ArtifactRef(ArtifactKind.DATABASE_BACKUP, child)
                    for child in children.get(row["id"], ())
                ),
                parent=ArtifactRef(ArtifactKind.DATABASE_BACKUP, row["parent_id"])
                if row["parent_id"]
                else None,
            )
        )
    return infos


def create_backup(
    call: SimCall, instance_id: str, name: str, description: str | None, parent_id: str | None
) -> str:
    """``POST /backups``: refused while the instance is busy; its id."""
    if description == "":
        raise CloudRejected("Validation error: backup['description'] '' should be non-empty")
    instance = find_instance_row(call.conn, call.project, instance_id)
    status = instance_state(instance, call.now)
    if status != "ACTIVE":
        raise CloudBusy(f"instance {instance['id']} is {status}, not ACTIVE")
    running = [
        row["id"]
        for row in _backup_rows(call, instance_id=instance["id"])
        if backup_state(row, call.now) in ("NEW", "BUILDING")
    ]
    if running:
        raise CloudBusy(f"instance {instance['id']} is taking backup {running[0]}")
    if parent_id is not None:
        parent = call.conn.execute(
            "SELECT * FROM db_backups WHERE id = ? AND project = ?", (parent_id, call.project)
        ).fetchone()
        if parent is None:
            raise CloudNotFound(f"backup {parent_id} could not be found")
        if parent["instance_id"] != instance["id"] or backup_state(parent, call.now) != "COMPLETED":
            raise CloudRejected(f"backup {parent_id} cannot be the parent of this backup")
    quota = call.config.max_volume_snapshots
    if quota is not None and len(_backup_rows(call)) >= quota:
        raise QuotaExceeded(f"quota exceeded for backups ({quota})")
    doomed = consume_fault(call.conn, call.project, KILL_DB_BACKUP, instance["id"]) is not None
    building = call.config.db_backup_seconds * (0.25 if parent_id else 1.0)
    backup_id = _new_id(call, "db-backup")
    building_at = call.now + call.config.db_backup_queue_seconds
    call.conn.execute(
        "INSERT INTO db_backups (id, project, instance_id, name, description, parent_id, size,"
        " created_at, building_at, ready_at, doomed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            backup_id,
            call.project,
            instance["id"],
            name,
            description,
            parent_id,
            0.1 if parent_id else float(instance["volume_size"]) / 4,
            call.now,
            building_at,
            building_at + building,
            int(doomed),
        ),
    )
    return backup_id


def delete_backup(call: SimCall, backup_id: str) -> None:
    """``DELETE /backups/{id}``: the backup and all its descendants; gone already: nothing."""
    row = call.conn.execute(
        "SELECT * FROM db_backups WHERE id = ? AND project = ?", (backup_id, call.project)
    ).fetchone()
    if row is None:
        return
    if backup_state(row, call.now) in ("NEW", "BUILDING"):
        raise CloudBusy(f"backup {backup_id} is {backup_state(row, call.now)}: try again later")
    doomed, frontier = [backup_id], [backup_id]
    while frontier:
        children = [
            child["id"]
            for child in call.conn.execute(
                "SELECT id FROM db_backups WHERE parent_id IN (SELECT value FROM json_each(?))",
                (_json_list(frontier),),
            )
        ]
        doomed.extend(children)
        frontier = children
    call.conn.executemany("DELETE FROM db_backups WHERE id = ?", [(i,) for i in doomed])


def restore(call: SimCall, request: DatabaseRestore) -> str:
    """``POST /instances`` with ``restorePoint``: the backup must be ``COMPLETED``."""
    row = call.conn.execute(
        "SELECT * FROM db_backups WHERE id = ? AND project = ?", (request.backup_id, call.project)
    ).fetchone()
    if row is None:
        raise CloudNotFound(f"backup {request.backup_id} could not be found")
    if backup_state(row, call.now) != "COMPLETED":
        raise CloudRejected(f"backup {request.backup_id} is not COMPLETED")
    fails = consume_fault(call.conn, call.project, FAIL_DB_BOOT, None) is not None
    return insert_instance(
        call,
        request.name,
        request.spec,
        boot_seconds=call.config.db_boot_seconds,
        restore_point=request.backup_id,
        boot_fails=fails,
    )


def delete_instance(call: SimCall, instance_id: str) -> None:
    call.conn.execute(
        "DELETE FROM db_instances WHERE project = ? AND id = ?", (call.project, instance_id)
    )


def _new_id(call: SimCall, purpose: str) -> str:
    """A UUID fixed by the seed and a counter kept in the file (the same in every process)."""
    number = next_counter(call.conn, "trove_ids")
    return str(uuid.UUID(int=int(draw(call.seed, number, purpose) * 2**128)))


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items))
