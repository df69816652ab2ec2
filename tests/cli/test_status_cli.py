"""``stackback status``: a monitoring check (exit 1 when a target is not ok)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.cli.conftest import CliRunner, ok_json


def test_exit_code_follows_the_verdicts(cli: CliRunner, tmp_path: Path) -> None:
    assert cli("status").code == 0
    created = ok_json(cli, "policy", "create", "web", "--server", "web-1", "--cron", "0 * * * *",
                      "--keep-last", "3")  # fmt: skip
    assert [r["verdict"] for r in ok_json(cli, "status")] == ["ok"]  # nothing promised yet
    with sqlite3.connect(tmp_path / "state" / "stackback.db") as db:  # created a day ago
        db.execute("UPDATE policies SET created_at = datetime('now', '-1 day')")
    result = cli("status", "-f", "json")
    assert result.code == 1
    [row] = result.json()
    assert (row["policy_id"], row["target"], row["verdict"]) == (created["id"], "web-1", "never")
    table = cli("status", "--policy", "web")
    assert table.code == 1 and "never" in table.out
    assert cli("status", "--policy", "nope").code == 2
