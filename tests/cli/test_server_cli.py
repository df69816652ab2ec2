"""``stackback server enable | disable | show``: the per-server shortcuts."""

from __future__ import annotations

from datetime import datetime

from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json


def test_enable_creates_a_daily_policy_keeping_n(cli: CliRunner) -> None:
    policy = ok_json(cli, "server", "enable", "web1", "--retention", "3")
    assert policy["name"] == "server-web1"
    assert policy["targets"] == ["web1"]
    assert [s["cron"] for s in policy["schedules"]] == ["0 1 * * *"]
    assert policy["timezone"] == "UTC"
    assert policy["retention"] == {"last": 3}
    assert policy["enabled"] is True
    (listed,) = ok_json(cli, "policy", "list")
    assert listed["id"] == policy["id"]


def test_enable_defaults_to_seven(cli: CliRunner) -> None:
    assert ok_json(cli, "server", "enable", "web1")["retention"] == {"last": 7}


def test_enabling_again_changes_the_retention_of_the_same_policy(cli: CliRunner) -> None:
    first = ok_json(cli, "server", "enable", "web1", "--retention", "3")
    again = ok_json(cli, "server", "enable", "web1", "--retention", "5")
    assert again["id"] == first["id"]
    assert again["retention"] == {"last": 5}
    assert len(ok_json(cli, "policy", "list")) == 1
    # enabling without --retention keeps it
    assert ok_json(cli, "server", "enable", "web1")["retention"] == {"last": 5}


def test_enable_with_cron_and_timezone(cli: CliRunner) -> None:
    ok_json(
        cli, "server", "enable", "db1", "--cron", "30 22 * * *", "--timezone", "America/New_York"
    )
    shown = ok_json(cli, "policy", "show", "server-db1")
    assert shown["timezone"] == "America/New_York"
    (schedule,) = shown["schedules"]
    local = datetime.fromisoformat(schedule["next_run"])
    assert (local.hour, local.minute) == (22, 30)
    assert datetime.fromisoformat(schedule["next_run_utc"]) == local


def test_disable_keeps_the_policy_and_enable_resumes(cli: CliRunner) -> None:
    ok_json(cli, "server", "enable", "web1", "--retention", "4")
    disabled = ok_json(cli, "server", "disable", "web1")
    assert disabled["enabled"] is False
    assert disabled["retention"] == {"last": 4}
    shown = ok_json(cli, "policy", "show", "server-web1")
    assert shown["enabled"] is False
    assert shown["schedules"][0]["next_run"] is None
    resumed = ok_json(cli, "server", "enable", "web1")
    assert resumed["enabled"] is True
    assert resumed["retention"] == {"last": 4}


def test_disable_unknown_server(cli: CliRunner) -> None:
    result = cli("server", "disable", "ghost")
    assert result.code == 2
    assert "ghost" in result.err
    assert ok_json(cli, "policy", "list") == []


def test_show_lists_covering_policies_and_their_retention(cli: CliRunner) -> None:
    ok_json(cli, "server", "enable", "web1", "--retention", "5")
    ok_json(
        cli, "policy", "create", "gfs", "--server", "web1", "--server", "web2",
        "--cron", "0 2 * * *", "--keep-daily", "7", "--keep-weekly", "4",
    )  # fmt: skip
    ok_json(
        cli,
        "policy",
        "create",
        "other",
        "--server",
        "web2",
        "--cron",
        "0 2 * * *",
        "--keep-last",
        "7",
    )
    ok_json(
        cli,
        "policy",
        "create",
        "dbs",
        "--selector",
        "role=db",
        "--cron",
        "0 3 * * *",
        "--keep-last",
        "7",
    )
    rows = ok_json(cli, "server", "show", "web1")
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"server-web1", "gfs", "dbs"}
    assert all(r["server"] == "web1" for r in rows)
    assert by_name["server-web1"]["covers"] == "explicitly"
    assert by_name["server-web1"]["retention"] == {"last": 5}
    assert by_name["gfs"]["retention"] == {"daily": 7, "weekly": 4}
    assert by_name["gfs"]["retention_description"] == "daily 7, weekly 4"
    assert "role=db" in by_name["dbs"]["covers"]

    table = cli("server", "show", "web1")
    assert table.code == 0
    assert "daily 7, weekly 4" in table.out
    assert "last 5" in table.out
    assert "other" not in table.out


def test_show_server_without_policies(cli: CliRunner) -> None:
    assert ok_json(cli, "server", "show", "lonely") == []


def test_bad_retention_changes_nothing(cli: CliRunner) -> None:
    ok_json(cli, "server", "enable", "web1", "--retention", "3")
    for bad in ("0", "-2", "x"):
        result = cli("server", "enable", "web1", "--retention", bad)
        assert result.code == 2, bad
        assert "retention" in result.err.lower()
    result = cli("server", "enable", "web1", "--retention", "9", "--timezone", "Nowhere/City")
    assert result.code == 2
    assert ok_json(cli, "policy", "show", "server-web1")["retention"] == {"last": 3}
    assert cli("server", "enable", "web2", "--cron", "61 * * * *").code == 2
    assert [p["name"] for p in ok_json(cli, "policy", "list")] == ["server-web1"]


def test_a_policy_that_only_shares_the_shortcut_name_is_left_alone(cli: CliRunner) -> None:
    other = ok_json(
        cli, "policy", "create", "server-db1", "--server", "web1", "--cron", "0 3 * * *",
        "--keep-last", "9",
    )  # fmt: skip
    for args in (["enable", "db1", "--retention", "3"], ["disable", "db1"]):
        result = cli("server", *args)
        assert result.code == 1, args
        assert_one_line_error(result.err, "server-db1", "web1")
    assert ok_json(cli, "policy", "show", "server-db1")["retention"] == other["retention"]
    assert ok_json(cli, "policy", "show", "server-db1")["enabled"] is True


def test_a_server_name_too_long_for_its_policy_name_says_so(cli: CliRunner) -> None:
    result = cli("server", "enable", "s" * 250)
    assert result.code == 2
    assert_one_line_error(result.err, "per-server policy name", "policy create")


def test_names_are_checked_in_the_cloud_when_given(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    cloud = ("--os-cloud", sim.spec)
    create = ("policy", "create", "p", "--cron", "0 1 * * *", "--keep-last", "3")
    typo = cli(*cloud, *create, "--server", "web1", "--server", "wbe1")
    assert typo.code == 2
    assert_one_line_error(typo.err, "no server 'wbe1'", "--offline")
    assert ok_json(cli, "policy", "list") == []
    assert ok_json(cli, *cloud, *create, "--server", "wbe1", "--offline")["targets"] == ["wbe1"]
    changed = cli(*cloud, "policy", "set", "p", "--server", "ghost")
    assert changed.code == 2
    assert_one_line_error(changed.err, "no server 'ghost'")
    enabled = cli(*cloud, "server", "enable", "ghost")
    assert enabled.code == 2
    assert_one_line_error(enabled.err, "no server 'ghost'")
    shortcut = ok_json(cli, *cloud, "server", "enable", "web1")
    assert shortcut["cloud"] == sim.spec  # the cloud it acted on, as policy create records


def test_show_says_whether_the_server_exists_and_what_really_covers_it(
    cli: CliRunner, sim: Sim
) -> None:
    web = sim.cloud.create_server("web1", metadata={"backup": "gold"})
    cloud = ("--os-cloud", sim.spec)
    keep = ("--cron", "0 1 * * *", "--keep-last", "3")
    ok_json(cli, *cloud, "policy", "create", "by-id", "--server", web.id, *keep)
    ok_json(cli, *cloud, "policy", "create", "gold", "--selector", "backup=gold", *keep)
    ok_json(cli, *cloud, "policy", "create", "silver", "--selector", "backup=silver", *keep)
    rows = ok_json(cli, *cloud, "server", "show", "web1")
    assert {r["name"] for r in rows} == {"by-id", "gold"}  # by id too; silver does not match
    assert {(r["server_exists"], r["server_id"]) for r in rows} == {(True, web.id)}
    table = cli(*cloud, "server", "show", "web1")
    assert f"exists: web1 [{web.id}]" in table.out
    gone = cli(*cloud, "server", "show", "ghost")
    assert gone.code == 0 and "not found" in gone.out
    unchecked = ok_json(cli, "server", "show", "web1")  # no cloud named: selectors may cover
    assert {r["name"] for r in unchecked} == {"gold", "silver"}
    assert {r["server_exists"] for r in unchecked} == {None}


def test_disable_says_what_it_did_and_who_still_backs_the_server_up(
    cli: CliRunner, sim: Sim
) -> None:
    sim.cloud.create_server("web1", metadata={"backup": "gold"})
    cloud = ("--os-cloud", sim.spec)
    ok_json(cli, *cloud, "server", "enable", "web1")
    ok_json(cli, *cloud, "policy", "create", "gold", "--selector", "backup=gold",
            "--cron", "0 2 * * *", "--keep-last", "3")  # fmt: skip
    done = ok_json(cli, *cloud, "server", "disable", "web1")
    assert done["enabled"] is False
    assert "disabled policy 'server-web1'" in done["done"]
    assert done["still_backed_up_by"] == ["gold"]
