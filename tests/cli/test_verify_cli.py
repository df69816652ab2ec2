"""``stackback verify`` and the verify schedule of ``policy set``: -f json, tables, the
verdict in ``backup list``/``show`` and ``policy show``, and refusals (one line, exit 2)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import (
    CliRunner,
    Sim,
    assert_one_line_error,
    backup_of,
    ok_json,
    servers_and_volumes,
)

pytestmark = pytest.mark.usefixtures("fast_restores")


def test_verify_wait_passes_records_the_verdict_and_leaves_nothing(
    cli: CliRunner, sim: Sim
) -> None:
    sim.cloud.create_server("db", volume_backed=True, volumes=1)
    backup = backup_of(cli, sim, "db")
    before = servers_and_volumes(sim)

    job = ok_json(
        cli, "--os-cloud", sim.spec, "verify", backup, "--flavor", "m1.tiny",
        "--network", "isolated", "--console-contains", "LAST LINE", "--port", "22", "--wait",
    )  # fmt: skip

    assert (job["mode"], job["state"], job["verify_result"]) == ("verify", "succeeded", "passed")
    assert job["name"].startswith(f"verify-{backup[:8]}-")
    assert job["checks"] == {"console_contains": "LAST LINE", "port": 22}
    assert job["active_seconds"] is not None
    assert servers_and_volumes(sim) == before
    (listed,) = ok_json(cli, "backup", "list")
    assert listed["verification"]["result"] == "passed"
    assert listed["verification"]["restore_id"] == job["id"]
    assert ok_json(cli, "backup", "show", backup)["verification"] == listed["verification"]
    table = cli("backup", "list")
    assert table.code == 0 and "passed" in table.out
    shown = cli("restore", "show", job["id"])
    assert shown.code == 0 and "LAST LINE" in shown.out and "passed" in shown.out
    pending = cli("--os-cloud", sim.spec, "verify", backup)
    assert pending.code == 0 and "verify-" in pending.out and "pending" in pending.out


def test_a_failed_check_exits_1_and_is_recorded(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web")
    backup = backup_of(cli, sim, "web")
    before = servers_and_volumes(sim)

    result = cli(
        "--os-cloud", sim.spec, "verify", backup, "--console-contains", "login:",
        "--timeout", "1", "--wait",
    )  # fmt: skip

    assert result.code == 1
    assert_one_line_error(result.err, "login:")
    verification = ok_json(cli, "backup", "show", backup)["verification"]
    assert verification["result"] == "failed"
    assert "does not contain 'login:'" in verification["reason"]
    assert servers_and_volumes(sim) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--flavor", "m9.huge"], "m9.huge"),
        (["--network", "nowhere"], "nowhere"),
        (["--port", "22"], "--network"),
        (["--network", "private", "--no-network"], "exclude"),
        (["--port", "70000"], "70000"),
        (["--console-contains", " "], "console-contains"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    cli: CliRunner, sim: Sim, args: list[str], words: str
) -> None:
    sim.cloud.create_server("web")
    backup = backup_of(cli, sim, "web")
    before = servers_and_volumes(sim)
    result = cli("--os-cloud", sim.spec, "verify", backup, *args, "--wait")
    assert result.code == 2, result.err
    assert_one_line_error(result.err, words)
    assert servers_and_volumes(sim) == before
    assert ok_json(cli, "restore", "list") == []


def test_an_unknown_or_deleting_backup_is_refused(cli: CliRunner, sim: Sim) -> None:
    unknown = cli("--os-cloud", sim.spec, "verify", "0000000000")
    assert unknown.code == 2
    assert_one_line_error(unknown.err, "no backup")
    sim.cloud.create_server("web")
    backup_of(cli, sim, "web")
    backup = backup_of(cli, sim, "web")
    assert cli("--os-cloud", sim.spec, "backup", "delete", backup).code == 0
    deleting = cli("--os-cloud", sim.spec, "verify", backup)
    assert deleting.code == 2
    assert_one_line_error(deleting.err, "cannot be restored")
    assert ok_json(cli, "restore", "list") == []


def test_policy_set_verify_schedule_shows_in_policy_show(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web")
    ok_json(
        cli, "--os-cloud", sim.spec, "policy", "create", "nightly", "--server", "web",
        "--cron", "0 1 * * *", "--keep-last", "3",
    )  # fmt: skip
    assert ok_json(cli, "policy", "show", "nightly")["verify"] is None

    shown = ok_json(
        cli, "policy", "set", "nightly", "--verify-cron", "0 3 1 * *", "--verify-flavor",
        "m1.tiny", "--verify-network", "isolated", "--verify-pick", "random-of-3",
    )  # fmt: skip

    verify = shown["verify"]
    assert {k: verify[k] for k in ("cron", "flavor", "network", "pick")} == {
        "cron": "0 3 1 * *",
        "flavor": "m1.tiny",
        "network": "isolated",
        "pick": "random-of-3",
    }
    assert verify["next_run_utc"] is not None
    assert shown["last_verification"] is None
    assert "0 3 1 * *" in cli("policy", "show", "nightly").out
    kept = ok_json(cli, "policy", "set", "nightly", "--verify-network", "")
    assert (kept["verify"]["network"], kept["verify"]["flavor"]) == (None, "m1.tiny")
    dropped = ok_json(cli, "policy", "set", "nightly", "--verify-cron", "")
    assert dropped["verify"] is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--verify-cron", "61 * * * *"], "61"),
        (["--verify-flavor", "m1.tiny"], "--verify-cron"),
        (["--verify-cron", "0 3 * * *", "--verify-pick", "oldest"], "oldest"),
    ],
)
def test_bad_verify_settings_are_one_line_exit_2(
    cli: CliRunner, sim: Sim, args: list[str], words: str
) -> None:
    sim.cloud.create_server("web")
    ok_json(
        cli, "--os-cloud", sim.spec, "policy", "create", "nightly", "--server", "web",
        "--cron", "0 1 * * *", "--keep-last", "3",
    )  # fmt: skip
    result = cli("policy", "set", "nightly", *args)
    assert result.code == 2, result.err
    assert_one_line_error(result.err, words)
    assert ok_json(cli, "policy", "show", "nightly")["verify"] is None


def test_the_demo_ends_verifying_each_server_and_restoring_a_deleted_one(
    cli: CliRunner, tmp_path: Path
) -> None:
    data = ok_json(cli, "demo", "--days", "3", "--dir", str(tmp_path / "demo"))

    verified = data["verifications"]
    assert sorted(v["server"] for v in verified) == ["app-1", "db-1", "web-1", "web-2"]
    assert {v["result"] for v in verified} == {"passed"}
    assert all(v["active_seconds"] is not None for v in verified)
    restored = data["restored"]
    assert (restored["server"], restored["state"]) == ("web-2", "succeeded")
    with sqlite3.connect(tmp_path / "demo" / "sim.sqlite") as conn:
        names = sorted(name for (name,) in conn.execute("SELECT name FROM servers"))
    assert names == ["app-1", "db-1", "web-1", "web-2"]  # no verify- server left behind
    (server_id,) = [
        i
        for (i,) in sqlite3.connect(tmp_path / "demo" / "sim.sqlite").execute(
            "SELECT id FROM servers WHERE name = 'web-2'"
        )
    ]
    assert server_id == restored["server_id"]


def test_a_policy_file_carries_the_verify_schedule(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    sim.cloud.create_server("web")
    ok_json(
        cli, "--os-cloud", sim.spec, "policy", "create", "nightly", "--server", "web",
        "--cron", "0 1 * * *", "--keep-last", "3", "--verify-cron", "0 3 1 * *",
        "--verify-network", "isolated",
    )  # fmt: skip
    exported = cli("policy", "export", "-f", "json")
    assert exported.code == 0, exported.err
    (entry,) = json.loads(exported.out)["policies"]
    assert entry["verify"] == {
        "cron": "0 3 1 * *", "flavor": None, "network": "isolated", "pick": "newest",
    }  # fmt: skip
    path = tmp_path / "policies.json"
    path.write_text(exported.out)
    assert cli("policy", "set", "nightly", "--verify-cron", "").code == 0

    applied = cli("--os-cloud", sim.spec, "policy", "apply", str(path))

    assert applied.code == 0, applied.err
    assert ok_json(cli, "policy", "show", "nightly")["verify"]["network"] == "isolated"
    entry.pop("verify")
    path.write_text(json.dumps({"version": 1, "policies": [entry]}))
    assert cli("--os-cloud", sim.spec, "policy", "apply", str(path)).code == 0
    assert ok_json(cli, "policy", "show", "nightly")["verify"] is None
