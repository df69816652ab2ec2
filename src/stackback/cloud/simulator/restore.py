"""Simulated Nova and Cinder for restores: boots, volumes from snapshots, attach, rebuild.

Refuses what Nova and Cinder refuse: an unknown flavor, network or volume type, an
image that is not ``active``, a snapshot that is not ``available``, a fixed IP in
use, quota. A booted server is ``BUILD`` for ``server_boot_seconds``, then
``ACTIVE`` (or ``ERROR`` when a failure was scripted with :meth:`fail_next_boot`);
a new volume is ``creating`` for ``volume_create_seconds``, then ``available``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager

from stackback.cloud.common import contains
from stackback.cloud.simulator.db import SimCall, SimDatabase, consume_fault, script_fault
from stackback.cloud.simulator.model import image_state, snapshot_state
from stackback.cloud.simulator.pausing import detach_volume as detach
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected, QuotaExceeded
from stackback.ports import (
    MARKER_RESTORE,
    RESOURCE_SERVER,
    RESOURCE_VOLUME,
    BootRequest,
    CloudResource,
)

ERROR_BOOT = "error_boot"
REBUILDABLE_STATES = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})
RESTORE_OPERATIONS = frozenset(
    {
        "validate_boot",
        "boot_server",
        "create_volume",
        "attach_volume",
        "rebuild_server",
        "resource_status",
        "find_restored",
        "delete_server",
        "delete_volume",
        "console_output",
        "detach_volume",
        "check_port",
    }
)


def advance_boots(conn: sqlite3.Connection, now: float) -> None:
    """Servers whose boot time has passed leave ``BUILD`` (ACTIVE, or ERROR if doomed)."""
    conn.execute(
        "UPDATE servers SET status = CASE WHEN boot_fails THEN 'ERROR' ELSE 'ACTIVE' END,"
        " active_at = NULL WHERE status = 'BUILD' AND active_at <= ?",
        (now,),
    )


def volume_state(row: sqlite3.Row, now: float) -> str:
    if row["server_id"]:
        return "in-use"
    return "creating" if now < row["ready_at"] else "available"


def _quota(call: SimCall, table: str, limit: int | None, wanted: int) -> None:
    if limit is None:
        return
    (count,) = call.conn.execute(
        f"SELECT count(*) FROM {table} WHERE project = ?", (call.project,)
    ).fetchone()
    if count + wanted > limit:
        raise QuotaExceeded(f"quota of {limit} {table} in project {call.project} is used up")


def _volume_row(call: SimCall, volume_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM volumes WHERE id = ? AND project = ?", (volume_id, call.project)
    ).fetchone()
    return row


def _server_row(call: SimCall, server_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM servers WHERE id = ? AND project = ?", (server_id, call.project)
    ).fetchone()
    return row


def _fixed_ips_in_use(call: SimCall) -> set[tuple[str, str]]:
    used: set[tuple[str, str]] = set()
    for (networks,) in call.conn.execute("SELECT networks FROM servers"):
        for net in json.loads(networks):
            if net.get("fixed_ip"):
                used.add((net["network"], net["fixed_ip"]))
    return used


def check_boot(call: SimCall, request: BootRequest) -> None:
    """Nova's checks before it accepts ``POST /servers`` (each a 400 or 404 or 409)."""
    config = call.config
    if not 1 <= len(request.name) <= 255:
        raise CloudRejected(f"Invalid input for field/attribute name. Value: {request.name}.")
    if request.flavor not in config.flavors:
        raise CloudNotFound(f"Flavor {request.flavor} could not be found.")
    used = _fixed_ips_in_use(call)
    for net in request.networks:
        if net.network not in config.networks:
            raise CloudNotFound(f"Network {net.network} could not be found.")
        if net.fixed_ip and (net.network, net.fixed_ip) in used:
            raise CloudRejected(f"Fixed IP address {net.fixed_ip} is already in use.")
    for group in request.security_groups:
        if group not in config.security_groups:
            raise CloudNotFound(f"Security group {group} not found for project {call.project}.")
    if request.image_id is None and not any(d.boot_index == 0 for d in request.block_devices):
        raise CloudRejected("Block Device Mapping is Invalid: no boot device and no image")
    if request.image_id is not None:
        row = call.conn.execute(
            "SELECT * FROM images WHERE id = ? AND project = ?", (request.image_id, call.project)
        ).fetchone()
        if row is None:
            raise CloudNotFound(f"Image {request.image_id} could not be found.")
        if image_state(row, call.now) != "active":
            raise CloudRejected(f"Image {request.image_id} is not active.")
    for device in request.block_devices:
        _check_block_device(call, device.source_type, device.uuid, device.volume_type)


def _check_block_device(call: SimCall, source: str, uuid_: str, volume_type: str | None) -> None:
    if volume_type is not None and volume_type not in call.config.volume_types:
        raise CloudNotFound(f"Volume type {volume_type} could not be found.")
    if source == "volume":
        row = _volume_row(call, uuid_)
        if row is None:
            raise CloudNotFound(f"Volume {uuid_} could not be found.")
        if volume_state(row, call.now) != "available":
            raise CloudRejected(f"Volume {uuid_} status must be available")
    elif source == "snapshot":
        row = call.conn.execute(
            "SELECT * FROM snapshots WHERE id = ? AND project = ?", (uuid_, call.project)
        ).fetchone()
        if row is None or snapshot_state(row, call.now) == "deleted":
            raise CloudNotFound(f"Snapshot {uuid_} could not be found.")
        if snapshot_state(row, call.now) != "available":
            raise CloudRejected(f"Snapshot {uuid_} status must be available")
    else:
        raise CloudRejected(f"Block Device Mapping is Invalid: source_type {source}")


def boot(call: SimCall, request: BootRequest, host: str) -> str:
    """Record the server (BUILD) and its volumes; a snapshot source makes a new volume."""
    check_boot(call, request)
    _quota(call, "servers", call.config.max_servers, 1)
    new_volumes = sum(1 for d in request.block_devices if d.source_type == "snapshot")
    _quota(call, "volumes", call.config.max_volumes, new_volumes)
    server_id = str(uuid.uuid4())
    doomed = consume_fault(call.conn, call.project, ERROR_BOOT, None) is not None
    image_properties = "{}"
    if request.image_id is not None:
        (image_properties,) = call.conn.execute(
            "SELECT properties FROM images WHERE id = ?", (request.image_id,)
        ).fetchone()
    networks = [
        {"network": net.network, "fixed_ip": net.fixed_ip or _free_ip(call)}
        for net in request.networks
    ]
    call.conn.execute(
        "INSERT INTO servers (id, project, name, status, metadata, volume_backed, host, disk_gb,"
        " base_image_ref, created_at, image_properties, flavor, networks, security_groups,"
        " key_name, availability_zone, active_at, boot_fails)"
        " VALUES (?, ?, ?, 'BUILD', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            server_id,
            call.project,
            request.name,
            json.dumps(dict(request.metadata)),
            int(request.image_id is None),
            host,
            call.config.default_disk_gb,
            request.image_id or "",
            call.now,
            image_properties,
            request.flavor,
            json.dumps(networks),
            json.dumps(list(request.security_groups or ("default",))),
            request.key_name,
            request.availability_zone or "nova",
            call.now + call.config.server_boot_seconds,
            int(doomed),
        ),
    )
    for device in request.block_devices:
        volume_id = device.uuid
        if device.source_type == "snapshot":
            size = device.volume_size or _snapshot_size(call, device.uuid)
            volume_id = _insert_volume(
                call, device.uuid, "", size, device.volume_type, request.availability_zone, {}
            )
        call.conn.execute(
            "UPDATE volumes SET server_id = ?, device_name = ?, boot_index = ?,"
            " delete_on_termination = ? WHERE id = ?",
            (
                server_id,
                device.device_name or "/dev/vda",
                device.boot_index,
                int(device.delete_on_termination),
                volume_id,
            ),
        )
    return server_id


def _free_ip(call: SimCall) -> str:
    from stackback.cloud.simulator.compute import next_fixed_ip

    return next_fixed_ip(call.conn)


def _snapshot_size(call: SimCall, snapshot_id: str) -> int:
    (size,) = call.conn.execute(
        "SELECT size FROM snapshots WHERE id = ?", (snapshot_id,)
    ).fetchone()
    return int(size)


def _insert_volume(
    call: SimCall,
    snapshot_id: str,
    name: str,
    size_gb: int,
    volume_type: str | None,
    availability_zone: str | None,
    metadata: Mapping[str, str],
) -> str:
    volume_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO volumes (id, project, server_id, size, device_name, boot_index, name,"
        " volume_type, delete_on_termination, metadata, snapshot_id, availability_zone,"
        " created_at, ready_at) VALUES (?, ?, '', ?, '', NULL, ?, ?, 0, ?, ?, ?, ?, ?)",
        (
            volume_id,
            call.project,
            size_gb,
            name,
            volume_type or (call.config.volume_types[0] if call.config.volume_types else None),
            json.dumps({k: str(v) for k, v in metadata.items()}),
            snapshot_id,
            availability_zone or "nova",
            call.now,
            call.now + call.config.volume_create_seconds,
        ),
    )
    return volume_id


def create_volume(
    call: SimCall,
    snapshot_id: str,
    *,
    name: str,
    size_gb: int,
    volume_type: str | None,
    availability_zone: str | None,
    metadata: Mapping[str, str],
) -> str:
    """Cinder ``POST /volumes`` with ``snapshot_id``: at least the snapshot's size."""
    _check_block_device(call, "snapshot", snapshot_id, volume_type)
    if size_gb < _snapshot_size(call, snapshot_id):
        raise CloudRejected(f"Volume size {size_gb} is smaller than the snapshot's")
    _quota(call, "volumes", call.config.max_volumes, 1)
    return _insert_volume(
        call, snapshot_id, name, size_gb, volume_type, availability_zone, metadata
    )


def attach(call: SimCall, server_id: str, volume_id: str, device: str | None) -> None:
    server = _server_row(call, server_id)
    if server is None:
        raise CloudNotFound(f"Instance {server_id} could not be found.")
    if server["status"] not in ("ACTIVE", "SHUTOFF"):
        raise CloudBusy(
            f"Cannot 'attach_volume' instance {server_id} while it is {server['status']}"
        )
    row = _volume_row(call, volume_id)
    if row is None:
        raise CloudNotFound(f"Volume {volume_id} could not be found.")
    if volume_state(row, call.now) != "available":
        raise CloudRejected(f"Invalid volume: volume {volume_id} status must be available")
    taken = {
        r["device_name"]
        for r in call.conn.execute(
            "SELECT device_name FROM volumes WHERE server_id = ?", (server_id,)
        )
    }
    if device is None or device in taken:
        letters = "bcdefghijklmnopqrstuvwxyz"
        device = next(f"/dev/vd{c}" for c in letters if f"/dev/vd{c}" not in taken)
    call.conn.execute(
        "UPDATE volumes SET server_id = ?, device_name = ?, delete_on_termination = 0 WHERE id = ?",
        (server_id, device, volume_id),
    )


def rebuild(call: SimCall, server_id: str, image_id: str) -> None:
    """Nova ``rebuild``: image-backed only here (a volume-backed rebuild needs 2.93)."""
    server = _server_row(call, server_id)
    if server is None:
        raise CloudNotFound(f"Instance {server_id} could not be found.")
    if server["status"] not in REBUILDABLE_STATES:
        raise CloudBusy(f"Cannot 'rebuild' instance {server_id} while it is {server['status']}")
    if server["volume_backed"]:
        raise CloudRejected(f"Image {image_id} is unacceptable: volume-backed rebuild")
    image = call.conn.execute(
        "SELECT * FROM images WHERE id = ? AND project = ?", (image_id, call.project)
    ).fetchone()
    if image is None:
        raise CloudNotFound(f"Image {image_id} could not be found.")
    if image_state(image, call.now) != "active":
        raise CloudRejected(f"Image {image_id} is not active.")
    call.conn.execute(
        "UPDATE servers SET status = 'BUILD', active_at = ?, base_image_ref = ?,"
        " image_properties = ? WHERE id = ?",
        (call.now + call.config.server_boot_seconds, image_id, image["properties"], server_id),
    )


def status_of(call: SimCall, kind: str, resource_id: str) -> CloudResource:
    if kind == RESOURCE_SERVER:
        row = _server_row(call, resource_id)
        if row is None:
            return CloudResource(kind, resource_id, "deleted")
        return CloudResource(
            kind, row["id"], row["status"], row["name"], json.loads(row["metadata"])
        )
    if kind == RESOURCE_VOLUME:
        row = _volume_row(call, resource_id)
        if row is None:
            return CloudResource(kind, resource_id, "deleted")
        return CloudResource(
            kind, row["id"], volume_state(row, call.now), row["name"], json.loads(row["metadata"])
        )
    raise CloudRejected(f"no resources of kind {kind!r}")


def find_restored(call: SimCall, restore_id: str) -> list[CloudResource]:
    wanted = {MARKER_RESTORE: restore_id}
    found: list[CloudResource] = []
    for table, kind in (("servers", RESOURCE_SERVER), ("volumes", RESOURCE_VOLUME)):
        rows = call.conn.execute(
            f"SELECT id, metadata FROM {table} WHERE project = ? ORDER BY created_at, id",
            (call.project,),
        ).fetchall()
        for row in rows:
            if contains(json.loads(row["metadata"]), wanted):
                found.append(status_of(call, kind, row["id"]))
    return found


#: Volumes Cinder will not delete: those with a snapshot (even one being deleted).
_HAS_SNAPSHOTS = "id IN (SELECT volume_id FROM snapshots WHERE gone_at IS NULL OR gone_at > ?)"


def remove_server(conn: sqlite3.Connection, project: str, server_id: str, now: float) -> None:
    """Nova delete: volumes marked delete-on-termination go, the others are detached.

    Cinder refuses to delete a volume that has snapshots: Nova logs it and the volume
    stays, detached (``available``), until its snapshots are gone and it is deleted."""
    conn.execute("DELETE FROM servers WHERE id = ? AND project = ?", (server_id, project))
    conn.execute(
        "DELETE FROM volumes WHERE server_id = ? AND project = ? AND delete_on_termination"
        f" AND NOT {_HAS_SNAPSHOTS}",
        (server_id, project, now),
    )
    conn.execute(
        "UPDATE volumes SET server_id = '', boot_index = NULL WHERE server_id = ? AND project = ?",
        (server_id, project),
    )


def remove_volume(call: SimCall, volume_id: str) -> None:
    row = _volume_row(call, volume_id)
    if row is None:
        return
    state = volume_state(row, call.now)
    if state != "available":
        raise CloudBusy(f"Invalid volume: Volume status must be available or error, is {state}")
    if call.conn.execute(
        f"SELECT 1 FROM volumes WHERE id = ? AND {_HAS_SNAPSHOTS}", (volume_id, call.now)
    ).fetchone():
        raise CloudBusy(f"Invalid volume: Volume {volume_id} must not have snapshots")
    call.conn.execute("DELETE FROM volumes WHERE id = ?", (volume_id,))


def console(call: SimCall, server_id: str) -> str:
    row = _server_row(call, server_id)
    if row is None:
        raise CloudNotFound(f"Instance {server_id} could not be found.")
    if row["status"] != "ACTIVE":
        raise CloudBusy(f"Instance {server_id} is not ready (status {row['status']})")
    return call.config.console_output


def port_answers(call: SimCall, server_id: str, port: int) -> str | None:
    """None when ``port`` answers on the server (ACTIVE, on a network, port open)."""
    row = _server_row(call, server_id)
    if row is None:
        return f"server {server_id} is gone"
    if row["status"] != "ACTIVE":
        return f"server {server_id} is {row['status']}"
    addresses = [n["fixed_ip"] for n in json.loads(row["networks"]) if n.get("fixed_ip")]
    if not addresses:
        return f"server {server_id} has no address"
    if port not in call.config.open_ports:
        return f"connection to {addresses[0]}:{port} refused"
    return None


class SimRestoreOperations:
    """The :class:`~stackback.ports.RestoreCloud` operations of :class:`SimulatedCloud`."""

    project: str
    _db: SimDatabase

    def _call(
        self, operation: str, *, server_id: str | None = None
    ) -> AbstractContextManager[SimCall]:
        raise NotImplementedError

    def validate_boot(self, request: BootRequest) -> None:
        """Refuse an unknown flavor, network, volume type or key, or an image not active."""
        with self._call("validate_boot") as call:
            check_boot(call, request)

    def boot_server(self, request: BootRequest) -> str:
        """``POST /servers``: BUILD now, ACTIVE after ``server_boot_seconds``."""
        with self._call("boot_server") as call:
            return boot(call, request, "compute-1")

    def create_volume(
        self,
        snapshot_id: str,
        *,
        name: str,
        size_gb: int,
        volume_type: str | None,
        availability_zone: str | None,
        metadata: Mapping[str, str],
    ) -> str:
        """A volume from a snapshot: creating, then available."""
        with self._call("create_volume") as call:
            return create_volume(
                call,
                snapshot_id,
                name=name,
                size_gb=size_gb,
                volume_type=volume_type,
                availability_zone=availability_zone,
                metadata=metadata,
            )

    def attach_volume(self, server_id: str, volume_id: str, device: str | None) -> None:
        """Attach an available volume to an ACTIVE or SHUTOFF server."""
        with self._call("attach_volume", server_id=server_id) as call:
            attach(call, server_id, volume_id, device)

    def detach_volume(self, server_id: str, volume_id: str) -> None:
        """Detach a data volume (never the root one); it stays, ``available``."""
        with self._call("detach_volume", server_id=server_id) as call:
            detach(call, server_id, volume_id)

    def rebuild_server(self, server_id: str, image_id: str) -> None:
        """Rebuild an image-backed server with an active image (BUILD, then ACTIVE)."""
        with self._call("rebuild_server", server_id=server_id) as call:
            rebuild(call, server_id, image_id)

    def resource_status(self, kind: str, resource_id: str) -> CloudResource:
        """A server's or volume's status; ``deleted`` once gone."""
        with self._call("resource_status") as call:
            return status_of(call, kind, resource_id)

    def find_restored(self, restore_id: str) -> list[CloudResource]:
        """Servers and volumes carrying the restore's marker."""
        with self._call("find_restored") as call:
            return find_restored(call, restore_id)

    def delete_server(self, server_id: str) -> None:
        """Delete a server (gone already: fine); delete-on-termination volumes go with it."""
        with self._call("delete_server", server_id=server_id) as call:
            remove_server(call.conn, self.project, server_id, call.now)

    def delete_volume(self, volume_id: str) -> None:
        """Delete an available volume (gone already: fine; in use: CloudBusy)."""
        with self._call("delete_volume") as call:
            remove_volume(call, volume_id)

    def console_output(self, server_id: str) -> str:
        """The fake hypervisor's console log of an ACTIVE server."""
        with self._call("console_output", server_id=server_id) as call:
            return console(call, server_id)

    def check_port(self, server_id: str, port: int, timeout: float) -> str | None:
        """Whether the port answers: the simulator's ``open_ports`` do on an ACTIVE server
        with an address."""
        with self._call("check_port", server_id=server_id) as call:
            return port_answers(call, server_id, port)

    def fail_next_boot(self, count: int = 1) -> None:
        """The next ``count`` booted servers end in ERROR instead of ACTIVE."""
        with self._db.transaction() as conn:
            script_fault(conn, self.project, ERROR_BOOT, "error", count, None)
