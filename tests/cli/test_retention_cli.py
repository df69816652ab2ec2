"""``stackback retention preview``: keep/forget with reasons, from stdin or a policy.

Expected results are the worked examples of the retention notes (restic `forget`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stackback.policy import Backup, BackupKind, BackupStatus
from stackback.store.database import create_db_engine
from stackback.store.sql import SqlStore
from tests.cli.conftest import CliRunner, assert_one_line_error, ok_json


def verdicts(rows: list[dict[str, object]]) -> dict[object, tuple[object, list[object]]]:
    return {r["time"]: (r["action"], r["reasons"]) for r in rows}  # type: ignore[misc]


def test_daily_worked_example(cli: CliRunner) -> None:
    times = [
        "2021-04-01T08:00:00Z",
        "2021-04-01T12:00:00Z",
        "2021-04-01T23:59:59Z",
        "2021-04-02T00:00:00Z",
        "2021-04-02T06:30:00Z",
        "2021-04-03T11:11:11Z",
    ]
    rows = ok_json(cli, "retention", "preview", "--keep-daily", "2", stdin="\n".join(times))
    assert [r["time"] for r in rows] == list(reversed(times))  # newest first
    assert set(rows[0]) == {"time", "instant", "action", "reasons"}
    assert verdicts(rows) == {
        "2021-04-03T11:11:11Z": ("keep", ["daily"]),
        "2021-04-02T06:30:00Z": ("keep", ["daily"]),
        "2021-04-02T00:00:00Z": ("forget", []),
        "2021-04-01T23:59:59Z": ("forget", []),
        "2021-04-01T12:00:00Z": ("forget", []),
        "2021-04-01T08:00:00Z": ("forget", []),
    }
    assert rows[0]["instant"] == "2021-04-03T11:11:11+00:00"


def test_weekly_uses_iso_weeks(cli: CliRunner) -> None:
    stdin = "2019-12-29T12:00:00Z\n2019-12-30T12:00:00Z\n2020-01-05T12:00:00Z\n"
    rows = ok_json(cli, "retention", "preview", "--keep-weekly", "2", stdin=stdin)
    assert verdicts(rows) == {
        "2020-01-05T12:00:00Z": ("keep", ["weekly"]),
        "2019-12-30T12:00:00Z": ("forget", []),
        "2019-12-29T12:00:00Z": ("keep", ["weekly"]),
    }


def test_within_months_threshold_is_exclusive(cli: CliRunner) -> None:
    # within 1m3d of 2021-03-31 06:00 -> threshold 2021-02-28 06:00, exclusive
    stdin = "\n".join(
        [
            "2021-03-31T06:00:00Z",
            "2021-02-28T06:00:01Z",
            "2021-02-28T06:00:00Z",
            "2021-02-27T23:00:00Z",
        ]
    )
    rows = ok_json(cli, "retention", "preview", "--keep-within", "1m3d", stdin=stdin)
    assert verdicts(rows) == {
        "2021-03-31T06:00:00Z": ("keep", ["within 1m3d"]),
        "2021-02-28T06:00:01Z": ("keep", ["within 1m3d"]),
        "2021-02-28T06:00:00Z": ("forget", []),
        "2021-02-27T23:00:00Z": ("forget", []),
    }


def test_rules_combine_with_reasons_in_order(cli: CliRunner) -> None:
    stdin = "2021-01-01T10:00:00Z\n2021-01-02T10:00:00Z\n2021-01-02T11:00:00Z\n"
    rows = ok_json(
        cli, "retention", "preview", "--keep-last", "1", "--keep-daily", "2", stdin=stdin
    )
    assert verdicts(rows) == {
        "2021-01-02T11:00:00Z": ("keep", ["last", "daily"]),
        "2021-01-02T10:00:00Z": ("forget", []),
        "2021-01-01T10:00:00Z": ("keep", ["daily"]),
    }


def test_timezone_moves_day_boundaries(cli: CliRunner) -> None:
    # Three backups on 2021-04-01 UTC; in Amsterdam (CEST, +02:00) 21:30Z is 23:30 on
    # 04-01 while 22:30Z and 23:30Z are 00:30 and 01:30 on 04-02.
    stdin = "2021-04-01T21:30:00Z\n2021-04-01T22:30:00Z\n2021-04-01T23:30:00Z\n"
    utc = ok_json(cli, "retention", "preview", "--keep-daily", "5", stdin=stdin)
    assert [r["action"] for r in utc] == ["keep", "forget", "forget"]
    ams = ok_json(
        cli, "retention", "preview", "--keep-daily", "5", "--timezone", "Europe/Amsterdam",
        stdin=stdin,
    )  # fmt: skip
    assert [r["action"] for r in ams] == ["keep", "forget", "keep"]


def test_instants_without_offset_are_read_in_the_zone(cli: CliRunner) -> None:
    stdin = "2021-04-01T23:30:00\n2021-04-02T00:30:00\n"
    rows = ok_json(
        cli, "retention", "preview", "--keep-last", "5", "--timezone", "Europe/Amsterdam",
        stdin=stdin,
    )  # fmt: skip
    assert [r["instant"] for r in rows] == [
        "2021-04-02T00:30:00+02:00",
        "2021-04-01T23:30:00+02:00",
    ]


def test_blank_lines_and_comments_are_skipped(cli: CliRunner) -> None:
    stdin = "# backups\n\n2021-01-01T00:00:00Z\n  \n2021-01-02T00:00:00Z\n"
    rows = ok_json(cli, "retention", "preview", "--keep-last", "1", stdin=stdin)
    assert [(r["time"], r["action"]) for r in rows] == [
        ("2021-01-02T00:00:00Z", "keep"),
        ("2021-01-01T00:00:00Z", "forget"),
    ]


def test_table_output(cli: CliRunner) -> None:
    result = cli(
        "retention", "preview", "--keep-daily", "1", stdin="2021-01-01T00:00:00Z\n2021-01-01T01:00Z"
    )
    assert result.code == 0, result.err
    assert "daily 1" in result.out
    assert "forget" in result.out and "keep" in result.out


def test_stdin_errors(cli: CliRunner) -> None:
    bad_line = cli("retention", "preview", "--keep-last", "1", stdin="2021-01-01T00:00Z\nnope\n")
    assert bad_line.code == 2
    assert "line 2" in bad_line.err and "nope" in bad_line.err
    no_rule = cli("retention", "preview", stdin="2021-01-01T00:00:00Z\n")
    assert no_rule.code == 2
    assert "--keep" in no_rule.err
    for args in (["--keep-daily", "-1"], ["--keep-daily", "1.5"], ["--keep-within", "1w"]):
        result = cli("retention", "preview", *args, stdin="2021-01-01T00:00:00Z\n")
        assert result.code == 2, args
        assert len(result.err.strip().splitlines()) == 1
    for edge, zone in (
        ("0001-01-01T00:30Z", "America/New_York"),
        ("9999-12-31T23:59Z", "Asia/Tokyo"),
    ):
        result = cli(
            "retention", "preview", "--keep-daily", "1", "--timezone", zone, stdin=f"{edge}\n"
        )
        assert result.code == 2, edge
        assert_one_line_error(result.err, "line 1", edge, "out of range")


def test_preview_of_a_policy_over_its_real_backups(cli: CliRunner, tmp_path: Path) -> None:
    policy = ok_json(
        cli, "policy", "create", "p", "--server", "web1", "--server", "web2",
        "--cron", "0 1 * * *", "--keep-last", "2",
    )  # fmt: skip
    # Backups of this policy, recorded as its runs would have left them.
    store = SqlStore(create_db_engine(f"sqlite:///{tmp_path / 'state' / 'stackback.db'}"))
    try:
        pol = store.get_policy("p")
        t0 = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
        ids: dict[tuple[str, int], str] = {}
        for target, count in (("web1", 4), ("web2", 1)):
            for day in range(count):
                backup = store.ensure_backup(
                    Backup(
                        id=str(uuid.uuid4()),
                        target=target,
                        kind=BackupKind.SERVER_IMAGE,
                        status=BackupStatus.AVAILABLE,
                        created_at=t0 + timedelta(days=day),
                        policy_id=pol.id,
                        policy_name=pol.name,
                    )
                )
                ids[target, day] = backup.id
        store.set_protected(ids["web1", 0], True)
    finally:
        store.dispose()

    rows = ok_json(cli, "retention", "preview", "p")
    assert set(rows[0]) == {"backup", "target", "created_at", "action", "reasons", "parent_id"}
    got = {r["backup"]: (r["target"], r["action"], r["reasons"]) for r in rows}
    assert got == {
        ids["web1", 3]: ("web1", "keep", ["last"]),
        ids["web1", 2]: ("web1", "keep", ["last"]),
        ids["web1", 1]: ("web1", "forget", []),
        ids["web1", 0]: ("web1", "keep", ["protected"]),
        ids["web2", 0]: ("web2", "keep", ["last"]),
    }
    # nothing was deleted
    listed = ok_json(cli, "backup", "list", "--policy", policy["id"])
    assert {b["id"] for b in listed} == set(ids.values())
    assert all(b["status"] == "available" for b in listed)

    mixed = cli("retention", "preview", "p", "--keep-last", "1")
    assert mixed.code == 2
    unknown = cli("retention", "preview", "nope")
    assert unknown.code == 2 and "nope" in unknown.err


def test_preview_of_a_policy_sees_all_its_backups_not_the_newest_thousand(
    cli: CliRunner, tmp_path: Path
) -> None:
    from sqlalchemy import insert

    from stackback.store.models import BackupRow

    ok_json(cli, "policy", "create", "p", "--server", "web1", "--cron", "0 1 * * *",
            "--keep-last", "2")  # fmt: skip
    store = SqlStore(create_db_engine(f"sqlite:///{tmp_path / 'state' / 'stackback.db'}"))
    try:
        policy = store.get_policy("p")
        t0 = datetime(2024, 1, 1, 1, 0, tzinfo=UTC)
        rows = [
            {
                "id": str(uuid.uuid4()),
                "policy_id": policy.id,
                "policy_name": policy.name,
                "target": "web1",
                "kind": BackupKind.SERVER_IMAGE.value,
                "status": BackupStatus.AVAILABLE.value,
                "protected": False,
                "reasons": [],
                "created_at": t0 + timedelta(hours=hour),
            }
            for hour in range(1200)
        ]
        with store.engine.begin() as connection:
            connection.execute(insert(BackupRow), rows)
    finally:
        store.dispose()

    preview = ok_json(cli, "retention", "preview", "p")
    assert len(preview) == 1200
    assert sum(r["action"] == "forget" for r in preview) == 1198
    assert len(ok_json(cli, "backup", "list", "--policy", "p")) == 1200


def test_preview_and_backup_show_chains(cli: CliRunner, tmp_path: Path) -> None:
    ok_json(
        cli, "policy", "create", "vb", "--kind", "volume-backup", "--volume", "vol1",
        "--full-every", "3", "--cron", "0 1 * * *", "--keep-last", "1",
    )  # fmt: skip
    store = SqlStore(create_db_engine(f"sqlite:///{tmp_path / 'state' / 'stackback.db'}"))
    try:
        pol = store.get_policy("vb")
        t0 = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
        ids: list[str] = []
        for day in range(4):  # full, inc, inc, then a new full
            backup = store.ensure_backup(
                Backup(
                    id=str(uuid.uuid4()),
                    target="vol1",
                    kind=BackupKind.VOLUME_BACKUP,
                    status=BackupStatus.AVAILABLE,
                    created_at=t0 + timedelta(days=day),
                    policy_id=pol.id,
                    policy_name=pol.name,
                    parent_id=ids[-1] if day in (1, 2) else None,
                )
            )
            ids.append(backup.id)
    finally:
        store.dispose()
    rows = ok_json(cli, "retention", "preview", "vb")
    got = {r["backup"]: (r["action"], r["parent_id"]) for r in rows}
    assert got == {
        ids[3]: ("keep", None),
        ids[2]: ("forget", ids[1]),
        ids[1]: ("forget", ids[0]),
        ids[0]: ("forget", None),
    }
    table = cli("retention", "preview", "vb")
    assert table.code == 0 and "parent" in table.out.lower() and "(full)" in table.out
    shown = ok_json(cli, "backup", "show", ids[2])
    assert (shown["parent_id"], shown["chain"], shown["children"]) == (ids[1], ids[:2], [])
    assert ok_json(cli, "backup", "show", ids[0])["children"] == [ids[1]]
    listed = cli("backup", "list")
    assert listed.code == 0 and "parent" in listed.out.lower()
