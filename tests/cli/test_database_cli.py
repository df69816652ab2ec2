"""Database policies from the CLI on the simulator: ``sim database``, ``policy create --kind
database-backup`` with ``--full-every`` / ``--full-cron``, and what is refused (exit 2)."""

from __future__ import annotations

from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json


def test_a_database_policy_with_incrementals(cli: CliRunner, sim: Sim) -> None:
    made = ok_json(
        cli, "--os-cloud", sim.spec, "sim", "database", "create", "orders",
        "--datastore", "postgresql", "--datastore-version", "13", "--volume-size", "4",
    )  # fmt: skip
    assert (made["datastore"], made["volume_size"], made["status"]) == ("postgresql", 4, "ACTIVE")
    listed = ok_json(cli, "--os-cloud", sim.spec, "sim", "database", "list")
    assert [d["name"] for d in listed] == ["orders"]
    policy = ok_json(
        cli, "--os-cloud", sim.spec, "policy", "create", "orders", "--kind", "database-backup",
        "--server", "orders", "--cron", "0 1 * * *", "--keep-last", "14", "--full-every", "7",
    )  # fmt: skip
    assert (policy["kind"], policy["full_every"], policy["full_cron"]) == (
        "database-backup",
        7,
        None,
    )
    exported = cli("policy", "export")
    assert exported.code == 0 and "full_every: 7" in exported.out  # a policy file keeps it
    changed = ok_json(cli, "policy", "set", "orders", "--full-cron", "0 0 * * 0")
    assert (changed["full_every"], changed["full_cron"]) == (7, "0 0 * * 0")  # either asks
    changed = ok_json(cli, "policy", "set", "orders", "--full-every", "0")
    assert (changed["full_every"], changed["full_cron"]) == (None, "0 0 * * 0")
    selected = ok_json(
        cli, "--os-cloud", sim.spec, "policy", "create", "pg", "--kind", "database-backup",
        "--selector", "datastore=postgres*", "--cron", "0 2 * * *", "--keep-last", "3",
    )  # fmt: skip
    assert selected["selector"] == "datastore=postgres*"


def test_what_a_database_policy_refuses(cli: CliRunner, sim: Sim) -> None:
    base = ("--os-cloud", sim.spec, "policy", "create", "p", "--cron", "0 1 * * *")
    refused = cli(*base, "--kind", "database-backup", "--selector", "backup=x", "--keep-last", "3")
    assert refused.code == 2
    assert_one_line_error(refused.err, "datastore")
    refused = cli(*base, "--server", "web", "--keep-last", "3", "--full-every", "2", "--offline")
    assert refused.code == 2
    assert_one_line_error(refused.err, "full-every")
    refused = cli(
        *base, "--kind", "database-backup", "--server", "db", "--keep-last", "3",
        "--full-every", "2", "--full-cron", "0 0 * * 61",
    )  # fmt: skip
    assert refused.code == 2
    assert_one_line_error(refused.err, "day-of-week")
