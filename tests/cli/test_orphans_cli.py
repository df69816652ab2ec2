"""`--orphans` from the CLI: set, shown, exported; bad rules refused; orphaned backups listed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json
from tests.cli.test_run_cli import clock_at


def _create(cli: CliRunner, *extra: str) -> dict[str, object]:
    created: dict[str, object] = ok_json(
        cli, "policy", "create", "nightly", "--server", "web1", "--cron", "0 1 * * *",
        "--keep-last", "3", *extra,
    )  # fmt: skip
    return created


def test_orphans_is_keep_unless_set_and_shown_everywhere(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    sim.cloud.create_server("web1")
    assert _create(cli)["orphans"] == "keep"
    changed = ok_json(cli, "policy", "set", "nightly", "--orphans", "expire-after 90d")
    assert changed["orphans"] == "expire-after 90d"
    assert ok_json(cli, "policy", "show", "nightly")["orphans"] == "expire-after 90d"
    assert ok_json(cli, "policy", "set", "nightly", "--orphans", "keep-last=2")["orphans"] == (
        "keep-last 2"
    )
    assert ok_json(cli, "policy", "set", "nightly", "--keep-last", "4")["orphans"] == "keep-last 2"
    exported = cli("policy", "export")
    assert exported.code == 0 and "keep-last 2" in exported.out, exported.err
    path = tmp_path / "policies.yaml"
    path.write_text(exported.out)
    ok_json(cli, "policy", "delete", "nightly")
    ok_json(cli, "policy", "apply", str(path))
    assert ok_json(cli, "policy", "show", "nightly")["orphans"] == "keep-last 2"


@pytest.mark.parametrize(
    ("rule", "word"),
    [
        ("delete", "--orphans"),
        ("expire-after", "--orphans"),
        ("expire-after 2w", "2w"),
        ("expire-after 0d", "above zero"),
        ("keep-last 0", "keep-last"),
        ("keep-last many", "many"),
        ("keep 3", "--orphans"),
    ],
)
def test_a_bad_orphans_rule_is_one_line_exit_2(
    cli: CliRunner, sim: Sim, rule: str, word: str
) -> None:
    sim.cloud.create_server("web1")
    result = cli(
        "policy", "create", "bad", "--server", "web1", "--cron", "0 1 * * *",
        "--keep-last", "3", "--orphans", rule,
    )  # fmt: skip
    assert result.code == 2, result.err
    assert_one_line_error(result.err, word)
    assert ok_json(cli, "policy", "list") == []


def test_backup_list_shows_a_deleted_servers_backups_orphaned(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    policy = _create(cli)
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
    assert (backup["status"], backup["orphaned"], backup["source_gone_at"]) == (
        "available",
        False,
        None,
    )
    assert cli("--os-cloud", sim.spec, "sim", "server", "delete", "web1").code == 0
    later = fire + timedelta(days=3)
    done = cli("--os-cloud", sim.spec, "worker", "--once", *clock_at(later))
    assert done.code == 0, done.err
    (orphan,) = ok_json(cli, "backup", "list")
    assert orphan["status"] == "available"  # keep: never a silent deletion
    assert orphan["orphaned"] is True
    last_seen = datetime.fromisoformat(orphan["source_last_seen_at"])
    gone = datetime.fromisoformat(orphan["source_gone_at"])
    assert last_seen < gone
    assert ok_json(cli, "backup", "show", orphan["id"]) == orphan
    table = cli("backup", "list")
    assert table.code == 0 and f"orphaned: server last seen {last_seen:%Y-%m-%d %H:%M}" in (
        " ".join(table.out.split())
    ), table.out
