"""The compute host of a server as the openstack adapter reports it to the per-host limit."""

from __future__ import annotations

from openstack.compute.v2.server import Server

from stackback.cloud.openstack.convert import server_info

BASE = {"id": "s1", "name": "web", "status": "ACTIVE", "image": {"id": "img"}}


def test_an_admin_sees_the_host_name_and_a_tenant_the_opaque_host_id() -> None:
    admin = Server(**BASE, **{"hostId": "9f3e", "OS-EXT-SRV-ATTR:host": "compute-7"})
    tenant = Server(**BASE, hostId="9f3e")
    assert server_info(admin).host == "compute-7"
    assert server_info(tenant).host == "9f3e"


def test_a_server_without_a_host_has_none() -> None:
    assert server_info(Server(**BASE, hostId="")).host is None
    assert server_info(Server(**BASE)).host is None
