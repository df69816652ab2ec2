"""``stackback sim server create | list | delete``: a simulated cloud without Python."""

from __future__ import annotations

from stackback.policy import Selector
from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json


def test_created_servers_are_listed_and_backed_up_by_a_selector_policy(
    cli: CliRunner, sim: Sim
) -> None:
    web = ok_json(
        cli,
        "--os-cloud",
        sim.spec,
        "sim",
        "server",
        "create",
        "web-1",
        "--metadata",
        "backup=nightly",
    )
    db = ok_json(
        cli,
        "--os-cloud",
        sim.spec,
        "sim",
        "server",
        "create",
        "db-1",
        "--volume-backed",
        "--volumes",
        "2",
    )
    assert web["metadata"] == {"backup": "nightly"} and web["status"] == "ACTIVE"
    assert db["volume_backed"] is True
    listed = ok_json(cli, "--os-cloud", sim.spec, "sim", "server", "list")
    assert [s["name"] for s in listed] == ["web-1", "db-1"]
    assert {s.id for s in sim.cloud.servers()} == {web["id"], db["id"]}
    assert [s.id for s in sim.cloud.find_servers(Selector("backup", "nightly"))] == [web["id"]]


def test_delete_by_name_removes_the_server(cli: CliRunner, sim: Sim) -> None:
    ok_json(cli, "--os-cloud", sim.spec, "sim", "server", "create", "web-1")
    gone = ok_json(cli, "--os-cloud", sim.spec, "sim", "server", "delete", "web-1")
    assert gone["status"] == "DELETED"
    assert ok_json(cli, "--os-cloud", sim.spec, "sim", "server", "list") == []


def test_unknown_server_bad_metadata_and_a_real_cloud_are_refused(cli: CliRunner, sim: Sim) -> None:
    missing = cli("--os-cloud", sim.spec, "sim", "server", "delete", "nope")
    assert missing.code == 2
    assert_one_line_error(missing.err, "nope")
    bad = cli("--os-cloud", sim.spec, "sim", "server", "create", "x", "--metadata", "novalue")
    assert bad.code == 2
    assert_one_line_error(bad.err, "--metadata", "KEY=VALUE")
    real = cli("--os-cloud", "mycloud", "sim", "server", "list")
    assert real.code == 2
    assert_one_line_error(real.err, "simulator", "mycloud")
    assert sim.cloud.servers() == []
