"""``stackback policy run``: a policy's backups now, queued or taken in this process."""

from __future__ import annotations

from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json


def create_policy(
    cli: CliRunner, sim: Sim, name: str, *targets: str, offline: bool = False
) -> None:
    args = ["--os-cloud", sim.spec, "policy", "create", name, "--cron", "0 1 * * *"]
    if offline:
        args.append("--offline")
    for target in targets:
        args += ["--server", target]
    ok_json(cli, *args, "--keep-last", "3")


def test_run_queues_one_run_per_target_under_the_policy(cli: CliRunner, sim: Sim) -> None:
    for name in ("web1", "web2"):
        sim.cloud.create_server(name)
    create_policy(cli, sim, "nightly", "web1", "web2")

    runs = ok_json(cli, "--os-cloud", sim.spec, "policy", "run", "nightly")

    assert sorted(r["target"] for r in runs) == ["web1", "web2"]
    assert {r["state"] for r in runs} == {"pending"}
    assert {r["policy"] for r in runs} == {"nightly"}
    assert sim.cloud.images() == []  # queued for the workers, nothing taken yet


def test_run_wait_takes_the_backups_and_rotates_them_by_the_policy(
    cli: CliRunner, sim: Sim
) -> None:
    sim.cloud.create_server("web1")
    create_policy(cli, sim, "nightly", "web1")

    (run,) = ok_json(cli, "--os-cloud", sim.spec, "policy", "run", "nightly", "--wait")

    assert run["state"] == "succeeded", run
    (backup,) = ok_json(cli, "backup", "list")
    assert (backup["id"], backup["policy"]) == (run["backup_id"], "nightly")
    assert backup["status"] == "available"


def test_run_wait_exits_1_when_a_backup_fails(cli: CliRunner, sim: Sim) -> None:
    create_policy(cli, sim, "nightly", "gone", offline=True)  # a server that never existed

    result = cli("--os-cloud", sim.spec, "policy", "run", "nightly", "--wait")

    assert result.code == 1
    assert "backup of gone failed" in result.err


def test_timeout_without_wait_and_unknown_policy_are_bad_input(cli: CliRunner, sim: Sim) -> None:
    result = cli("policy", "run", "nightly", "--timeout", "5")
    assert result.code == 2
    assert_one_line_error(result.err, "--timeout")
    result = cli("policy", "run", "missing")
    assert result.code == 2
    assert_one_line_error(result.err, "missing")
