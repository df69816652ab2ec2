"""The :class:`~stackback.ports.RestoreCloud` operations over openstacksdk.

Boots use block device mapping v2 (``source_type`` ``volume`` for volumes the restore
made from snapshots, or ``snapshot`` for Nova to make them); servers and volumes are
found again by the restore's marker in their metadata (Nova and Cinder metadata).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openstack import exceptions as sdk_exc
from openstack.compute.v2.server import Server
from openstack.connection import Connection

from stackback.cloud.common import contains
from stackback.cloud.openstack.convert import boots_from_volume, volume_spec
from stackback.cloud.openstack.errors import cloud_errors
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected
from stackback.ports import (
    MARKER_RESTORE,
    RESOURCE_SERVER,
    RESOURCE_VOLUME,
    BlockDevice,
    BootRequest,
    CloudResource,
)
from stackback.records import VolumeSpec


def attached_volume_specs(conn: Connection, server: Server) -> tuple[VolumeSpec, ...]:
    """Each volume attached to ``server`` with its size, type, device and boot index.

    ``root_device_name`` is an admin-only attribute; a project user does not see it, so
    the root of a volume-backed server is then its first bootable volume by device name.
    """
    found: list[tuple[Any, bool]] = []
    for attached in server.attached_volumes or ():
        volume_id = attached.get("id") if isinstance(attached, Mapping) else None
        if volume_id:
            volume = conn.block_storage.get_volume(volume_id)
            found.append((volume, bool(attached.get("delete_on_termination", False))))
    root = server.root_device_name
    if root is None and boots_from_volume(server):
        devices = sorted(
            (not _bootable(volume), _device(volume, str(server.id)) or "~") for volume, _ in found
        )
        root = devices[0][1] if devices else None
    return tuple(volume_spec(v, str(server.id), root, delete) for v, delete in found)


def _bootable(volume: Any) -> bool:
    return str(getattr(volume, "is_bootable", None) or getattr(volume, "bootable", "")).lower() in (
        "true",
        "1",
    )


def _device(volume: Any, server_id: str) -> str | None:
    for attachment in volume.attachments or ():
        if isinstance(attachment, Mapping) and attachment.get("server_id") == server_id:
            device = attachment.get("device")
            return str(device) if device else None
    return None


def _mapping(device: BlockDevice) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "source_type": device.source_type,
        "destination_type": "volume",
        "uuid": device.uuid,
        "boot_index": device.boot_index if device.boot_index is not None else -1,
        "delete_on_termination": device.delete_on_termination,
    }
    if device.device_name:
        entry["device_name"] = device.device_name
    if device.volume_size:
        entry["volume_size"] = device.volume_size
    if device.volume_type:
        entry["volume_type"] = device.volume_type
    return entry


class OpenStackRestoreOperations:
    """Mixed into :class:`~stackback.cloud.openstack.OpenStackCloud`."""

    @property
    def conn(self) -> Connection:
        raise NotImplementedError

    @property
    def _where(self) -> str:
        raise NotImplementedError

    def validate_boot(self, request: BootRequest) -> None:
        """Look up the flavor, networks, key pair, image and snapshots before creating any."""
        with cloud_errors(f"checking a boot request on {self._where}"):
            self._flavor_id(request.flavor)
            self._network_ids(request)
            if request.key_name:
                self.conn.compute.find_keypair(request.key_name, ignore_missing=False)
            # Without a network service Nova checks the groups itself (when it boots).
            if request.security_groups and self._has_network_service():
                for group in request.security_groups:
                    if self.conn.network.find_security_group(group, ignore_missing=True) is None:
                        raise CloudNotFound(
                            f"security group {group!r} does not exist on {self._where}"
                        )
            if request.image_id:
                image = self.conn.image.get_image(request.image_id)
                if image.status != "active":
                    raise CloudRejected(f"image {request.image_id} is {image.status}, not active")
            for device in request.block_devices:
                if device.source_type == "snapshot":
                    snapshot = self.conn.block_storage.get_snapshot(device.uuid)
                    if snapshot.status != "available":
                        raise CloudRejected(f"snapshot {device.uuid} is {snapshot.status}")

    def boot_server(self, request: BootRequest) -> str:
        """``POST /servers`` with ``imageRef`` or ``block_device_mapping_v2``."""
        with cloud_errors(f"creating server {request.name!r} on {self._where}"):
            attrs: dict[str, Any] = {
                "name": request.name,
                "flavor_id": self._flavor_id(request.flavor),
                "networks": self._network_ids(request) or "none",
                "metadata": {k: str(v) for k, v in request.metadata.items()},
            }
            if request.security_groups:
                attrs["security_groups"] = [{"name": n} for n in request.security_groups]
            if request.key_name:
                attrs["key_name"] = request.key_name
            if request.availability_zone:
                attrs["availability_zone"] = request.availability_zone
            if request.image_id:
                attrs["image_id"] = request.image_id
            if request.block_devices:
                attrs["block_device_mapping"] = [_mapping(d) for d in request.block_devices]
            server = self.conn.compute.create_server(**attrs)
        return str(server.id)

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
        """Cinder ``POST /volumes`` from a snapshot, stamped with ``metadata``."""
        attrs: dict[str, Any] = {
            "snapshot_id": snapshot_id,
            "name": name,
            "size": size_gb,
            "metadata": {k: str(v) for k, v in metadata.items()},
        }
        if volume_type:
            attrs["volume_type"] = volume_type
        if availability_zone:
            attrs["availability_zone"] = availability_zone
        with cloud_errors(f"creating a volume from snapshot {snapshot_id} on {self._where}"):
            return str(self.conn.block_storage.create_volume(**attrs).id)

    def attach_volume(self, server_id: str, volume_id: str, device: str | None) -> None:
        """Nova ``os-volume_attachments``."""
        attrs: dict[str, Any] = {"device": device} if device else {}
        with cloud_errors(f"attaching volume {volume_id} to {server_id} on {self._where}"):
            self.conn.compute.create_volume_attachment(server_id, volume_id, **attrs)

    def detach_volume(self, server_id: str, volume_id: str) -> None:
        """Nova ``DELETE os-volume_attachments/{volume}``; the volume stays."""
        with cloud_errors(f"detaching volume {volume_id} from {server_id} on {self._where}"):
            self.conn.compute.delete_volume_attachment(server_id, volume_id)

    def rebuild_server(self, server_id: str, image_id: str) -> None:
        """Nova ``rebuild`` with the backup image."""
        with cloud_errors(f"rebuilding server {server_id} on {self._where}"):
            self.conn.compute.rebuild_server(server_id, image_id)

    def resource_status(self, kind: str, resource_id: str) -> CloudResource:
        """A server's or volume's status; ``deleted`` when it is gone."""
        with cloud_errors(f"reading {kind} {resource_id} on {self._where}"):
            try:
                if kind == RESOURCE_SERVER:
                    server = self.conn.compute.get_server(resource_id)
                    return _resource(kind, server, server.status)
                if kind == RESOURCE_VOLUME:
                    volume = self.conn.block_storage.get_volume(resource_id)
                    return _resource(kind, volume, volume.status)
            except sdk_exc.NotFoundException:
                return CloudResource(kind, resource_id, "deleted")
        raise CloudRejected(f"no resources of kind {kind!r}")

    def find_restored(self, restore_id: str) -> list[CloudResource]:
        """The project's servers and volumes carrying ``MARKER_RESTORE = restore_id``."""
        wanted = {MARKER_RESTORE: restore_id}
        with cloud_errors(f"listing servers and volumes on {self._where}"):
            found = [
                _resource(RESOURCE_SERVER, s, s.status)
                for s in self.conn.compute.servers(details=True)
            ]
            found += [
                _resource(RESOURCE_VOLUME, v, v.status)
                for v in self.conn.block_storage.volumes(details=True)
            ]
        return [item for item in found if contains(item.metadata, wanted)]

    def delete_server(self, server_id: str) -> None:
        """Delete a server; one already gone is fine."""
        with cloud_errors(f"deleting server {server_id} on {self._where}"):
            self.conn.compute.delete_server(server_id, ignore_missing=True)

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume; gone is fine, one still attached or creating is ``CloudBusy``."""
        try:
            with cloud_errors(f"deleting volume {volume_id} on {self._where}"):
                self.conn.block_storage.delete_volume(volume_id, ignore_missing=True)
        except CloudRejected as exc:
            if not isinstance(exc.__cause__, sdk_exc.BadRequestException):
                raise
            raise CloudBusy(f"{exc.message} (volume not deletable in its current state)") from exc

    def console_output(self, server_id: str) -> str:
        """The server's console log."""
        with cloud_errors(f"reading the console of {server_id} on {self._where}"):
            return str(self.conn.compute.get_server_console_output(server_id).get("output", ""))

    def _flavor_id(self, flavor: str) -> str:
        found = self.conn.compute.find_flavor(flavor, ignore_missing=True)
        if found is None:
            raise CloudNotFound(f"flavor {flavor!r} does not exist on {self._where}")
        return str(found.id)

    def _has_network_service(self) -> bool:
        """Whether the catalog has a network service (Neutron)."""
        return bool(self.conn.has_service("network"))

    def _network_ids(self, request: BootRequest) -> list[dict[str, str]]:
        networks: list[dict[str, str]] = []
        if request.networks and not self._has_network_service():
            names = ", ".join(repr(n.network) for n in request.networks)
            raise CloudNotFound(
                f"network {names} does not exist on {self._where}: it has no network service"
            )
        for net in request.networks:
            found = self.conn.network.find_network(net.network, ignore_missing=True)
            if found is None:
                raise CloudNotFound(f"network {net.network!r} does not exist on {self._where}")
            entry = {"uuid": str(found.id)}
            if net.fixed_ip:
                entry["fixed_ip"] = net.fixed_ip
            networks.append(entry)
        return networks


def _resource(kind: str, resource: Any, status: str | None) -> CloudResource:
    metadata: Mapping[str, Any] = resource.metadata or {}
    return CloudResource(
        kind=kind,
        id=str(resource.id),
        status=(status or "").lower() if kind == RESOURCE_VOLUME else (status or ""),
        name=resource.name or "",
        metadata={str(k): str(v) for k, v in metadata.items()},
    )
