"""``stackback db upgrade | status`` and commands on unmigrated databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from stackback.store.database import head_revision
from tests.cli.conftest import CliRunner, Result, assert_one_line_error, ok_json

CRON = "0 1 * * *"


def behind(cli: CliRunner, *args: str) -> Any:
    """``db status -f json`` of a database not at this code's schema: exit 1, one line why."""
    result: Result = cli(*args, "db", "status", "-f", "json")
    assert result.code == 1, result.err
    assert_one_line_error(result.err, "stackback db upgrade")
    return result.json()


def test_upgrade_then_status(cli: CliRunner, db_url: str) -> None:
    before = behind(cli, "--db", db_url)
    assert set(before) == {"database", "current", "required", "up_to_date"}
    assert before["current"] is None
    assert before["required"] == head_revision()
    assert before["up_to_date"] is False

    upgraded = ok_json(cli, "--db", db_url, "db", "upgrade")
    assert set(upgraded) == {"database", "from", "to"}
    assert (upgraded["from"], upgraded["to"]) == (None, head_revision())
    again = ok_json(cli, "--db", db_url, "db", "upgrade")
    assert (again["from"], again["to"]) == (head_revision(), head_revision())

    after = ok_json(cli, "--db", db_url, "db", "status")
    assert (after["current"], after["up_to_date"]) == (head_revision(), True)
    ok_json(
        cli,
        "--db",
        db_url,
        "policy",
        "create",
        "p",
        "--server",
        "a",
        "--cron",
        CRON,
        "--keep-last",
        "7",
    )
    assert [p["name"] for p in ok_json(cli, "--db", db_url, "policy", "list")] == ["p"]


def test_status_of_a_missing_sqlite_file_creates_nothing(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "stackback.db"
    status = behind(cli, "--db", f"sqlite:///{path}")
    assert (status["current"], status["up_to_date"]) == (None, False)
    assert not (tmp_path / "not").exists()


@pytest.mark.postgres
def test_password_is_not_shown(cli: CliRunner, postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url).set(password="s3cret-pw")
    result = cli("--db", url.render_as_string(hide_password=False), "db", "status", "-f", "json")
    assert "s3cret-pw" not in result.out + result.err


@pytest.mark.parametrize(
    "args",
    [
        ["policy", "list"],
        ["policy", "create", "p", "--server", "a", "--cron", CRON],
        ["server", "enable", "web1"],
        ["backup", "list"],
        ["run", "list"],
    ],
)
def test_commands_refuse_an_unmigrated_database(
    cli: CliRunner, db_url: str, tmp_path: Path, args: list[str]
) -> None:
    if db_url.startswith("sqlite"):  # an existing file without the schema
        path = tmp_path / "stackback.db"
        sqlite3.connect(path).execute("CREATE TABLE unrelated (x INTEGER)").connection.close()
    result = cli("--db", db_url, *args)
    assert result.code != 0
    assert_one_line_error(result.err, "stackback db upgrade")
    assert "Traceback" not in result.err
    # nothing was created behind the user's back
    assert behind(cli, "--db", db_url)["current"] is None


def test_new_sqlite_path_is_created_at_current_schema(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "new.db"  # in an existing directory (a missing one is refused)
    url = f"sqlite:///{path}"
    ok_json(
        cli,
        "--db",
        url,
        "policy",
        "create",
        "p",
        "--server",
        "a",
        "--cron",
        CRON,
        "--keep-last",
        "7",
    )
    assert path.exists()
    status = ok_json(cli, "--db", url, "db", "status")
    assert (status["current"], status["up_to_date"]) == (head_revision(), True)


def test_default_database_lives_in_the_state_dir(cli: CliRunner, tmp_path: Path) -> None:
    ok_json(cli, "policy", "create", "p", "--server", "a", "--cron", CRON, "--keep-last", "7")
    assert (tmp_path / "state" / "stackback.db").exists()


def test_status_does_not_create_a_missing_sqlite_file(cli: CliRunner, tmp_path: Path) -> None:
    # Regression: `db status` on a fresh install created an empty file, and every
    # command afterwards refused it as unmigrated.
    path = tmp_path / "state" / "stackback.db"
    status = behind(cli)
    assert status["current"] is None
    assert not path.exists()
    assert ok_json(cli, "policy", "list") == []
    assert ok_json(cli, "db", "status")["up_to_date"] is True


def test_stackback_db_env(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("STACKBACK_DB", f"sqlite:///{path}")
    ok_json(cli, "policy", "create", "p", "--server", "a", "--cron", CRON, "--keep-last", "7")
    assert path.exists()
    assert not (tmp_path / "state" / "stackback.db").exists()


def test_a_db_in_a_directory_that_does_not_exist_is_refused_except_by_upgrade(
    cli: CliRunner, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'stackback.db'}"
    result = cli("--db", url, "policy", "list")
    assert result.code == 2
    assert_one_line_error(result.err, "typo", "does not exist", "db upgrade")
    assert not (tmp_path / "typo").exists()
    ok_json(cli, "--db", url, "db", "upgrade")
    assert ok_json(cli, "--db", url, "policy", "list") == []


def test_status_exits_non_zero_until_the_schema_is_up_to_date(
    cli: CliRunner, tmp_path: Path
) -> None:
    # Regression: `db status` exited 0 on a database that needed `db upgrade`.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    sqlite3.connect(tmp_path / "old.db").close()
    table = cli("--db", url, "db", "status")
    assert table.code == 1
    assert "no" in table.out.lower()  # the table still says what it found
    assert_one_line_error(table.err, "needs", "stackback db upgrade")
    ok_json(cli, "--db", url, "db", "upgrade")
    assert ok_json(cli, "--db", url, "db", "status")["up_to_date"] is True
