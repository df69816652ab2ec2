"""The Cloud contract, run against the loopback OpenStack plane through openstacksdk.

The cloud under test is :class:`OpenStackCloud` for project ``alpha``; ``beta`` is the other
project. Servers are m1.tiny, ``networks='none'``, booted by the alpha user (volume-backed
ones from a bootable Cinder volume made from the plane's public image).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest
from openstack.connection import Connection

from stackback.cloud.openstack import OpenStackCloud
from stackback.cloud.openstack.groups import SPECS_HIDDEN
from stackback.errors import CloudRejected
from stackback.ports import Cloud, GroupCloud, RestoreCloud, ServerInfo, VolumeCloud
from tests.cloud.contract import (
    CloudContract,
    CloudHarness,
    ConsistencyContract,
    GroupContract,
    RestoreContract,
    VolumeContract,
)

pytestmark = pytest.mark.openstack

FLAVOR = "m1.tiny"
IMAGE = "stackback-tiny"
POLL_S = 1.0
BOOT_TIMEOUT_S = 180
#: Fake hypervisor upload time inside ``slow_uploads``: long enough to see PENDING and a 409.
SLOW_UPLOAD_S = 10.0


class Plane(Protocol):
    """What this module uses of the ``openstack_plane`` fixture."""

    clouds_yaml: Path
    run_dir: Path

    def connection(self, cloud_name: str) -> Connection: ...

    def set_snapshot_delay(self, seconds: float) -> None: ...


class PlaneHarness:
    """A :class:`CloudHarness` on the real plane; waiting really sleeps."""

    def __init__(self, plane: Plane) -> None:
        self.plane = plane
        self.alpha = plane.connection("alpha")
        alpha_cloud = OpenStackCloud(plane.connection("alpha"), cloud_name="alpha")
        self.cloud: Cloud = alpha_cloud
        self.restore_cloud: RestoreCloud = alpha_cloud
        self.flavor = FLAVOR
        self.network: str | None = None  # the Neutron stub has no networks
        self.other_project_cloud: Cloud = OpenStackCloud(
            plane.connection("beta"), cloud_name="beta"
        )
        self.volume_cloud: VolumeCloud = alpha_cloud
        self.backups_unavailable: str | None = None  # cinder-backup: posix, over file_volume.py
        self.servers: list[str] = []
        self.volumes: list[str] = []
        # Group types' specs are shown to admins only: the groups port runs as admin.
        self.admin = plane.connection("admin")
        admin_cloud = OpenStackCloud(plane.connection("admin"), cloud_name="admin")
        self.group_cloud: GroupCloud = admin_cloud
        self.group_artifacts: Cloud = admin_cloud
        self.groups: list[str] = []
        self.group_types: list[str] = []
        compute = self.alpha.compute
        self.flavor_id = compute.find_flavor(FLAVOR, ignore_missing=False).id
        self.image_id = self.alpha.image.find_image(IMAGE, ignore_missing=False).id

    def boot(
        self,
        name: str,
        metadata: Mapping[str, str] | None = None,
        volume_backed: bool = False,
        data_volume: bool = False,
    ) -> Any:
        """Start booting a server (without waiting for it); returns the sdk server.

        ``data_volume``: volume-backed, with a blank 1 GB volume Nova makes as ``/dev/vdb``."""
        conn = self.alpha
        boot: dict[str, Any] = {"image_id": self.image_id}
        if volume_backed or data_volume:
            volume = conn.block_storage.create_volume(
                size=1, image_id=self.image_id, name=f"{name}-root"
            )
            conn.block_storage.wait_for_status(volume, "available", interval=POLL_S, wait=120)
            boot = {
                "block_device_mapping": [
                    {
                        "boot_index": 0,
                        "uuid": volume.id,
                        "source_type": "volume",
                        "destination_type": "volume",
                        "delete_on_termination": True,
                    }
                ]
            }
            if data_volume:
                boot["block_device_mapping"].append(
                    {
                        "boot_index": -1,
                        "source_type": "blank",
                        "destination_type": "volume",
                        "volume_size": 1,
                        "device_name": "/dev/vdb",
                        "delete_on_termination": True,
                    }
                )
        server = conn.compute.create_server(
            name=name,
            flavor_id=self.flavor_id,
            networks="none",
            metadata=dict(metadata or {}),
            **boot,
        )
        self.servers.append(server.id)
        return server

    def wait_active(self, server: Any, volume_backed: bool = False) -> ServerInfo:
        done = self.alpha.compute.wait_for_server(server, interval=POLL_S, wait=BOOT_TIMEOUT_S)
        return ServerInfo(
            id=done.id,
            name=done.name,
            status=done.status,
            metadata=dict(done.metadata or {}),
            volume_backed=volume_backed,
            project_id=done.project_id,
        )

    def create_server(
        self,
        name: str,
        metadata: Mapping[str, str] | None = None,
        volume_backed: bool = False,
    ) -> ServerInfo:
        return self.wait_active(self.boot(name, metadata, volume_backed), volume_backed)

    def create_server_with_data_volume(self, name: str) -> ServerInfo:
        return self.wait_active(self.boot(name, data_volume=True), volume_backed=True)

    def attach_new_volume(self, server_id: str) -> str:
        """A blank 1 GB volume attached to the server (``in-use`` once Cinder says so)."""
        conn = self.alpha
        volume = conn.block_storage.create_volume(size=1, name=f"data-{server_id[:8]}")
        conn.block_storage.wait_for_status(volume, "available", interval=POLL_S, wait=120)
        self.volumes.append(volume.id)
        conn.compute.create_volume_attachment(server_id, volume_id=volume.id)
        conn.block_storage.wait_for_status(volume, "in-use", interval=POLL_S, wait=120)
        return str(volume.id)

    def create_volume(self, name: str, metadata: Mapping[str, str] | None = None) -> str:
        conn = self.alpha
        volume = conn.block_storage.create_volume(size=1, name=name, metadata=dict(metadata or {}))
        self.volumes.append(volume.id)
        conn.block_storage.wait_for_status(volume, "available", interval=POLL_S, wait=120)
        return str(volume.id)

    def delete_volume(self, volume_id: str) -> None:
        self.alpha.block_storage.delete_volume(volume_id, ignore_missing=True)

    @contextmanager
    def failing_backups(self, volume_id: str) -> Iterator[None]:
        """The volume's file (``plane/file_volume.py``) swapped for a directory: attaching it
        for the backup service fails, and the backup ends in ``error``."""
        data = self.plane.run_dir / "cinder" / "file-volumes" / f"volume-{volume_id}"
        aside = data.with_name(data.name + ".aside")
        data.rename(aside)
        data.mkdir()
        try:
            yield
        finally:
            data.rmdir()
            aside.rename(data)

    def image_of(self, server_id: str) -> str | None:
        image = self.alpha.compute.get_server(server_id).image
        image_id = image.get("id") if isinstance(image, Mapping) else getattr(image, "id", None)
        return str(image_id) if image_id else None

    def delete_server(self, server_id: str) -> None:
        self.alpha.compute.delete_server(server_id, ignore_missing=True)

    def set_server_metadata(self, server_id: str, metadata: Mapping[str, str]) -> None:
        self.alpha.compute.set_server_metadata(server_id, **metadata)

    def delete_server_metadata(self, server_id: str, key: str) -> None:
        self.alpha.compute.delete_server_metadata(server_id, [key])

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {timeout_s} s")
            time.sleep(POLL_S)

    @contextmanager
    def slow_uploads(self) -> Iterator[None]:
        self.plane.set_snapshot_delay(SLOW_UPLOAD_S)
        try:
            yield
        finally:
            self.plane.set_snapshot_delay(0)

    @contextmanager
    def slow_snapshot_deletes(self) -> Iterator[None]:
        """The plane's fake Cinder driver deletes at once: a snapshot is ``deleting`` only
        until cinder-volume has the request, which the contract may or may not catch."""
        yield

    def create_volume_group(self, consistent: bool, volumes: int) -> tuple[str, tuple[str, ...]]:
        """In the admin project: a new group type (promising or not), a group, its volumes."""
        cinder: Any = self.admin.block_storage
        specs = {"consistent_group_snapshot_enabled": "<is> True"} if consistent else {}
        group_type = cinder.create_group_type(
            name=f"contract-gt-{uuid.uuid4().hex[:8]}", group_specs=specs
        )
        self.group_types.append(group_type.id)
        volume_type = next(iter(cinder.types())).id
        group = cinder.create_group(
            name=f"contract-g-{uuid.uuid4().hex[:8]}",
            group_type=group_type.id,
            volume_types=[volume_type],
        )
        self.groups.append(group.id)
        self.wait_until(lambda: cinder.get_group(group.id).status == "available", 120)
        made = [
            cinder.create_volume(
                size=1, name=f"contract-gv-{i}", group_id=group.id, volume_type=volume_type
            )
            for i in range(volumes)
        ]
        for volume in made:
            cinder.wait_for_status(volume, "available", interval=POLL_S, wait=120)
        return str(group.id), tuple(str(v.id) for v in made)

    def close(self) -> None:
        cinder: Any = self.admin.block_storage
        for group_id in self.groups:
            with contextlib.suppress(Exception):
                for snapshot in cinder.group_snapshots(details=True):
                    if snapshot.group_id == group_id:
                        cinder.delete_group_snapshot(snapshot.id, ignore_missing=True)
                        cinder.wait_for_delete(snapshot, interval=POLL_S, wait=60)
                cinder.delete_group(group_id, delete_volumes=True)
                cinder.wait_for_delete(cinder.get_group(group_id), interval=POLL_S, wait=60)
        for type_id in self.group_types:
            with contextlib.suppress(Exception):
                cinder.delete_group_type(type_id, ignore_missing=True)
        for server_id in self.servers:
            self.delete_server(server_id)
        for volume_id in self.volumes:  # detached once its server is gone
            with contextlib.suppress(Exception):
                volume = self.alpha.block_storage.get_volume(volume_id)
                self.alpha.block_storage.wait_for_status(
                    volume, "available", interval=POLL_S, wait=120
                )
                self.alpha.block_storage.delete_volume(volume_id, ignore_missing=True)


@pytest.fixture
def plane_harness(openstack_plane: Plane) -> Iterator[PlaneHarness]:
    harness = PlaneHarness(openstack_plane)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def harness(plane_harness: PlaneHarness) -> CloudHarness:
    return plane_harness


class TestOpenStackCloudContract(
    CloudContract, RestoreContract, ConsistencyContract, VolumeContract, GroupContract
):
    pass


def test_a_project_member_cannot_see_a_group_types_promise_so_never_takes_a_group_snapshot(
    plane_harness: PlaneHarness,
) -> None:
    """Cinder shows group specs to admins only: with a member's credentials a group whose
    type promises consistent snapshots is not seen to, and its group snapshot is refused."""
    admin: Any = plane_harness.admin.block_storage
    member: Any = plane_harness.alpha.block_storage
    group_type = admin.create_group_type(
        name=f"contract-gt-{uuid.uuid4().hex[:8]}",
        group_specs={"consistent_group_snapshot_enabled": "<is> True"},
    )
    plane_harness.group_types.append(group_type.id)
    volume_type = next(iter(member.types())).id
    group = member.create_group(
        name=f"contract-g-{uuid.uuid4().hex[:8]}",
        group_type=group_type.id,
        volume_types=[volume_type],
    )
    try:
        plane_harness.wait_until(lambda: member.get_group(group.id).status == "available", 120)
        volume = member.create_volume(
            size=1, name="contract-member-gv", group_id=group.id, volume_type=volume_type
        )
        member.wait_for_status(volume, "available", interval=POLL_S, wait=120)
        cloud = OpenStackCloud(plane_harness.plane.connection("alpha"), cloud_name="alpha")
        (seen,) = cloud.volume_groups_of([volume.id])
        assert seen.id == group.id and seen.volume_ids == (volume.id,)
        assert not seen.consistent and seen.why_not == SPECS_HIDDEN
        with pytest.raises(CloudRejected):
            cloud.create_group_snapshot(group.id, "contract-gs", "")
    finally:
        with contextlib.suppress(Exception):
            member.delete_group(group.id, delete_volumes=True)
            member.wait_for_delete(member.get_group(group.id), interval=POLL_S, wait=60)
