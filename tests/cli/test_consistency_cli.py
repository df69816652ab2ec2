"""Whole-server policies from the CLI: consistency options, and what a backup obtained."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json
from tests.cli.test_run_cli import clock_at


def _create(cli: CliRunner, *extra: str) -> dict[str, object]:
    created: dict[str, object] = ok_json(
        cli, "policy", "create", "whole", "--server", "db1", "--cron", "0 1 * * *",
        "--keep-last", "3", *extra,
    )  # fmt: skip
    return created


def test_policy_create_show_and_set_consistency(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("db1", volumes=1)
    created = _create(
        cli, "--kind", "server-consistent", "--consistency", "paused", "--fallback", "fail",
        "--max-pause", "30",
    )  # fmt: skip
    assert created["kind"] == "server-consistent"
    assert (created["consistency"], created["fallback"], created["max_pause_seconds"]) == (
        "paused",
        "fail",
        30,
    )
    assert ok_json(cli, "policy", "show", "whole") == created
    changed = ok_json(cli, "policy", "set", "whole", "--consistency", "quiesced")
    assert (changed["consistency"], changed["fallback"], changed["max_pause_seconds"]) == (
        "quiesced",
        "fail",
        30,
    )
    plain = ok_json(
        cli, "policy", "create", "plain", "--server", "db1", "--cron", "0 2 * * *",
        "--keep-last", "3",
    )  # fmt: skip
    assert (plain["kind"], plain["consistency"], plain["fallback"]) == (
        "server-image",
        "crash",
        "crash",
    )


def test_bad_consistency_settings_are_one_line_exit_2(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("db1")
    for extra, words in [
        (("--kind", "server-consistent", "--max-pause", "0"), ("--max-pause",)),
        (("--consistency", "paused"), ("server-consistent",)),
        (("--kind", "server-consistent", "--consistency", "frozen"), ("frozen",)),
    ]:
        result = cli(
            "policy", "create", "bad", "--server", "db1", "--cron", "0 1 * * *",
            "--keep-last", "3", *extra,
        )  # fmt: skip
        assert result.code == 2, (extra, result.err)
        assert_one_line_error(result.err, *words)
    assert ok_json(cli, "policy", "list") == []


def test_a_paused_whole_server_backup_shows_its_level_and_artifacts(
    cli: CliRunner, sim: Sim
) -> None:
    sim.cloud.create_server("db1", volumes=1)
    policy = _create(cli, "--kind", "server-consistent", "--consistency", "paused")
    schedules = policy["schedules"]
    assert isinstance(schedules, list)
    fire = datetime.fromisoformat(schedules[0]["next_run_utc"])
    for offset, command in [(1, "scheduler"), (2, "worker"), (60, "worker")]:
        done = cli(
            "--os-cloud", sim.spec, command, "--once",
            *clock_at(fire + timedelta(minutes=offset)),
        )  # fmt: skip
        assert done.code == 0, done.err
    (backup,) = ok_json(cli, "backup", "list")
    assert backup["status"] == "available", backup
    assert backup["consistency"] == "paused"
    assert "server paused" in backup["consistency_detail"]
    assert sorted(a["kind"] for a in backup["artifacts"]) == ["image", "volume-snapshot"]
    assert ok_json(cli, "backup", "show", backup["id"]) == backup
    (server,) = sim.cloud.servers()
    assert server.status == "ACTIVE"


def test_a_policy_file_keeps_the_consistency_settings(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    sim.cloud.create_server("db1", volumes=1)
    created = _create(
        cli, "--kind", "server-consistent", "--consistency", "paused", "--max-pause", "20",
    )  # fmt: skip
    exported = cli("policy", "export")
    assert exported.code == 0, exported.err
    path = tmp_path / "policies.yaml"
    path.write_text(exported.out)
    ok_json(cli, "policy", "delete", "whole")
    ok_json(cli, "policy", "apply", str(path))
    applied = ok_json(cli, "policy", "show", "whole")
    for key in ("kind", "consistency", "fallback", "max_pause_seconds"):
        assert applied[key] == created[key], key
