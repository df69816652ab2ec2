"""Simulated Nova: servers, their volumes, and ``createImage`` as Nova does it."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import uuid
from collections.abc import Mapping

from stackback.cloud.simulator.config import SimConfig
from stackback.cloud.simulator.db import SimCall, consume_fault, next_counter
from stackback.cloud.simulator.model import earliest_slot, image_state
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected, QuotaExceeded
from stackback.ports import ServerInfo, host_key
from stackback.records import NetworkSpec, ServerSpec, VolumeSpec

GIB = 1024**3
SNAPSHOTTABLE_STATES = frozenset({"ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED"})
#: What Nova sets on a snapshot itself (never inherited from the server's image).
NOVA_SNAPSHOT_PROPERTIES = frozenset(
    {
        "instance_uuid",
        "image_type",
        "base_image_ref",
        "owner_id",
        "owner_project_name",
        "user_id",
        "owner_user_name",
        "boot_roles",
        "image_location",
        "image_state",
        "bdm_v2",
        "root_device_name",
        "block_device_mapping",
    }
)
#: Nova's request schema for ``createImage``: a name and metadata keys and values of 1-255.
NOVA_FIELD_MAX = 255
KILL_IMAGE = "kill_image"
DEFAULT_HOST = "compute-1"
_BASE_IMAGE_REF = str(uuid.uuid5(uuid.NAMESPACE_URL, "stackback-sim-base-image"))
_DEVICE_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def find_server_row(
    conn: sqlite3.Connection, project: str, server: str, *, by_name: bool = False
) -> sqlite3.Row:
    """The project's server with this id (or, with ``by_name``, this unique name)."""
    rows: list[sqlite3.Row] = conn.execute(
        "SELECT * FROM servers WHERE project = ? AND id = ?", (project, server)
    ).fetchall()
    if not rows and by_name:
        rows = conn.execute(
            "SELECT * FROM servers WHERE project = ? AND name = ?", (project, server)
        ).fetchall()
    if len(rows) > 1:
        raise CloudRejected(f"{len(rows)} servers are named {server!r}; use the id")
    if not rows:
        raise CloudNotFound(f"no server {server!r} in project {project}")
    return rows[0]


def server_of_row(row: sqlite3.Row, conn: sqlite3.Connection) -> ServerInfo:
    """A server with the spec a restore needs (placement, and its attached volumes)."""
    volumes = conn.execute(
        "SELECT * FROM volumes WHERE server_id = ? ORDER BY boot_index IS NULL, device_name",
        (row["id"],),
    ).fetchall()
    spec = ServerSpec(
        flavor=row["flavor"],
        networks=tuple(
            NetworkSpec(net["network"], net.get("fixed_ip")) for net in json.loads(row["networks"])
        ),
        security_groups=tuple(json.loads(row["security_groups"])),
        key_name=row["key_name"],
        availability_zone=row["availability_zone"],
        metadata=json.loads(row["metadata"]),
        volumes=tuple(
            VolumeSpec(
                size_gb=volume["size"],
                device_name=volume["device_name"],
                boot_index=volume["boot_index"],
                volume_type=volume["volume_type"],
                delete_on_termination=bool(volume["delete_on_termination"]),
                volume_id=volume["id"],
            )
            for volume in volumes
        ),
    )
    return ServerInfo(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        metadata=json.loads(row["metadata"]),
        volume_backed=bool(row["volume_backed"]),
        project_id=row["project"],
        spec=spec,
        boot_properties={
            str(k): str(v) for k, v in json.loads(row["image_properties"] or "{}").items()
        },
        host=host_key(None, host_id(row["project"], row["host"])),
    )


def next_fixed_ip(conn: sqlite3.Connection) -> str:
    number = next_counter(conn, "fixed_ips")
    return f"10.0.{number // 250}.{number % 250 + 2}"


def insert_server(
    conn: sqlite3.Connection,
    project: str,
    now: float,
    config: SimConfig,
    name: str,
    *,
    metadata: Mapping[str, str],
    volume_backed: bool,
    volumes: int,
    host: str | None,
    status: str,
    disk_gb: float | None,
    image: str | None = None,
    key_name: str | None = None,
) -> str:
    """Add a server; a volume-backed one gets a root volume (boot index 0) first.

    Booted from ``image`` (an image of the project), the server keeps a copy of
    that image's properties, as Nova does in its system metadata: every
    snapshot of the server inherits them.
    """
    if not 1 <= len(name) <= NOVA_FIELD_MAX:
        raise CloudRejected(f"Invalid input for field/attribute name. Value: {name}. is too long")
    inherited: dict[str, str] = {}
    if image is not None:
        row = conn.execute(
            "SELECT properties FROM images WHERE id = ? AND project = ?", (image, project)
        ).fetchone()
        if row is None:
            raise CloudNotFound(f"Image {image} could not be found.")
        inherited = {
            key: value
            for key, value in json.loads(row["properties"]).items()
            if key not in NOVA_SNAPSHOT_PROPERTIES
        }
    server_id = str(uuid.uuid4())
    networks = [{"network": config.networks[0], "fixed_ip": next_fixed_ip(conn)}]
    conn.execute(
        "INSERT INTO servers (id, project, name, status, metadata, volume_backed, host,"
        " disk_gb, base_image_ref, created_at, image_properties, flavor, networks, key_name)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            server_id,
            project,
            name,
            status,
            json.dumps({key: str(value) for key, value in metadata.items()}),
            int(volume_backed),
            host or DEFAULT_HOST,
            config.default_disk_gb if disk_gb is None else disk_gb,
            "" if volume_backed else (image or _BASE_IMAGE_REF),
            now,
            json.dumps(inherited),
            config.flavors[1] if len(config.flavors) > 1 else config.flavors[0],
            json.dumps(networks),
            key_name,
        ),
    )
    boot_indexes: list[int | None] = [0] if volume_backed else []
    boot_indexes += [None] * volumes
    first_letter = 0 if volume_backed else 1
    for position, boot_index in enumerate(boot_indexes):
        conn.execute(
            "INSERT INTO volumes (id, project, server_id, size, device_name, boot_index,"
            " volume_type, created_at, ready_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(uuid.uuid4()),
                project,
                server_id,
                config.default_volume_gb,
                f"/dev/vd{_DEVICE_LETTERS[first_letter + position]}",
                boot_index,
                config.volume_types[0] if config.volume_types else None,
                now,
                now,
            ),
        )
    return server_id


def create_server_image(
    call: SimCall, server: sqlite3.Row, name: str, metadata: Mapping[str, str]
) -> str:
    """Nova ``createImage``: check the request and the server, then record the image."""
    _check_create_image_request(name, metadata)
    if server["status"] not in SNAPSHOTTABLE_STATES:  # Nova: InstanceInvalidState, a 409
        raise CloudBusy(
            f"Cannot 'createImage' instance {server['id']} while it is in "
            f"vm_state {server['status'].lower()}"
        )
    busy = not server["volume_backed"] and image_in_progress(call, server["id"])
    if busy or call.draw("busy") < call.config.faults.busy_rate:
        raise CloudBusy(
            f"Cannot 'createImage' instance {server['id']} while it is in task_state image_snapshot"
        )
    if not server["volume_backed"]:
        _check_host_capacity(call, server)
    _check_quota(call, "images", call.config.max_images, 1)
    request = {key: str(value) for key, value in metadata.items()}
    if server["volume_backed"]:
        return _image_of_volume_backed(call, server, name, request)
    return _image_of_image_backed(call, server, name, request)


def _check_create_image_request(name: str, metadata: Mapping[str, str]) -> None:
    """Nova's schema check (a 400 before anything else happens)."""
    if not 1 <= len(name) <= NOVA_FIELD_MAX:
        raise CloudRejected(f"Invalid input for field/attribute name. Value: {name}. is too long")
    for key, value in metadata.items():
        if not 1 <= len(key) <= NOVA_FIELD_MAX or len(str(value)) > NOVA_FIELD_MAX:
            raise CloudRejected(
                f"Invalid input for field/attribute metadata. Value: {key}={value}. is too long"
            )
        if not _NOVA_METADATA_KEY.fullmatch(key):
            raise CloudRejected(
                f"Invalid input for field/attribute metadata. Value: {key}. "
                "Does not match the key pattern"
            )


_NOVA_METADATA_KEY = re.compile(r"[a-zA-Z0-9-_:. ]{1,255}")
"""Nova's schema for metadata keys (``api/validation/parameter_types.py``)."""


def image_in_progress(call: SimCall, server_id: str) -> bool:
    """The server's snapshot task is on: an image queued or saving, or one deleted meanwhile
    (Nova clears the task only when the upload finds its image gone)."""
    (task_until,) = call.conn.execute(
        "SELECT task_until FROM servers WHERE id = ?", (server_id,)
    ).fetchone()
    if task_until is not None and task_until > call.now:
        return True
    rows = call.conn.execute(
        "SELECT * FROM images WHERE server_id = ? AND ready_at > ?", (server_id, call.now)
    ).fetchall()
    return any(image_state(row, call.now) in ("queued", "saving") for row in rows)


def _check_host_capacity(call: SimCall, server: sqlite3.Row) -> None:
    """A 409 when the server's host already has ``host_snapshot_capacity`` snapshots on."""
    capacity = call.config.host_snapshot_capacity
    if capacity is None:
        return
    (running,) = call.conn.execute(
        "SELECT count(*) FROM images WHERE host = ? AND ready_at > ?",
        (server["host"], call.now),
    ).fetchone()
    if running >= capacity:
        raise CloudBusy(
            f"Cannot 'createImage' instance {server['id']}: its host has {running} snapshots "
            "in progress (simulated host capacity)"
        )


def host_id(project: str, host: str) -> str:
    """Nova's ``hostId`` of a server: SHA-224 of project id and host, opaque to the tenant."""
    return hashlib.sha224((project + host).encode()).hexdigest()


def _check_quota(call: SimCall, table: str, limit: int | None, wanted: int) -> None:
    if limit is None:
        return
    (count,) = call.conn.execute(
        f"SELECT count(*) FROM {table} WHERE project = ?", (call.project,)
    ).fetchone()
    if count + wanted > limit:
        raise QuotaExceeded(f"quota of {limit} {table} in project {call.project} is used up")


def _image_of_image_backed(
    call: SimCall, server: sqlite3.Row, name: str, request: dict[str, str]
) -> str:
    config = call.config
    doomed = consume_fault(call.conn, call.project, KILL_IMAGE, server["id"]) is not None
    doomed = doomed or call.draw("kill") < config.faults.kill_rate
    upload_seconds = config.image_base_seconds + config.image_seconds_per_gb * server["disk_gb"]
    booked = call.conn.execute(
        "SELECT slot_at, ready_at FROM images WHERE host = ? AND ready_at > ?",
        (server["host"], call.now),
    ).fetchall()
    slot_at = earliest_slot(
        [(row["slot_at"], row["ready_at"]) for row in booked],
        call.now,
        config.image_snapshot_seconds + upload_seconds,
        config.host_upload_limit,
    )
    upload_at = slot_at + config.image_snapshot_seconds
    properties = {
        **json.loads(server["image_properties"]),
        "instance_uuid": server["id"],
        "image_type": "snapshot",
        "base_image_ref": server["base_image_ref"],
        "owner_id": call.project,
        "owner_project_name": call.project,
        "user_id": "sim-user",
        "owner_user_name": "sim-user",
        "boot_roles": "member,reader",
        "image_location": "snapshot",
        "image_state": "available",
        **request,
    }
    return _insert_image(
        call,
        name,
        properties,
        server=server,
        size=int(server["disk_gb"] * GIB),
        times=(slot_at, upload_at, upload_at + upload_seconds),
        doomed=doomed,
    )


def _image_of_volume_backed(
    call: SimCall, server: sqlite3.Row, name: str, request: dict[str, str]
) -> str:
    volumes = call.conn.execute(
        "SELECT * FROM volumes WHERE server_id = ? ORDER BY device_name", (server["id"],)
    ).fetchall()
    _check_quota(call, "snapshots", call.config.max_volume_snapshots, len(volumes))
    snapshot_name = f"snapshot for {name}"
    if volumes and len(snapshot_name) > NOVA_FIELD_MAX:
        raise CloudRejected(f"Cinder refused the snapshot name {snapshot_name!r}: over 255")
    mapping = [_snapshot_volume(call, volume, snapshot_name) for volume in volumes]
    properties = {
        **json.loads(server["image_properties"]),
        **request,
        "bdm_v2": "True",
        "root_device_name": "/dev/vda",
        "block_device_mapping": json.dumps(mapping),
    }
    now = call.now
    return _insert_image(
        call, name, properties, server=server, size=0, times=(now, now, now), doomed=False
    )


def _snapshot_volume(call: SimCall, volume: sqlite3.Row, name: str) -> dict[str, object]:
    """Force-snapshot one volume in Cinder; return its block-device-mapping entry."""
    snapshot_id = str(uuid.uuid4())
    call.conn.execute(
        "INSERT INTO snapshots (id, project, name, volume_id, size, metadata, created_at,"
        " ready_at) VALUES (?, ?, ?, ?, ?, '{}', ?, ?)",
        (
            snapshot_id,
            call.project,
            name,
            volume["id"],
            volume["size"],
            call.now,
            call.now + call.config.volume_snapshot_seconds,
        ),
    )
    return {
        "source_type": "snapshot",
        "destination_type": "volume",
        "snapshot_id": snapshot_id,
        "volume_id": None,
        "volume_size": volume["size"],
        "boot_index": volume["boot_index"],
        "device_name": volume["device_name"],
        "delete_on_termination": False,
        "disk_bus": "virtio",
        "device_type": "disk",
    }


def _insert_image(
    call: SimCall,
    name: str,
    properties: Mapping[str, str],
    *,
    server: sqlite3.Row,
    size: int,
    times: tuple[float, float, float],
    doomed: bool,
) -> str:
    image_id = str(uuid.uuid4())
    host = None if server["volume_backed"] else server["host"]
    call.conn.execute(
        "INSERT INTO images (id, project, name, server_id, host, properties, size, created_at,"
        " slot_at, upload_at, ready_at, doomed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            image_id,
            call.project,
            name,
            server["id"],
            host,
            json.dumps(dict(properties)),
            size,
            call.now,
            *times,
            int(doomed),
        ),
    )
    return image_id
