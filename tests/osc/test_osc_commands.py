"""``openstack backup ...`` in process, on the simulated cloud: the same services, the
same ``-f json`` keys as ``stackback ... -f json``, and errors as one line."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackback.policy import Backup, BackupKind, BackupStatus
from stackback.store.database import create_db_engine
from stackback.store.sql import SqlStore
from tests.cli.conftest import CliRunner, Sim, ok_json
from tests.cli.test_backup_cli import BACKUP_KEYS, RUN_KEYS
from tests.osc.conftest import OscRunner, osc_json


@pytest.fixture
def web(sim: Sim) -> str:
    return sim.cloud.create_server("web-1", metadata={"backup": "nightly"}).id


def create_policy(osc: OscRunner, *targets: str) -> dict[str, object]:
    policy: dict[str, object] = osc_json(
        osc,
        "backup", "policy", "create", "nightly", *(targets or ("--selector", "backup=nightly")),
        "--cron", "0 1 * * *", "--timezone", "Europe/Amsterdam", "--keep-daily", "7",
    )  # fmt: skip
    return policy


def test_policy_create_show_list_set_have_the_cli_keys(
    osc: OscRunner, cli: CliRunner, sim: Sim
) -> None:
    created = create_policy(osc)
    assert created["name"] == "nightly"
    assert created["cloud"] == sim.spec  # the client's cloud, recorded as the CLI records it
    assert created["retention"] == {"daily": 7}
    assert created["selector"] == "backup=nightly"
    shown = osc_json(osc, "backup", "policy", "show", "nightly")
    assert shown == ok_json(cli, "policy", "show", "nightly")  # same services, same view
    (listed,) = osc_json(osc, "backup", "policy", "list")
    assert set(listed) == set(ok_json(cli, "policy", "list")[0])
    changed = osc_json(
        osc, "backup", "policy", "set", "nightly", "--keep-daily", "0", "--keep-last", "3"
    )
    assert changed["retention"] == {"last": 3}
    assert osc_json(osc, "backup", "policy", "disable", "nightly")["enabled"] is False
    assert osc_json(osc, "backup", "policy", "enable", "nightly")["enabled"] is True
    (deleted,) = osc_json(osc, "backup", "policy", "delete", "nightly")
    assert deleted == {"id": created["id"], "name": "nightly", "deleted": True}
    assert osc_json(osc, "backup", "policy", "list") == []


def test_policy_run_wait_backs_every_target_up_and_the_backup_commands_see_it(
    osc: OscRunner, cli: CliRunner, web: str
) -> None:
    policy = create_policy(osc)
    (run,) = osc_json(osc, "backup", "policy", "run", "nightly", "--wait")
    assert set(run) == RUN_KEYS
    assert (run["state"], run["target"], run["policy"]) == ("succeeded", web, "nightly")
    (backup,) = osc_json(osc, "backup", "list")
    assert set(backup) == BACKUP_KEYS
    assert (backup["policy_id"], backup["target"]) == (policy["id"], web)
    assert backup == ok_json(cli, "backup", "list")[0]
    protected = osc_json(osc, "backup", "protect", backup["id"][:8])
    assert protected["protected"] is True
    assert protected["reasons"] == ["protected"]
    assert osc_json(osc, "backup", "unprotect", backup["id"])["protected"] is False
    (listed_run,) = osc_json(osc, "backup", "run", "list", "--policy", "nightly")
    assert listed_run["id"] == run["id"]
    shown = osc_json(osc, "backup", "run", "show", run["id"])
    assert shown == ok_json(cli, "run", "show", run["id"])
    assert shown["steps"]


def test_restore_as_new_and_dry_run(osc: OscRunner, web: str, fast_osc_restores: None) -> None:
    create_policy(osc)
    (run,) = osc_json(osc, "backup", "policy", "run", "nightly", "--wait")
    plan = osc_json(osc, "backup", "restore", run["backup_id"], "--as-new", "web-2", "--dry-run")
    assert plan["dry_run"] is True
    assert plan["name"] == "web-2"
    job = osc_json(osc, "backup", "restore", run["backup_id"], "--as-new", "web-2", "--wait")
    assert (job["state"], job["name"], job["mode"]) == ("succeeded", "web-2", "as-new")
    assert job["server_id"]


def test_status_exits_1_while_a_target_is_not_ok(
    osc: OscRunner, cli: CliRunner, web: str, tmp_path: Path
) -> None:
    create_policy(osc, "--server", "web-1")
    assert [row["verdict"] for row in osc_json(osc, "backup", "status")] == ["ok"]  # not due yet
    with sqlite3.connect(tmp_path / "osc.db") as db:  # created two days ago: a backup is late
        db.execute("UPDATE policies SET created_at = datetime('now', '-2 day')")
    result = osc("backup", "status", "-f", "json")
    assert result.code == 1  # a monitoring check
    rows = json_rows(result.out)
    assert [row["verdict"] for row in rows] == ["never"]
    assert rows == cli("status", "-f", "json").json()
    assert osc("backup", "status", "--policy", "nope").code == 1


def json_rows(text: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(text)
    return rows


def test_table_shows_the_usual_columns_and_json_every_key(osc: OscRunner, web: str) -> None:
    create_policy(osc)
    osc_json(osc, "backup", "policy", "run", "nightly", "--wait")
    table = osc("backup", "list", "-f", "value", "-c", "id", "-c", "status")
    assert table.code == 0, table.err
    assert table.out.split()[1] == "available"
    default = osc("backup", "list", "-f", "csv")
    assert default.out.splitlines()[0].replace('"', "").split(",") == [
        "id", "target", "target_name", "policy", "status", "created_at", "reasons",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("backup", "show", "nope00"), ("no backup",)),
        (("backup", "policy", "show", "nope"), ("no policy", "nope")),
        (("backup", "policy", "create", "p", "--cron", "61 * * * *", "--keep-last", "1"), ["cron"]),
        (("backup", "run", "delete", "abcdef"), ("run",)),
    ],
)
def test_a_stackback_error_is_one_line_and_a_failure(
    osc: OscRunner, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    result = osc(*args)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for word in words:
        assert word in lines[0].lower()


def test_policy_run_wait_exits_1_when_a_backup_fails(osc: OscRunner, sim: Sim, web: str) -> None:
    create_policy(osc)
    sim.cloud.kill_next_image(web)
    result = osc("backup", "policy", "run", "nightly", "--wait", "-f", "json")
    assert result.code == 1
    assert json_rows(result.out)[0]["state"] == "failed"
    assert "failed" in result.err


def test_verify_wait_records_the_verdict_and_a_failed_check_exits_1(
    osc: OscRunner, web: str, fast_osc_restores: None
) -> None:
    create_policy(osc)
    (run,) = osc_json(osc, "backup", "policy", "run", "nightly", "--wait")
    job = osc_json(
        osc, "backup", "verify", run["backup_id"], "--network", "isolated",
        "--console-contains", "LAST LINE", "--port", "22", "--wait",
    )  # fmt: skip
    assert (job["mode"], job["state"], job["verify_result"]) == ("verify", "succeeded", "passed")
    verified = osc_json(osc, "backup", "show", run["backup_id"])["verification"]
    assert (verified["result"], verified["restore_id"]) == ("passed", job["id"])
    failed = osc(
        "backup", "verify", run["backup_id"], "--console-contains", "login:", "--timeout", "1",
        "--wait", "-f", "json",
    )  # fmt: skip
    assert failed.code == 1
    assert json.loads(failed.out)["verify_result"] == "failed"
    (line,) = failed.err.strip().splitlines()
    assert line.startswith("verification ") and "failed" in line


def test_a_database_fault_and_a_bad_limit_are_one_line(
    osc: OscRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database\n")
    monkeypatch.setenv("STACKBACK_DB", f"sqlite:///{garbage}")
    broken = osc("backup", "list")
    assert broken.code == 1
    (line,) = broken.err.strip().splitlines()
    assert f"database sqlite:///{garbage}: file is not a database" in line
    bad = osc("backup", "run", "list", "--limit", "0")
    assert bad.code == 2 and "at least 1" in bad.err and "Traceback" not in bad.err


def test_backup_show_gives_the_chain_as_the_cli_does(
    osc: OscRunner, cli: CliRunner, tmp_path: Path
) -> None:
    ok_json(cli, "policy", "create", "vb", "--kind", "volume-backup", "--volume", "vol1",
            "--full-every", "3", "--cron", "0 1 * * *", "--keep-last", "1")  # fmt: skip
    store = SqlStore(create_db_engine(f"sqlite:///{tmp_path / 'osc.db'}"))
    try:
        policy = store.get_policy("vb")
        ids: list[str] = []
        for day in range(3):
            made = store.ensure_backup(
                Backup(
                    id=str(uuid.uuid4()),
                    target="vol1",
                    kind=BackupKind.VOLUME_BACKUP,
                    status=BackupStatus.AVAILABLE,
                    created_at=datetime(2026, 1, 1, 1, tzinfo=UTC) + timedelta(days=day),
                    policy_id=policy.id,
                    policy_name=policy.name,
                    parent_id=ids[-1] if ids else None,
                )
            )
            ids.append(made.id)
    finally:
        store.dispose()
    shown = osc_json(osc, "backup", "show", ids[1])
    assert (shown["chain"], shown["children"]) == ([ids[0]], [ids[2]])
    assert shown == ok_json(cli, "backup", "show", ids[1])
