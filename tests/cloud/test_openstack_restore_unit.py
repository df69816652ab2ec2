"""The openstacksdk adapter's restore operations, without a cloud: payloads and mappings."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from openstack.compute.v2.server import Server

from stackback.cloud.openstack import OpenStackCloud
from stackback.cloud.openstack.convert import server_info
from stackback.cloud.openstack.restore import attached_volume_specs
from stackback.errors import CloudBusy, CloudNotFound
from stackback.ports import (
    MARKER_RESTORE,
    RESOURCE_SERVER,
    RESOURCE_VOLUME,
    BlockDevice,
    BootRequest,
)
from stackback.records import NetworkSpec
from tests.cloud.test_openstack_unit import http_error


def source_server() -> Server:
    return Server.existing(
        id="srv-1",
        name="db",
        status="ACTIVE",
        flavor={"original_name": "m1.small", "vcpus": 1},
        addresses={
            "private": [
                {"addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"},
                {"addr": "203.0.113.9", "OS-EXT-IPS:type": "floating"},
            ]
        },
        security_groups=[{"name": "default"}, {"name": "web"}, {"name": "web"}],
        key_name="ops",
        availability_zone="az1",
        metadata={"role": "db"},
        attached_volumes=[{"id": "vol-root", "delete_on_termination": True}],
        root_device_name="/dev/vda",
        image="",
    )


class FakeCompute:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.servers_listed: list[Server] = []

    def find_flavor(self, name: str, ignore_missing: bool = True) -> Any:
        return SimpleNamespace(id=f"flavor-{name}") if name == "m1.small" else None

    def find_keypair(self, name: str, ignore_missing: bool = True) -> Any:
        return SimpleNamespace(name=name)

    def create_server(self, **attrs: Any) -> Any:
        self.created.append(attrs)
        return SimpleNamespace(id="new-server")

    def servers(self, details: bool = True) -> list[Server]:
        return self.servers_listed

    def get_server(self, server_id: str) -> Server:
        raise http_error(404)


class FakeNetwork:
    def find_network(self, name: str, ignore_missing: bool = True) -> Any:
        return SimpleNamespace(id=f"net-{name}") if name == "private" else None

    def find_security_group(self, name: str, ignore_missing: bool = True) -> Any:
        return SimpleNamespace(id=f"sg-{name}") if name == "default" else None


class FakeBlockStorage:
    def __init__(self) -> None:
        self.refuse_delete = False

    def get_volume(self, volume_id: str) -> Any:
        return SimpleNamespace(
            id=volume_id,
            size=10,
            volume_type="ssd",
            attachments=[{"server_id": "srv-1", "device": "/dev/vda"}],
            status="in-use",
            name="root",
            metadata={},
        )

    def volumes(self, details: bool = True) -> list[Any]:
        return [
            SimpleNamespace(
                id="v-ours", status="available", name="a", metadata={MARKER_RESTORE: "r1"}
            ),
            SimpleNamespace(id="v-other", status="available", name="b", metadata={}),
        ]

    def delete_volume(self, volume_id: str, ignore_missing: bool = True) -> None:
        if self.refuse_delete:
            raise http_error(400, "Volume status must be available or error")


class FakeConnection:
    def __init__(self) -> None:
        self.compute = FakeCompute()
        self.network = FakeNetwork()
        self.block_storage = FakeBlockStorage()
        self.services = {"compute", "network", "block-storage"}

    def has_service(self, service_key: str) -> bool:
        return service_key in self.services

    def without_network_service(self) -> None:
        """As a cloud whose catalog has no Neutron: any use of ``network`` fails."""
        self.services.discard("network")
        self.network = None  # type: ignore[assignment]


@pytest.fixture
def conn() -> FakeConnection:
    return FakeConnection()


@pytest.fixture
def cloud(conn: FakeConnection) -> OpenStackCloud:
    adapter = OpenStackCloud(lambda: conn, cloud_name="test")  # type: ignore[arg-type,return-value]
    return adapter


def test_a_server_body_gives_the_spec_a_restore_needs(conn: FakeConnection) -> None:
    server = source_server()
    info = server_info(server, attached_volume_specs(conn, server))  # type: ignore[arg-type]
    spec = info.spec
    assert spec is not None
    assert spec.flavor == "m1.small"
    assert spec.networks == (NetworkSpec("private", "10.0.0.5"),)
    assert spec.security_groups == ("default", "web")
    assert (spec.key_name, spec.availability_zone) == ("ops", "az1")
    (root,) = spec.volumes
    assert (root.size_gb, root.volume_type, root.device_name, root.boot_index) == (
        10, "ssd", "/dev/vda", 0,
    )  # fmt: skip
    assert root.delete_on_termination


def test_boot_from_volumes_sends_block_device_mapping_v2(
    cloud: OpenStackCloud, conn: FakeConnection
) -> None:
    request = BootRequest(
        "db2",
        "m1.small",
        networks=(NetworkSpec("private", "10.0.0.5"),),
        security_groups=("default",),
        metadata={MARKER_RESTORE: "r1"},
        block_devices=(
            BlockDevice("volume", "v-root", boot_index=0, device_name="/dev/vda"),
            BlockDevice("volume", "v-data", device_name="/dev/vdb"),
        ),
    )
    assert cloud.boot_server(request) == "new-server"
    (sent,) = conn.compute.created
    assert sent["flavor_id"] == "flavor-m1.small"
    assert sent["networks"] == [{"uuid": "net-private", "fixed_ip": "10.0.0.5"}]
    assert "image_id" not in sent
    assert [
        (d["uuid"], d["boot_index"], d["source_type"]) for d in sent["block_device_mapping"]
    ] == [
        ("v-root", 0, "volume"),
        ("v-data", -1, "volume"),
    ]
    assert all(d["destination_type"] == "volume" for d in sent["block_device_mapping"])


def test_unknown_flavor_or_network_is_not_found(cloud: OpenStackCloud) -> None:
    with pytest.raises(CloudNotFound, match="flavor"):
        cloud.validate_boot(BootRequest("x", "m9.huge"))
    with pytest.raises(CloudNotFound, match="network"):
        cloud.validate_boot(BootRequest("x", "m1.small", networks=(NetworkSpec("nowhere"),)))
    with pytest.raises(CloudNotFound, match="security group"):
        cloud.validate_boot(BootRequest("x", "m1.small", security_groups=("default", "open")))


def test_without_a_network_service_a_named_network_is_not_found_and_groups_are_novas(
    cloud: OpenStackCloud, conn: FakeConnection
) -> None:
    conn.without_network_service()
    with pytest.raises(CloudNotFound, match="no network service"):
        cloud.validate_boot(BootRequest("x", "m1.small", networks=(NetworkSpec("private"),)))
    cloud.validate_boot(BootRequest("x", "m1.small", security_groups=("default",)))
    assert cloud.boot_server(BootRequest("x", "m1.small", security_groups=("default",)))
    (sent,) = conn.compute.created
    assert sent["networks"] == "none"
    assert sent["security_groups"] == [{"name": "default"}]


def test_find_restored_keeps_only_what_carries_the_marker(cloud: OpenStackCloud) -> None:
    found = cloud.find_restored("r1")
    assert [(r.kind, r.id) for r in found] == [(RESOURCE_VOLUME, "v-ours")]


def test_a_gone_server_is_deleted_and_a_busy_volume_is_busy(
    cloud: OpenStackCloud, conn: FakeConnection
) -> None:
    assert cloud.resource_status(RESOURCE_SERVER, "gone").status == "deleted"
    conn.block_storage.refuse_delete = True
    with pytest.raises(CloudBusy):
        cloud.delete_volume("v-ours")


def test_without_the_admin_only_root_device_the_first_bootable_volume_is_the_root() -> None:
    volumes = {
        "v-data": SimpleNamespace(
            id="v-data", size=5, volume_type=None, is_bootable=False,
            attachments=[{"server_id": "srv-2", "device": "/dev/vda"}],
        ),
        "v-root": SimpleNamespace(
            id="v-root", size=10, volume_type=None, is_bootable=True,
            attachments=[{"server_id": "srv-2", "device": "/dev/vdb"}],
        ),
    }  # fmt: skip
    conn = SimpleNamespace(block_storage=SimpleNamespace(get_volume=volumes.__getitem__))
    server = Server.existing(
        id="srv-2", image="", attached_volumes=[{"id": "v-data"}, {"id": "v-root"}]
    )
    specs = attached_volume_specs(conn, server)  # type: ignore[arg-type]
    assert [(v.volume_id, v.boot_index) for v in specs] == [("v-data", None), ("v-root", 0)]
