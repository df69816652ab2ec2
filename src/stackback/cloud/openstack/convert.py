"""openstacksdk resources → the port's value objects (servers, images, snapshots)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from openstack.block_storage.v2 import snapshot as snapshot_v2
from openstack.block_storage.v3 import snapshot as snapshot_v3
from openstack.compute.v2.server import Server
from openstack.image.v1 import image as image_v1
from openstack.image.v2 import image as image_v2

from stackback.cloud.bdm import snapshot_children
from stackback.cloud.states import CINDER_BACKUP_STATES, CINDER_SNAPSHOT_STATES, GLANCE_STATES
from stackback.policy import ArtifactKind, ArtifactStatus
from stackback.ports import ArtifactInfo, ArtifactRef, ServerInfo, host_key
from stackback.records import NetworkSpec, ServerSpec, VolumeSpec

Image = image_v1.Image | image_v2.Image
Snapshot = snapshot_v2.Snapshot | snapshot_v3.Snapshot

#: Glance's own image attributes; everything else on an image is a property (metadata).
GLANCE_CORE_ATTRIBUTES = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "checksum", "owner", "size",
        "virtual_size", "min_ram", "min_disk", "container_format", "disk_format",
        "created_at", "updated_at", "tags", "self", "file", "schema", "direct_url",
        "locations", "location", "os_hidden", "os_hash_algo", "os_hash_value", "stores",
        "store", "url", "metadata", "properties",
    }
)  # fmt: skip


def glance_status(raw: str | None) -> ArtifactStatus:
    """Glance image status → artifact status; an unknown status counts as still pending."""
    return GLANCE_STATES.get(raw or "", ArtifactStatus.PENDING)


def cinder_snapshot_status(raw: str | None) -> ArtifactStatus:
    """Cinder snapshot status → artifact status; an unknown status counts as still pending."""
    return CINDER_SNAPSHOT_STATES.get(raw or "", ArtifactStatus.PENDING)


def timestamp(raw: object) -> datetime | None:
    """An API timestamp (Glance: ``...Z``; Cinder: naive, meaning UTC) as an aware datetime."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def image_metadata(image: Image) -> dict[str, str]:
    """An image's properties, including those openstacksdk lifts into attributes."""
    body = image.to_dict(headers=False, computed=False, ignore_none=True, original_names=True)
    lifted = {key: value for key, value in body.items() if key not in GLANCE_CORE_ATTRIBUTES}
    extra: Mapping[str, Any] = image.properties or {}
    merged = {**extra, **lifted}
    return {key: text(value) for key, value in merged.items() if value is not None}


def image_info(image: Image) -> ArtifactInfo:
    metadata = image_metadata(image)
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.IMAGE, str(image.id)),
        status=glance_status(image.status),
        name=image.name or "",
        size=image.size,
        metadata=metadata,
        created_at=timestamp(image.created_at),
        children=snapshot_children(metadata),
        detail=f"glance status {image.status}",
        raw_status=str(image.status or ""),
    )


def _volume_backup_ref(backup_id: str | None) -> ArtifactRef | None:
    return ArtifactRef(ArtifactKind.VOLUME_BACKUP, backup_id) if backup_id else None


#: States a backup cannot have been in when Cinder chose it as a parent (it takes an
#: ``available`` one), nor reached from ``available`` since.
NEVER_PARENT_STATES = frozenset({"creating", "error", "deleted"})


def backup_parent(backup: Any, siblings: Sequence[Any]) -> str | None:
    """The parent Cinder chose for an incremental backup: its ``parent_id`` where the API
    shows it (it does not to project users), else Cinder's own rule replayed: of the
    volume's backups made before this one that were ``available``, the latest by
    ``data_timestamp``; those Cinder says have dependents are preferred, which rules out a
    backup that was still being made when this one was asked for."""
    if not backup.is_incremental:
        return None
    body: Mapping[str, Any] = backup.to_dict(computed=False)
    shown = body.get("parent_id") or getattr(backup, "parent_id", None)
    if shown:
        return str(shown)
    asked_at = str(backup.created_at or "")
    earlier = [
        b
        for b in siblings
        if b.volume_id == backup.volume_id
        and b.id != backup.id
        and str(b.created_at or "") < asked_at
        and b.status not in NEVER_PARENT_STATES
    ]
    with_dependents = [b for b in earlier if getattr(b, "has_dependent_backups", None)]
    candidates = with_dependents or earlier
    if not candidates:
        return None
    return str(max(candidates, key=lambda b: str(b.data_timestamp or b.created_at or "")).id)


def backup_info(backup: Any, siblings: Sequence[Any] = ()) -> ArtifactInfo:
    """A Cinder backup, with the parent Cinder picked when it is incremental."""
    metadata: Mapping[str, Any] = backup.metadata or {}
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.VOLUME_BACKUP, str(backup.id)),
        status=CINDER_BACKUP_STATES.get(backup.status or "", ArtifactStatus.PENDING),
        name=backup.name or "",
        size=backup.size,
        metadata={key: text(value) for key, value in metadata.items()},
        created_at=timestamp(backup.created_at),
        detail=f"cinder backup status {backup.status}",
        raw_status=str(backup.status or ""),
        parent=_volume_backup_ref(backup_parent(backup, siblings)),
    )


def snapshot_info(snapshot: Snapshot) -> ArtifactInfo:
    metadata: Mapping[str, Any] = snapshot.metadata or {}
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, str(snapshot.id)),
        status=cinder_snapshot_status(snapshot.status),
        name=snapshot.name or "",
        size=snapshot.size,
        metadata={key: text(value) for key, value in metadata.items()},
        created_at=timestamp(snapshot.created_at),
        detail=f"cinder status {snapshot.status}",
        raw_status=str(snapshot.status or ""),
    )


def boot_image_id(server: Server) -> str | None:
    """The id of the image an image-backed server was booted from (None: from a volume)."""
    image: object = server.image
    if isinstance(image, image_v1.Image | image_v2.Image):
        return str(image.id) if image.id else None
    if isinstance(image, Mapping):
        return str(image["id"]) if image.get("id") else None
    return None


def boots_from_volume(server: Server) -> bool:
    """Whether the server has no image (Nova reports ``"image": ""`` for boot-from-volume)."""
    image: object = server.image
    if isinstance(image, image_v1.Image | image_v2.Image):
        return not image.id
    if isinstance(image, Mapping):
        return not image.get("id")
    return not image


def server_info(
    server: Server,
    volumes: tuple[VolumeSpec, ...] = (),
    boot_properties: Mapping[str, str] | None = None,
) -> ServerInfo:
    metadata: Mapping[str, Any] = server.metadata or {}
    return ServerInfo(
        id=str(server.id),
        name=server.name or "",
        status=server.status or "",
        metadata={key: text(value) for key, value in metadata.items()},
        volume_backed=boots_from_volume(server),
        project_id=server.project_id,
        spec=server_spec(server, volumes),
        boot_properties=dict(boot_properties or {}),
        host=_host_of(server),
    )


def _host_of(server: Server) -> str | None:
    """The admin's host name (``OS-EXT-SRV-ATTR:host``) if shown, else Nova's ``hostId``,
    keyed by :func:`host_key` (``host:NAME`` or ``hostid:HASH``)."""
    name, opaque = server.compute_host, server.host_id
    return host_key(str(name) if name else None, str(opaque) if opaque else None)


def _flavor_name(server: Server) -> str | None:
    """Nova ≥ 2.47 embeds the flavor (``original_name``); older ones give its id."""
    flavor: object = server.flavor
    if isinstance(flavor, Mapping):
        name = flavor.get("original_name") or flavor.get("name") or flavor.get("id")
        return str(name) if name else None
    for attribute in ("original_name", "name", "id"):
        value = getattr(flavor, attribute, None)
        if value:
            return str(value)
    return None


def _networks(server: Server) -> tuple[NetworkSpec, ...]:
    """Each network with its fixed (not floating) address, as ``addresses`` reports them."""
    addresses: Mapping[str, Any] = server.addresses or {}
    found: list[NetworkSpec] = []
    for network, entries in addresses.items():
        fixed = [
            entry.get("addr")
            for entry in entries or ()
            if isinstance(entry, Mapping) and entry.get("OS-EXT-IPS:type", "fixed") == "fixed"
        ]
        found.append(NetworkSpec(str(network), str(fixed[0]) if fixed and fixed[0] else None))
    return tuple(found)


def _security_groups(server: Server) -> tuple[str, ...]:
    groups: list[Any] = server.security_groups or []
    names = [g.get("name") if isinstance(g, Mapping) else getattr(g, "name", None) for g in groups]
    return tuple(dict.fromkeys(str(name) for name in names if name))


def volume_spec(
    volume: Any, server_id: str, root_device: str | None, delete_on_termination: bool
) -> VolumeSpec:
    """One attached Cinder volume (as ``block_storage.get_volume`` gives it) of ``server_id``."""
    device = None
    for attachment in volume.attachments or ():
        if isinstance(attachment, Mapping) and attachment.get("server_id") == server_id:
            device = attachment.get("device")
    return VolumeSpec(
        size_gb=int(volume.size or 0),
        device_name=device,
        boot_index=0 if device is not None and device == root_device else None,
        volume_type=volume.volume_type,
        delete_on_termination=delete_on_termination,
        volume_id=str(volume.id),
    )


def server_spec(server: Server, volumes: tuple[VolumeSpec, ...] = ()) -> ServerSpec:
    """What a restore needs of a server, from its Nova body (and its volumes, if read)."""
    metadata: Mapping[str, Any] = server.metadata or {}
    return ServerSpec(
        flavor=_flavor_name(server),
        networks=_networks(server),
        security_groups=_security_groups(server),
        key_name=server.key_name,
        availability_zone=server.availability_zone,
        metadata={key: text(value) for key, value in metadata.items()},
        volumes=tuple(sorted(volumes, key=lambda v: (v.boot_index is None, v.device_name or ""))),
    )
