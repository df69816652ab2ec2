"""The compute host of a server as the openstack adapter reports it to the per-host limit."""

from __future__ import annotations

from openstack.compute.v2.server import Server

from stackback.cloud.openstack.convert import server_info
from stackback.ports import host_key

BASE = {"id": "s1", "name": "web", "status": "ACTIVE", "image": {"id": "img"}}


def test_an_admin_sees_the_host_name_and_a_tenant_the_opaque_host_id() -> None:
    admin = Server(**BASE, **{"hostId": "9f3e", "OS-EXT-SRV-ATTR:host": "compute-7"})
    tenant = Server(**BASE, hostId="9f3e")
    assert server_info(admin).host == "host:compute-7"
    assert server_info(tenant).host == "hostid:9f3e"


def test_two_projects_on_one_host_share_its_name_but_not_their_host_ids() -> None:
    """Nova hashes a tenant's hostId with the project: only the name joins them."""
    ours = Server(**BASE, **{"hostId": "aaa", "OS-EXT-SRV-ATTR:host": "compute-7"})
    theirs = Server(**BASE, **{"hostId": "bbb", "OS-EXT-SRV-ATTR:host": "compute-7"})
    assert server_info(ours).host == server_info(theirs).host == "host:compute-7"


def test_a_host_name_and_a_host_id_of_the_same_text_are_different_keys() -> None:
    named = Server(**BASE, **{"OS-EXT-SRV-ATTR:host": "abc"})
    hashed = Server(**BASE, hostId="abc")
    assert server_info(named).host != server_info(hashed).host
    assert host_key("abc", None) != host_key(None, "abc")


def test_a_server_without_a_host_has_none() -> None:
    assert server_info(Server(**BASE, hostId="")).host is None
    assert server_info(Server(**BASE)).host is None
    assert host_key("", "") is None
