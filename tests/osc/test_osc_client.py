"""The plugin's entry point and client: the openstack client's cloud is stackback's, and a
refusal is one line with its error id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stackback.cloud.openstack import OpenStackCloud
from stackback.osc import plugin
from stackback.osc.client import StackbackClient
from tests.cli.conftest import Sim
from tests.osc.conftest import OscRunner, osc_json


class FakeManager:
    """What the plugin reads of the openstack client's ClientManager."""

    def __init__(self, cloud: str) -> None:
        self._cli_options = type("CloudRegion", (), {"name": cloud})()
        self._auth_required = False
        self.sdk_connection: Any = None
        self.auth_setups = 0

    def setup_auth(self) -> None:
        assert self._auth_required, "osc-lib loads no auth plugin unless auth is required"
        self.auth_setups += 1
        self.sdk_connection = object()  # stands for the authenticated openstacksdk connection


def test_the_entry_point_module_is_an_openstack_client_plugin() -> None:
    assert plugin.API_NAME == "backup"
    assert plugin.API_VERSION_OPTION == "os_backup_api_version"
    assert plugin.DEFAULT_API_VERSION in plugin.API_VERSIONS
    import argparse

    parsed = plugin.build_option_parser(argparse.ArgumentParser()).parse_args([])
    assert parsed.os_backup_api_version == "1"


def test_the_client_acts_as_the_openstack_clients_cloud_through_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKBACK_DB", f"sqlite:///{tmp_path / 'x.db'}")
    manager = FakeManager("mycloud")
    client = plugin.make_client(manager)
    assert isinstance(client, StackbackClient)
    assert client.cloud == "mycloud"  # what a new policy records
    assert manager.auth_setups == 0  # nothing authenticated until a cloud call
    cloud = client.clouds(None)
    assert isinstance(cloud, OpenStackCloud) and cloud.cloud_name == "mycloud"
    assert cloud.conn is manager.sdk_connection  # the openstack client's own session
    assert manager.auth_setups == 1
    assert client.clouds("mycloud") is cloud
    other = client.clouds("elsewhere")  # another clouds.yaml entry, opened by its name
    assert isinstance(other, OpenStackCloud) and other.cloud_name == "elsewhere"
    assert manager.auth_setups == 1


def test_a_refusal_names_its_error_id(osc: OscRunner, sim: Sim) -> None:
    sim.cloud.create_server("web-1")
    osc_json(osc, "backup", "policy", "create", "p", "--server", "web-1", "--cron", "0 1 1 1 *",
             "--keep-last", "3")  # fmt: skip
    (run,) = osc_json(osc, "backup", "policy", "run", "p", "--wait")
    refused = osc("backup", "delete", run["backup_id"])  # the target's last good backup
    assert refused.code == 1
    (line,) = refused.err.strip().splitlines()
    assert "last good backup" in line and re.search(r"\(error id [0-9a-f]+\)$", line), line
    assert osc_json(osc, "backup", "show", run["backup_id"])["status"] == "available"
