"""The :class:`~stackback.ports.Cloud` port over a real OpenStack, through openstacksdk.

One :class:`OpenStackCloud` is bound to the project of its credentials. Images come
from Nova ``createImage`` (never ``createBackup``: its rotation would fight stackback's
retention); volume-backed servers give a 0-byte image whose ``block_device_mapping``
names Cinder snapshots, reported as the image's ``children``. Status polling is batched:
one Glance listing (ids filtered with ``in:``) and one Cinder listing per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import openstack
from openstack import exceptions as sdk_exc
from openstack.compute.v2.server import Server
from openstack.connection import Connection

from stackback.cloud.common import chunks, contains, missing_info
from stackback.cloud.openstack.convert import (
    backup_info,
    boot_image_id,
    image_info,
    image_metadata,
    server_info,
    snapshot_info,
    text,
)
from stackback.cloud.openstack.errors import cloud_errors
from stackback.cloud.openstack.groups import OpenStackGroupOperations
from stackback.cloud.openstack.images import list_images
from stackback.cloud.openstack.probe import OpenStackPortCheck
from stackback.cloud.openstack.restore import OpenStackRestoreOperations, attached_volume_specs
from stackback.cloud.openstack.trove import OpenStackTroveOperations
from stackback.errors import CloudBusy, CloudRejected
from stackback.policy import ArtifactKind, Selector
from stackback.ports import (
    CREATED_BY_VALUE,
    MARKER_CREATED_BY,
    ArtifactInfo,
    ArtifactRef,
    ServerInfo,
    VolumeInfo,
)
from stackback.records import VolumeSpec

#: Image ids per Glance listing (``id=in:...``), which keeps the URL well under 4 KiB.
IMAGE_IDS_PER_LISTING = 60


class OpenStackCloud(
    OpenStackRestoreOperations,
    OpenStackPortCheck,
    OpenStackTroveOperations,
    OpenStackGroupOperations,
):
    """A :class:`~stackback.ports.Cloud` for the project of one openstacksdk connection."""

    def __init__(
        self,
        conn: Connection | Callable[[], Connection],
        *,
        cloud_name: str | None = None,
    ) -> None:
        """Wrap a connection, or a factory called on first use (lazy connect)."""
        self.cloud_name = cloud_name
        self._conn: Connection | None = conn if isinstance(conn, Connection) else None
        self._factory = None if isinstance(conn, Connection) else conn
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cloud_name: str) -> OpenStackCloud:
        """The cloud named ``cloud_name`` in clouds.yaml (``OS_CLIENT_CONFIG_FILE`` honoured).

        Nothing is read or contacted until the first call.
        """
        return cls(lambda: openstack.connect(cloud=cloud_name), cloud_name=cloud_name)

    @property
    def conn(self) -> Connection:
        """The openstacksdk connection, made on first use."""
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    assert self._factory is not None
                    with cloud_errors(f"connecting to {self._where}"):
                        self._conn = self._factory()
        return self._conn

    @property
    def _where(self) -> str:
        return f"cloud {self.cloud_name!r}" if self.cloud_name else "the cloud"

    def _project_id(self) -> str:
        with cloud_errors(f"authenticating to {self._where}"):
            project_id = self.conn.current_project_id
        if not project_id:
            raise CloudRejected(f"{self._where}: credentials are not scoped to a project")
        return project_id

    # -- the Cloud port -------------------------------------------------------------------

    def get_server(self, server: str) -> ServerInfo:
        """Find one server of the project by id or (unique) name."""
        with cloud_errors(f"looking up server {server!r} on {self._where}"):
            found = self.conn.compute.find_server(server, ignore_missing=False)
            if not found.attached_volumes:
                return server_info(found)
            found = self.conn.compute.get_server(found.id)  # find may give a summary only
            return server_info(found, attached_volume_specs(self.conn, found))

    def find_servers(self, selector: Selector) -> list[ServerInfo]:
        """Every server of the project whose metadata matches ``selector`` (one listing)."""
        with cloud_errors(f"listing servers on {self._where}"):
            servers = [server_info(server) for server in self.conn.compute.servers(details=True)]
        return [server for server in servers if selector.matches(dict(server.metadata))]

    def start_server_image(
        self, server_id: str, name: str, metadata: Mapping[str, str]
    ) -> ArtifactRef:
        """Nova ``createImage`` (one request); the image then goes pending → available.

        409 (a snapshot already in progress) → :class:`~stackback.errors.CloudBusy`.
        """
        with cloud_errors(f"createImage of server {server_id} on {self._where}"):
            image_id = Server(id=server_id).create_image(
                self.conn.compute, name, {key: str(value) for key, value in metadata.items()}
            )
        return ArtifactRef(ArtifactKind.IMAGE, image_id)

    def find_artifacts(self, metadata: Mapping[str, str]) -> list[ArtifactInfo]:
        """The project's images and volume snapshots whose metadata contains ``metadata``.

        Glance filters the images on the properties; Cinder ignores metadata filters from
        project users, so snapshots are listed and filtered here.
        """
        found = (
            self._images(metadata=metadata)
            + self._snapshots()
            + self._backups()
            + self._trove_backups()
            + self._group_snapshots(optional=True)
        )
        return [info for info in found if contains(info.metadata, metadata)]

    def artifact_statuses(self, refs: Sequence[ArtifactRef]) -> dict[ArtifactRef, ArtifactInfo]:
        """Status of many artifacts: one Glance and one Cinder listing, not a GET each."""
        kinds = {ref.kind for ref in refs}
        found: dict[ArtifactRef, ArtifactInfo] = {}
        image_ids = sorted({ref.id for ref in refs if ref.kind is ArtifactKind.IMAGE})
        if image_ids:
            found.update((info.ref, info) for info in self._images(image_ids))
        if ArtifactKind.VOLUME_SNAPSHOT in kinds:
            found.update((info.ref, info) for info in self._snapshots())
        if ArtifactKind.VOLUME_BACKUP in kinds:
            found.update((info.ref, info) for info in self._backups())
        if ArtifactKind.DATABASE_BACKUP in kinds:
            found.update((info.ref, info) for info in self.database_backups())
        if ArtifactKind.GROUP_SNAPSHOT in kinds:
            found.update((info.ref, info) for info in self._group_snapshots())
        return {ref: found.get(ref) or missing_info(ref) for ref in refs}

    def set_artifact_metadata(self, ref: ArtifactRef, metadata: Mapping[str, str]) -> None:
        """Merge ``metadata`` into an image's properties or a snapshot's metadata."""
        if ref.kind is ArtifactKind.DATABASE_BACKUP:
            raise CloudRejected("a Trove backup has no metadata (its markers are written once)")
        if ref.kind is ArtifactKind.GROUP_SNAPSHOT:
            raise CloudRejected("a group snapshot has no metadata (its markers are fixed)")
        values = {key: str(value) for key, value in metadata.items()}
        with cloud_errors(f"setting metadata of {ref.kind} {ref.id} on {self._where}"):
            if ref.kind is ArtifactKind.IMAGE:
                self.conn.image.update_image(ref.id, **values)
            elif ref.kind is ArtifactKind.VOLUME_BACKUP:
                cinder_v3: Any = self.conn.block_storage  # backup metadata: v3 (3.43) only
                cinder_v3.set_backup_metadata(ref.id, **values)
            else:
                self.conn.block_storage.set_snapshot_metadata(ref.id, **values)

    def delete_artifact(self, ref: ArtifactRef) -> None:
        """Delete an artifact; one already gone (or not visible to the project) is fine.

        Cinder refuses (400) to delete a snapshot that is not ``available`` or ``error``
        (still ``creating``, or already ``deleting``): that is reported as
        :class:`~stackback.errors.CloudBusy`, to be retried (the simulator does the same).
        """
        what = f"deleting {ref.kind} {ref.id} on {self._where}"
        if ref.kind is ArtifactKind.IMAGE:
            with cloud_errors(what):
                self.conn.image.delete_image(ref.id, ignore_missing=True)
            return
        if ref.kind is ArtifactKind.VOLUME_BACKUP:
            # A parent with increments: Cinder's 400 stays CloudRejected (the collector
            # records it on the artifact and tries again on a later pass).
            with cloud_errors(what):
                self.conn.block_storage.delete_backup(ref.id, ignore_missing=True)
            return
        if ref.kind is ArtifactKind.DATABASE_BACKUP:
            self._delete_trove_backup(ref.id)
            return
        if ref.kind is ArtifactKind.GROUP_SNAPSHOT:
            self._delete_group_snapshot(ref.id)
            return
        try:
            with cloud_errors(what):
                self.conn.block_storage.delete_snapshot(ref.id, ignore_missing=True)
        except CloudRejected as exc:
            if not isinstance(exc.__cause__, sdk_exc.BadRequestException):
                raise
            raise CloudBusy(f"{exc.message} (snapshot not deletable in its current state)") from exc

    def list_marked_artifacts(self) -> list[ArtifactInfo]:
        """Every artifact of the project carrying stackback's created-by marker."""
        return self.find_artifacts({MARKER_CREATED_BY: CREATED_BY_VALUE})

    def snapshot_volume(
        self, volume_id: str, name: str, metadata: Mapping[str, str]
    ) -> ArtifactRef:
        """Cinder ``POST /snapshots`` with ``force=True`` (the volume may be in use)."""
        with cloud_errors(f"snapshot of volume {volume_id} on {self._where}"):
            snapshot = self.conn.block_storage.create_snapshot(
                volume_id=volume_id,
                name=name,
                force=True,
                metadata={key: str(value) for key, value in metadata.items()},
            )
        return ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, str(snapshot.id))

    def get_volume(self, volume: str) -> VolumeInfo:
        """One volume by id or (unique) name."""
        with cloud_errors(f"looking up volume {volume} on {self._where}"):
            found = self.conn.block_storage.find_volume(volume, ignore_missing=False)
            return _volume_info(found)

    def find_volumes(self, selector: Selector) -> list[VolumeInfo]:
        """The project's volumes whose metadata matches ``selector`` (filtered here)."""
        with cloud_errors(f"listing volumes on {self._where}"):
            found = [_volume_info(v) for v in self.conn.block_storage.volumes(details=True)]
        return [v for v in found if selector.matches(dict(v.metadata))]

    def start_volume_backup(
        self, volume_id: str, name: str, metadata: Mapping[str, str], *, incremental: bool
    ) -> ArtifactRef:
        """Cinder ``POST /backups`` (``force``: the volume may be in use), with metadata."""
        with cloud_errors(f"backup of volume {volume_id} on {self._where}"):
            backup = self.conn.block_storage.create_backup(
                volume_id=volume_id,
                name=name,
                force=True,
                is_incremental=incremental,
                metadata={key: str(value) for key, value in metadata.items()},
            )
        return ArtifactRef(ArtifactKind.VOLUME_BACKUP, str(backup.id))

    def create_volume_from_backup(
        self, backup_id: str, *, name: str, metadata: Mapping[str, str]
    ) -> str:
        """Cinder ``POST /backups/{id}/restore`` into a new volume, then its metadata."""
        with cloud_errors(f"restoring backup {backup_id} on {self._where}"):
            answer = self.conn.block_storage.restore_backup(backup_id, name=name)
            volume_id = str(answer.volume_id)
            if metadata:
                self.conn.block_storage.set_volume_metadata(
                    volume_id, **{key: str(value) for key, value in metadata.items()}
                )
        return volume_id

    def server_status(self, server_id: str) -> str:
        """The server's Nova status now."""
        with cloud_errors(f"looking up server {server_id} on {self._where}"):
            return str(self.conn.compute.get_server(server_id).status or "")

    def boot_properties(self, server_id: str) -> Mapping[str, str]:
        """The boot image's properties (one more Glance or Cinder call, so not in get_server)."""
        with cloud_errors(f"looking up server {server_id} on {self._where}"):
            found = self.conn.compute.get_server(server_id)
            volumes = attached_volume_specs(self.conn, found) if found.attached_volumes else ()
            return self._boot_properties(found, volumes)

    def pause_server(self, server_id: str) -> None:
        """Nova ``pause`` (409 → ``CloudBusy``, 403 by policy → ``CloudRejected``)."""
        with cloud_errors(f"pausing server {server_id} on {self._where}"):
            self.conn.compute.pause_server(server_id)

    def unpause_server(self, server_id: str) -> None:
        """Nova ``unpause``."""
        with cloud_errors(f"unpausing server {server_id} on {self._where}"):
            self.conn.compute.unpause_server(server_id)

    # -- internals ------------------------------------------------------------------------

    def _boot_properties(self, server: Server, volumes: Sequence[VolumeSpec]) -> dict[str, str]:
        """The boot image's properties: the root volume's ``volume_image_metadata`` (Cinder
        copied them when it made the volume), else the image's properties now (Nova's own
        copy, in the server's system metadata, is not shown to project users)."""
        try:
            image_id = boot_image_id(server)
            if image_id is not None:
                return image_metadata(self.conn.image.get_image(image_id))
            root = next((v for v in volumes if v.boot_index == 0 and v.volume_id), None)
            if root is None or root.volume_id is None:
                return {}
            volume = self.conn.block_storage.get_volume(root.volume_id)
            found: Mapping[str, Any] = getattr(volume, "volume_image_metadata", None) or {}
            return {str(k): text(v) for k, v in found.items() if v is not None}
        except sdk_exc.SDKException:  # the image is gone or hidden: no agent to count on
            return {}

    def _images(
        self, ids: Sequence[str] | None = None, metadata: Mapping[str, str] | None = None
    ) -> list[ArtifactInfo]:
        """The project's own images (not public/shared ones): those with ``ids``, or those
        Glance finds carrying ``metadata`` (to be checked again: it may ignore some pairs).
        """
        owner = self._project_id()
        with cloud_errors(f"listing images on {self._where}"):
            if ids is None:
                images = list_images(self.conn.image, owner, metadata or {})
                return [image_info(image) for image in images]
            return [
                image_info(image)
                for chunk in chunks(ids, IMAGE_IDS_PER_LISTING)
                for image in self.conn.image.images(owner=owner, id="in:" + ",".join(chunk))
            ]

    def _snapshots(self) -> list[ArtifactInfo]:
        with cloud_errors(f"listing volume snapshots on {self._where}"):
            snapshots = self.conn.block_storage.snapshots(details=True)
            return [
                snapshot_info(snapshot) for snapshot in snapshots if snapshot.status != "deleted"
            ]

    def _backups(self) -> list[ArtifactInfo]:
        with cloud_errors(f"listing volume backups on {self._where}"):
            backups = list(self.conn.block_storage.backups(details=True))
        return [backup_info(b, backups) for b in backups if b.status != "deleted"]


def _volume_info(volume: Any) -> VolumeInfo:
    metadata: Mapping[str, Any] = volume.metadata or {}
    return VolumeInfo(
        id=str(volume.id),
        name=str(volume.name or volume.id),
        status=str(volume.status or ""),
        size_gb=int(volume.size or 0),
        metadata={key: text(value) for key, value in metadata.items()},
        volume_type=volume.volume_type,
        availability_zone=volume.availability_zone,
    )


if TYPE_CHECKING:  # the type checker proves the adapter satisfies its port
    from stackback.ports import Cloud, GroupCloud, VolumeCloud

    def _conforms_to_port(cloud: OpenStackCloud) -> Cloud:
        return cloud

    def _conforms_to_volume_port(cloud: OpenStackCloud) -> VolumeCloud:
        return cloud

    def _conforms_to_group_port(cloud: OpenStackCloud) -> GroupCloud:
        return cloud
