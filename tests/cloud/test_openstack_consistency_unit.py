"""The openstacksdk adapter's whole-server operations, without a cloud: forced volume
snapshots, pause/unpause and their refusals, server status, the boot image's properties."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from openstack.compute.v2.server import Server
from openstack.image.v2.image import Image

from stackback.cloud.openstack import OpenStackCloud
from stackback.cloud.openstack.convert import image_info, snapshot_info
from stackback.errors import CloudBusy, CloudRejected
from stackback.policy import ArtifactKind
from stackback.ports import ArtifactRef
from stackback.records import VolumeSpec
from tests.cloud.test_openstack_unit import http_error, snapshot


class FakeCompute:
    def __init__(self, server: Server, refusal: Exception | None = None) -> None:
        self.server = server
        self.refusal = refusal
        self.calls: list[tuple[str, str]] = []

    def pause_server(self, server_id: str) -> None:
        self.calls.append(("pause", server_id))
        if self.refusal is not None:
            raise self.refusal

    def unpause_server(self, server_id: str) -> None:
        self.calls.append(("unpause", server_id))

    def get_server(self, server_id: str) -> Server:
        return self.server

    def find_server(self, name_or_id: str, ignore_missing: bool = True) -> Server:
        return self.server


class FakeBlockStorage:
    def __init__(self, volume_image_metadata: dict[str, str] | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.volume_image_metadata = volume_image_metadata or {}

    def create_snapshot(self, **attrs: Any) -> SimpleNamespace:
        self.created.append(attrs)
        return SimpleNamespace(id="snap-1")

    def get_volume(self, volume_id: str) -> SimpleNamespace:
        return SimpleNamespace(id=volume_id, volume_image_metadata=self.volume_image_metadata)


class FakeImages:
    def __init__(self, image: Image) -> None:
        self.image = image

    def get_image(self, image_id: str) -> Image:
        return self.image


class FakeConnection:
    current_project_id = "p-alpha"

    def __init__(
        self,
        server: Server,
        *,
        refusal: Exception | None = None,
        image: Image | None = None,
        volume_image_metadata: dict[str, str] | None = None,
    ) -> None:
        self.compute = FakeCompute(server, refusal)
        self.block_storage = FakeBlockStorage(volume_image_metadata)
        self.image = FakeImages(image or Image.existing(id="img", name="img", status="active"))


def adapter(conn: FakeConnection) -> OpenStackCloud:
    return OpenStackCloud(lambda: conn, cloud_name="fake")  # type: ignore[arg-type,return-value]


def server(**attrs: Any) -> Server:
    return Server.existing(**{"id": "s1", "name": "web", "status": "ACTIVE", **attrs})


def test_a_volume_snapshot_is_forced_and_carries_string_metadata() -> None:
    conn = FakeConnection(server())
    ref = adapter(conn).snapshot_volume("vol-1", "snap", {"stackback_run": "r1"})
    assert ref == ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "snap-1")
    assert conn.block_storage.created == [
        {"volume_id": "vol-1", "name": "snap", "force": True, "metadata": {"stackback_run": "r1"}}
    ]


@pytest.mark.parametrize(
    ("status", "error"), [(409, CloudBusy), (403, CloudRejected), (400, CloudRejected)]
)
def test_a_refused_pause_maps_to_busy_or_rejected(status: int, error: type[Exception]) -> None:
    conn = FakeConnection(server(), refusal=http_error(status, "Cannot 'pause' instance"))
    with pytest.raises(error):
        adapter(conn).pause_server("s1")


def test_pause_unpause_and_status_reach_nova() -> None:
    conn = FakeConnection(server(status="PAUSED"))
    cloud = adapter(conn)
    cloud.pause_server("s1")
    cloud.unpause_server("s1")
    assert conn.compute.calls == [("pause", "s1"), ("unpause", "s1")]
    assert cloud.server_status("s1") == "PAUSED"


def test_an_image_backed_servers_boot_properties_are_its_images() -> None:
    booted = Image.existing(
        id="img", name="img", status="active", properties={"hw_qemu_guest_agent": "yes"}
    )
    conn = FakeConnection(server(image={"id": "img"}, attached_volumes=[]), image=booted)
    assert adapter(conn).boot_properties("s1").get("hw_qemu_guest_agent") == "yes"


def test_a_volume_backed_servers_boot_properties_are_its_root_volumes_image_metadata() -> None:
    conn = FakeConnection(server(image=""), volume_image_metadata={"os_require_quiesce": "yes"})
    root = VolumeSpec(size_gb=1, device_name="/dev/vda", boot_index=0, volume_id="root")
    properties = adapter(conn)._boot_properties(server(image=""), (root,))
    assert properties == {"os_require_quiesce": "yes"}


def test_raw_statuses_are_reported() -> None:
    queued = Image.existing(id="i", name="i", status="queued")
    assert image_info(queued).raw_status == "queued"
    assert snapshot_info(snapshot("s", status="creating")).raw_status == "creating"
