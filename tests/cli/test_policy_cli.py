"""``stackback policy create | list | show | set | delete | enable | disable``."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from stackback.clock import SystemClock
from stackback.retention import RetentionPolicy
from stackback.services.factory import open_store
from stackback.services.policies import PolicyService, PolicySpec
from tests.cli.conftest import CliRunner, Result, assert_one_line_error, ok_json

AMS = ZoneInfo("Europe/Amsterdam")
CRON = "0 1 * * *"
POLICY_KEYS = {
    "id",
    "name",
    "kind",
    "full_every",
    "full_cron",
    "targets",
    "selector",
    "schedules",
    "timezone",
    "window_minutes",
    "retention",
    "retention_description",
    "enabled",
    "cloud",
    "label",
    "created_at",
    "updated_at",
    "consistency",
    "fallback",
    "max_pause_seconds",
    "verify",
    "last_verification",
    "orphans",
    "project",
}


def next_local_1am(after: datetime, zone: ZoneInfo) -> datetime:
    """The first 01:00 wall-clock time in ``zone`` strictly after ``after`` (01:00 always exists
    in Europe/Amsterdam: its DST changes happen at 02:00/03:00)."""
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), time(1, 0), tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(1, 0), tzinfo=zone)
    return candidate


@pytest.fixture
def dbcli(cli: CliRunner, db_url: str) -> CliRunner:
    """``cli`` against a migrated database on each backend (SQLite file and PostgreSQL)."""
    assert cli("--db", db_url, "db", "upgrade").code == 0

    def run(*args: str, stdin: str | None = None) -> Result:
        return cli("--db", db_url, *args, stdin=stdin)

    return run


def test_create_show_next_run_in_zone_and_utc(dbcli: CliRunner) -> None:
    created = ok_json(
        dbcli,
        "policy", "create", "nightly", "--server", "web1", "--server", "web2",
        "--cron", CRON, "--timezone", "Europe/Amsterdam", "--window", "30",
        "--keep-last", "3", "--keep-daily", "7", "--keep-weekly", "4",
        "--keep-monthly", "12", "--keep-yearly", "2", "--keep-hourly", "5",
        "--keep-within", "2d", "--keep-within-daily", "1m",
    )  # fmt: skip
    assert set(created) == POLICY_KEYS
    assert created["name"] == "nightly"
    assert created["targets"] == ["web1", "web2"]
    assert created["selector"] is None
    assert created["timezone"] == "Europe/Amsterdam"
    assert created["window_minutes"] == 30
    assert created["enabled"] is True
    assert created["retention"] == {
        "last": 3,
        "hourly": 5,
        "daily": 7,
        "weekly": 4,
        "monthly": 12,
        "yearly": 2,
        "within": "2d",
        "within_daily": "1m",
    }

    shown = ok_json(dbcli, "policy", "show", "nightly")
    assert shown["id"] == created["id"]
    (schedule,) = shown["schedules"]
    assert schedule["cron"] == CRON
    assert schedule["last_fired_at"] is None
    expected = next_local_1am(datetime.fromisoformat(shown["created_at"]), AMS)
    local = datetime.fromisoformat(schedule["next_run"])
    utc = datetime.fromisoformat(schedule["next_run_utc"])
    # Independent check: the wall-clock time and offset in Amsterdam, and the UTC figure.
    assert (local.hour, local.minute) == (1, 0)
    assert local.utcoffset() == expected.utcoffset()
    assert local == expected
    assert utc.utcoffset() == timedelta(0)
    assert utc == expected
    assert utc.hour == (0 if expected.utcoffset() == timedelta(hours=1) else 23)

    by_id = ok_json(dbcli, "policy", "show", created["id"])
    assert by_id["name"] == "nightly"


def test_show_table_has_next_run_local_and_utc(cli: CliRunner) -> None:
    ok_json(
        cli, "policy", "create", "p", "--server", "a", "--cron", CRON, "--timezone", "UTC",
        "--keep-last", "7",
    )  # fmt: skip
    shown = ok_json(cli, "policy", "show", "p")
    result = cli("policy", "show", "p")
    assert result.code == 0
    next_utc = datetime.fromisoformat(shown["schedules"][0]["next_run_utc"])
    assert f"{next_utc:%Y-%m-%dT%H:%M}" in result.out
    assert "UTC" in result.out


def test_selector_policy_and_list(dbcli: CliRunner) -> None:
    ok_json(
        dbcli,
        "policy",
        "create",
        "dbs",
        "--selector",
        "role=db",
        "--cron",
        "0 3 * * *",
        "--keep-all",
    )
    ok_json(
        dbcli,
        "policy",
        "create",
        "web",
        "--server",
        "web1",
        "--cron",
        "0 4 * * *",
        "--keep-last",
        "7",
    )
    rows = ok_json(dbcli, "policy", "list")
    assert [r["name"] for r in rows] == ["dbs", "web"]
    assert all(set(r) == POLICY_KEYS for r in rows)
    dbs = rows[0]
    assert dbs["selector"] == "role=db"
    assert dbs["targets"] == []
    assert [s["cron"] for s in dbs["schedules"]] == ["0 3 * * *"]
    assert dbs["retention"] == {}
    table = dbcli("policy", "list")
    assert table.code == 0
    assert "selector role=db" in table.out
    assert "0 3 * * *" in table.out


def test_policy_list_and_show_give_the_same_schedule_objects(dbcli: CliRunner) -> None:
    keep = ("--keep-last", "7")
    ok_json(dbcli, "policy", "create", "web", "--server", "web1", "--cron", "0 4 * * *", *keep)
    ok_json(dbcli, "policy", "create", "dbs", "--server", "db1", "--cron", "0 3 * * *", *keep)
    ok_json(dbcli, "policy", "set", "dbs", "--cron", "0 3 * * *", "--cron", "15 2 * * 0")
    for listed in ok_json(dbcli, "policy", "list"):
        shown = ok_json(dbcli, "policy", "show", listed["name"])
        assert listed["schedules"] == shown["schedules"]
        assert all(isinstance(s, dict) and "next_run_utc" in s for s in listed["schedules"])
        assert listed == shown


def test_several_crons_and_disabled(cli: CliRunner) -> None:
    created = ok_json(
        cli, "policy", "create", "p", "--server", "a", "--cron", "0 1 * * *",
        "--cron", "30 13 * * 1-5", "--disabled", "--keep-last", "7",
    )  # fmt: skip
    assert created["enabled"] is False
    assert [s["cron"] for s in created["schedules"]] == ["0 1 * * *", "30 13 * * 1-5"]
    assert all(s["next_run"] is None and s["next_run_utc"] is None for s in created["schedules"])

    enabled = ok_json(cli, "policy", "enable", "p")
    assert enabled["enabled"] is True
    assert all(s["next_run_utc"] is not None for s in enabled["schedules"])
    disabled = ok_json(cli, "policy", "disable", enabled["id"])
    assert disabled["enabled"] is False
    assert ok_json(cli, "policy", "show", "p")["enabled"] is False


def test_set_changes_only_what_is_given(dbcli: CliRunner) -> None:
    before = ok_json(
        dbcli, "policy", "create", "p", "--server", "a", "--server", "b", "--cron", CRON,
        "--keep-last", "3", "--keep-daily", "7", "--window", "20",
    )  # fmt: skip
    after = ok_json(dbcli, "policy", "set", "p", "--keep-weekly", "4", "--keep-last", "0")
    assert after["retention"] == {"daily": 7, "weekly": 4}  # --keep-last 0 drops the rule
    assert after["targets"] == ["a", "b"]
    assert after["window_minutes"] == 20
    assert after["schedules"][0]["cron"] == CRON
    assert after["id"] == before["id"]

    moved = ok_json(
        dbcli, "policy", "set", "p", "--selector", "tier=gold", "--cron", "15 2 * * *",
        "--timezone", "Asia/Tokyo", "--name", "gold",
    )  # fmt: skip
    assert moved["name"] == "gold"
    assert moved["selector"] == "tier=gold"
    assert moved["targets"] == []
    (schedule,) = moved["schedules"]
    assert schedule["cron"] == "15 2 * * *"
    local = datetime.fromisoformat(schedule["next_run"])
    assert (local.hour, local.minute) == (2, 15)
    assert local.utcoffset() == timedelta(hours=9)
    assert datetime.fromisoformat(schedule["next_run_utc"]) == local
    assert ok_json(dbcli, "policy", "show", "gold")["retention"] == {"daily": 7, "weekly": 4}

    back = ok_json(dbcli, "policy", "set", "gold", "--server", "c")
    assert (back["targets"], back["selector"]) == (["c"], None)
    assert dbcli("policy", "show", "p").code == 2  # renamed


def test_delete_by_name_and_id(dbcli: CliRunner) -> None:
    a = ok_json(dbcli, "policy", "create", "a", "--server", "x", "--cron", CRON, "--keep-last", "7")
    ok_json(dbcli, "policy", "create", "b", "--server", "x", "--cron", CRON, "--keep-last", "7")
    ok_json(dbcli, "policy", "create", "c", "--server", "x", "--cron", CRON, "--keep-last", "7")
    deleted = ok_json(dbcli, "policy", "delete", a["id"], "b")
    assert [(d["name"], d["deleted"]) for d in deleted] == [("a", True), ("b", True)]
    assert [p["name"] for p in ok_json(dbcli, "policy", "list")] == ["c"]


def test_delete_is_all_or_nothing(cli: CliRunner) -> None:
    ok_json(cli, "policy", "create", "a", "--server", "x", "--cron", CRON, "--keep-last", "7")
    result = cli("policy", "delete", "a", "nope")
    assert result.code == 2
    assert "nope" in result.err
    assert [p["name"] for p in ok_json(cli, "policy", "list")] == ["a"]


def test_delete_same_policy_named_twice_deletes_it_once(cli: CliRunner) -> None:
    # Regression: deleting "a a" (or name and id) deleted it, then failed with exit 2.
    a = ok_json(cli, "policy", "create", "a", "--server", "x", "--cron", CRON, "--keep-last", "7")
    deleted = ok_json(cli, "policy", "delete", "a", a["id"])
    assert [d["id"] for d in deleted] == [a["id"]]
    assert ok_json(cli, "policy", "list") == []


def test_duplicate_name_is_refused(cli: CliRunner) -> None:
    ok_json(cli, "policy", "create", "a", "--server", "x", "--cron", CRON, "--keep-last", "7")
    result = cli(
        "policy", "create", "a", "--server", "y", "--cron", "0 2 * * *", "--keep-last", "7"
    )
    assert result.code != 0
    assert "already exists" in result.err
    (only,) = ok_json(cli, "policy", "list")
    assert only["targets"] == ["x"]


CLOUDS_YAML = """clouds:
  mine:
    auth:
      auth_url: http://127.0.0.1:9/v3
      username: u
      password: p
      project_name: p
      user_domain_name: Default
      project_domain_name: Default
"""


def test_the_policy_remembers_a_cloud_that_clouds_yaml_defines(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(CLOUDS_YAML)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    bad = cli(
        "--os-cloud",
        "nope",
        "policy",
        "create",
        "a",
        "--server",
        "x",
        "--cron",
        "0 1 * * *",
        "--keep-last",
        "7",
    )
    assert bad.code == 2
    assert_one_line_error(bad.err, "'nope' is not defined in clouds.yaml")
    assert ok_json(cli, "policy", "list") == []
    created = ok_json(
        cli, "--os-cloud", "mine", "policy", "create", "a", "--server", "x", "--cron", "0 1 * * *",
        "--keep-last", "7", "--offline",
    )  # fmt: skip
    assert created["cloud"] == "mine"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--server", "s" * 256], ["--server", "256", "255"]),
        (["--server", "web1", "--label", "l" * 65], ["--label", "64"]),
        (["--selector", "k=" + "v" * 250], ["--selector", "255"]),
        (["--server", "web1", "--cron", "0 1 * * " + ",".join(["1"] * 130)], ["--cron", "255"]),
    ],
)
def test_values_longer_than_nova_or_the_database_hold_are_refused(
    cli: CliRunner, args: list[str], words: list[str]
) -> None:
    cron = [] if "--cron" in args else ["--cron", "0 1 * * *"]
    result = cli("policy", "create", "long", *args, *cron)
    assert result.code == 2
    assert_one_line_error(result.err, *words)
    assert ok_json(cli, "policy", "list") == []


def test_a_name_that_looks_like_a_policy_id_is_refused(cli: CliRunner) -> None:
    first = ok_json(
        cli,
        "policy",
        "create",
        "first",
        "--server",
        "web1",
        "--cron",
        "0 1 * * *",
        "--keep-last",
        "7",
    )
    result = cli(
        "policy",
        "create",
        str(first["id"]),
        "--server",
        "web2",
        "--cron",
        "0 1 * * *",
        "--keep-last",
        "7",
    )
    assert result.code == 2
    assert_one_line_error(result.err, "policy id")
    assert [p["name"] for p in ok_json(cli, "policy", "list")] == ["first"]


def test_a_policy_without_keep_rules_needs_keep_all(cli: CliRunner) -> None:
    bare = cli("policy", "create", "p", "--server", "a", "--cron", CRON)
    assert bare.code == 2
    assert_one_line_error(bare.err, "--keep-all")
    assert ok_json(cli, "policy", "list") == []
    both = cli("policy", "create", "p", "--server", "a", "--cron", CRON, "--keep-all",
               "--keep-last", "3")  # fmt: skip
    assert both.code == 2
    assert_one_line_error(both.err, "--keep-all", "--keep-*")
    kept = ok_json(cli, "policy", "create", "p", "--server", "a", "--cron", CRON, "--keep-all")
    assert kept["retention"] == {}
    dropped = cli("policy", "set", "p", "--keep-last", "3")
    assert dropped.code == 0
    emptied = cli("policy", "set", "p", "--keep-last", "0")
    assert emptied.code == 2
    assert_one_line_error(emptied.err, "--keep-all")
    assert ok_json(cli, "policy", "show", "p")["retention"] == {"last": 3}
    assert ok_json(cli, "policy", "set", "p", "--keep-all")["retention"] == {}
    assert ok_json(cli, "policy", "set", "p", "--cron", "0 2 * * *")["retention"] == {}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--keep-daily", "10001"], ["keep-daily", "10000"]),
        (["--keep-within", "101y"], ["keep-within", "100 years"]),
        (["--keep-within-daily", "40000d"], ["keep-within-daily", "100 years"]),
    ],
)
def test_keep_rules_beyond_what_anyone_means_are_refused(
    cli: CliRunner, args: list[str], words: list[str]
) -> None:
    result = cli("policy", "create", "p", "--server", "a", "--cron", CRON, *args)
    assert result.code == 2
    assert_one_line_error(result.err, *words)
    assert ok_json(cli, "policy", "list") == []


def test_a_window_longer_than_the_time_between_runs_is_refused(cli: CliRunner) -> None:
    hourly = ["--server", "a", "--cron", "0 * * * *", "--keep-last", "3"]
    result = cli("policy", "create", "p", *hourly, "--window", "61")
    assert result.code == 2
    assert_one_line_error(result.err, "--window 61", "60 minutes")
    assert ok_json(cli, "policy", "create", "p", *hourly, "--window", "60")["window_minutes"] == 60
    two = cli("policy", "set", "p", "--cron", "0 * * * *", "--cron", "30 * * * *")
    assert two.code == 2
    assert_one_line_error(two.err, "30 minutes")
    # A daily run in a zone with daylight saving time is 23 hours apart once a year.
    daily = ["--server", "a", "--cron", "0 1 * * *", "--timezone", "Europe/Amsterdam"]
    dst = cli("policy", "create", "q", *daily, "--keep-last", "3", "--window", "1440")
    assert dst.code == 2
    assert_one_line_error(dst.err, "1380 minutes")


def test_volume_policies_by_volume_or_volume_selector_with_chain_options(dbcli: CliRunner) -> None:
    snap = ok_json(
        dbcli,
        "policy", "create", "vol-snaps", "--kind", "volume-snapshot", "--volume", "data1",
        "--cron", CRON, "--keep-last", "3",
    )  # fmt: skip
    assert (snap["kind"], snap["targets"], snap["full_every"]) == (
        "volume-snapshot",
        ["data1"],
        None,
    )
    chained = ok_json(
        dbcli,
        "policy", "create", "vol-backups", "--kind", "volume-backup",
        "--volume-selector", "backup=nightly", "--full-every", "7", "--full-cron", "0 2 * * 0",
        "--cron", CRON, "--keep-last", "14",
    )  # fmt: skip
    assert chained["selector"] == "backup=nightly"
    assert (chained["full_every"], chained["full_cron"]) == (7, "0 2 * * 0")
    exported = dbcli("policy", "export")
    assert exported.code == 0, exported.err
    ok_json(dbcli, "policy", "delete", "vol-snaps", "vol-backups")
    ok_json(dbcli, "policy", "apply", "-", stdin=exported.out)
    for before in (snap, chained):  # a file round-trips volume policies whole
        after = ok_json(dbcli, "policy", "show", before["name"])
        same = ("kind", "targets", "selector", "full_every", "full_cron", "retention")
        assert {k: after[k] for k in same} == {k: before[k] for k in same}
    changed = ok_json(dbcli, "policy", "set", "vol-backups", "--full-every", "0", "--full-cron", "")
    assert (changed["full_every"], changed["full_cron"]) == (None, None)


def test_volume_options_are_refused_where_they_do_not_apply(dbcli: CliRunner) -> None:
    for args, wanted in (
        (("--volume", "v1"), "--kind volume-snapshot or volume-backup"),
        (("--kind", "volume-backup", "--server", "web1"), "give --volume"),
        (("--kind", "volume-snapshot", "--volume", "v1", "--full-every", "3"), "--full-every"),
        (("--kind", "volume-backup", "--volume", "v1", "--full-every", "-1"), "--full-every"),
        (("--kind", "volume-backup", "--volume", "v1", "--verify-cron", "0 5 * * 0"), "verify"),
    ):
        result = dbcli("policy", "create", "bad", *args, "--cron", CRON, "--keep-last", "1")
        assert result.code == 2, (result.out, result.err)
        assert wanted in result.err and "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1


def test_a_name_that_two_projects_use_asks_the_cli_for_the_id(
    dbcli: CliRunner, db_url: str
) -> None:
    """Policies made through the API in two projects; the CLI names none of them."""
    store = open_store(db_url)
    service = PolicyService(store, SystemClock())
    made = [
        service.create(
            PolicySpec(
                name="nightly",
                targets=("x",),
                schedules=(CRON,),
                retention=RetentionPolicy(last=7),
                project=project,
            ),
            offline=True,
        )
        for project in ("alpha", "beta")
    ]
    store.dispose()
    result = dbcli("policy", "show", "nightly")
    assert result.code == 2
    assert_one_line_error(result.err, "nightly", "give the policy's id", made[0].id, made[1].id)
    assert ok_json(dbcli, "policy", "show", made[1].id)["project"] == "beta"
    created = ok_json(
        dbcli, "policy", "create", "nightly", "--server", "y", "--cron", CRON, "--keep-last", "7"
    )
    assert created["project"] is None
    assert dbcli("policy", "show", "nightly").code == 2
