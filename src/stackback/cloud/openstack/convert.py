"""openstacksdk resources → the port's value objects (servers, images, snapshots)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from openstack.block_storage.v2 import snapshot as snapshot_v2
from openstack.block_storage.v3 import snapshot as snapshot_v3
from openstack.compute.v2.server import Server
from openstack.image.v1 import image as image_v1
from openstack.image.v2 import image as image_v2

from stackback.cloud.bdm import snapshot_children
from stackback.cloud.states import CINDER_SNAPSHOT_STATES, GLANCE_STATES
from stackback.policy import ArtifactKind, ArtifactStatus
from stackback.ports import ArtifactInfo, ArtifactRef, ServerInfo

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
    )


def boots_from_volume(server: Server) -> bool:
    """Whether the server has no image (Nova reports ``"image": ""`` for boot-from-volume)."""
    image: object = server.image
    if isinstance(image, image_v1.Image | image_v2.Image):
        return not image.id
    if isinstance(image, Mapping):
        return not image.get("id")
    return not image


def server_info(server: Server) -> ServerInfo:
    metadata: Mapping[str, Any] = server.metadata or {}
    return ServerInfo(
        id=str(server.id),
        name=server.name or "",
        status=server.status or "",
        metadata={key: text(value) for key, value in metadata.items()},
        volume_backed=boots_from_volume(server),
        project_id=server.project_id,
    )
