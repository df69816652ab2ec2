"""``stackback run list | show | delete`` and the engine commands' ``--once``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json


def clock_at(instant: datetime) -> list[str]:
    """Hidden testing options that make the engine's clock read ``instant`` now.

    ScaledClock: now = origin + (real now - origin) * scale; with scale 2 the
    origin ``2 * real now - instant`` gives ``instant`` (then runs twice as fast).
    """
    origin = 2 * time.time() - instant.timestamp()
    return ["--time-scale", "2", "--time-origin", repr(origin)]


@pytest.mark.parametrize("command", ["serve", "scheduler", "worker"])
def test_engine_commands_once(cli: CliRunner, sim: Sim, command: str) -> None:
    result = cli("--os-cloud", sim.spec, command, "--once")
    assert result.code == 0, result.err
    bad = cli("--os-cloud", sim.spec, command, "--once", "--poll-interval", "-1")
    assert bad.code == 2
    assert_one_line_error(bad.err, "--poll-interval")


def test_a_scaled_clock_without_an_origin_starts_from_now(cli: CliRunner, sim: Sim) -> None:
    """Not from 1970: at --time-scale 1000 that is past the year 9999, and a crash."""
    result = cli("--os-cloud", sim.spec, "worker", "--once", "--time-scale", "1000")
    assert result.code == 0, result.err


def test_scheduler_once_fires_a_due_policy_and_run_commands(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    policy = ok_json(
        cli,
        "policy",
        "create",
        "nightly",
        "--server",
        "web1",
        "--cron",
        "0 1 * * *",
        "--keep-last",
        "7",
    )
    fire = datetime.fromisoformat(policy["schedules"][0]["next_run_utc"])
    manual = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "web1", "--wait")

    tick = cli(
        "--os-cloud", sim.spec, "scheduler", "--once", *clock_at(fire + timedelta(minutes=1))
    )
    assert tick.code == 0, tick.err
    (scheduled,) = ok_json(cli, "run", "list", "--policy", "nightly")
    assert scheduled["policy_id"] == policy["id"]
    assert (scheduled["trigger"], scheduled["state"], scheduled["target"]) == (
        "schedule",
        "pending",
        "web1",
    )
    assert datetime.fromisoformat(scheduled["scheduled_for"]) == fire
    assert ok_json(cli, "policy", "show", "nightly")["schedules"][0]["last_fired_at"] is not None

    # filters
    all_runs = ok_json(cli, "run", "list")
    assert [r["id"] for r in all_runs] == [scheduled["id"], manual["id"]]  # newest first
    assert [r["id"] for r in ok_json(cli, "run", "list", "--policy", policy["id"])] == [
        scheduled["id"]
    ]
    assert [r["id"] for r in ok_json(cli, "run", "list", "--state", "pending")] == [scheduled["id"]]
    assert [r["id"] for r in ok_json(cli, "run", "list", "--state", "succeeded")] == [manual["id"]]
    assert len(ok_json(cli, "run", "list", "--target", "web1")) == 2
    assert ok_json(cli, "run", "list", "--target", "web2") == []
    assert len(ok_json(cli, "run", "list", "--limit", "1")) == 1

    # a run in progress cannot be deleted
    busy = cli("run", "delete", scheduled["id"])
    assert busy.code == 1  # a conflict, as the README says, not bad input
    assert_one_line_error(busy.err, scheduled["id"])
    assert ok_json(cli, "run", "show", scheduled["id"])["state"] == "pending"

    # deleting the policy cancels its pending run but keeps the record
    ok_json(cli, "policy", "delete", "nightly")
    cancelled = ok_json(cli, "run", "show", scheduled["id"])
    assert cancelled["state"] == "cancelled"
    deleted = ok_json(cli, "run", "delete", scheduled["id"])
    assert deleted == [{"id": scheduled["id"], "deleted": True}]
    assert [r["id"] for r in ok_json(cli, "run", "list")] == [manual["id"]]


def test_run_show_has_steps_and_delete_keeps_the_backup(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "web1", "--wait")
    shown = ok_json(cli, "run", "show", run["id"])
    assert {"lease_owner", "lease_expires_at", "steps"} <= set(shown)
    steps = [s["name"] for s in shown["steps"]]
    assert steps[:2] == ["start", "snapshot"]
    assert steps[-1] == "rotate"
    assert all(s["outcome"] == "ok" for s in shown["steps"])
    assert set(shown["steps"][0]) == {
        "name",
        "attempt",
        "started_at",
        "finished_at",
        "outcome",
        "detail",
    }
    table = cli("run", "show", run["id"])
    assert table.code == 0 and "snapshot" in table.out

    ok_json(cli, "run", "delete", run["id"])
    missing = cli("run", "show", run["id"])
    assert missing.code == 2
    backup = ok_json(cli, "backup", "show", run["backup_id"])
    assert backup["status"] == "available"


def test_run_delete_is_all_or_nothing(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    done = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "web1", "--wait")
    pending = ok_json(cli, "backup", "now", "web1")  # no --wait: stays pending
    assert pending["state"] == "pending"
    result = cli("run", "delete", done["id"], pending["id"])
    assert result.code == 1
    assert_one_line_error(result.err, pending["id"])
    assert {r["id"] for r in ok_json(cli, "run", "list")} == {done["id"], pending["id"]}
    unknown = cli("run", "delete", done["id"], "nope")
    assert unknown.code == 2
    assert len(ok_json(cli, "run", "list")) == 2


def test_demo_json(cli: CliRunner, tmp_path: Path) -> None:
    data = ok_json(cli, "demo", "--days", "3", "--dir", str(tmp_path / "demo"))
    assert {"simulated_days", "seconds", "database", "runs_by_state", "kept", "rotated"} <= set(
        data
    )
    assert data["simulated_days"] == 3
    assert data["runs_by_state"].get("succeeded", 0) > 0
    assert all(b["reasons"] for backups in data["kept"].values() for b in backups)


def test_demo_refuses_a_directory_it_did_not_make_and_keeps_what_is_there(
    cli: CliRunner, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "stackback.db").write_text("someone's real catalogue")
    (state / "photos.db.bak").write_text("keep")
    refused = cli("demo", "--days", "1", "--dir", str(state))
    assert refused.code == 2
    assert_one_line_error(refused.err, str(state), "not empty", "new or empty directory")
    assert (state / "stackback.db").read_text() == "someone's real catalogue"
    assert (state / "photos.db.bak").read_text() == "keep"

    again = tmp_path / "demo"
    ok_json(cli, "demo", "--days", "1", "--dir", str(again))
    (again / "notes.db").write_text("mine")
    assert ok_json(cli, "demo", "--days", "1", "--dir", str(again))["simulated_days"] == 1
    assert (again / "notes.db").read_text() == "mine"


def test_a_selector_the_cloud_cannot_list_is_asked_again(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1", metadata={"backup": "gold"})
    ok_json(
        cli,
        "policy",
        "create",
        "gold",
        "--selector",
        "backup=gold",
        "--cron",
        "0 1 * * *",
        "--keep-last",
        "7",
    )
    fire = datetime.fromisoformat(
        ok_json(cli, "policy", "show", "gold")["schedules"][0]["next_run_utc"]
    )
    sim.cloud.configure(sim.cloud.config().with_faults(error_rate=1.0))  # every call: 503

    tick = cli(
        "--os-cloud", sim.spec, "scheduler", "--once", *clock_at(fire + timedelta(minutes=1))
    )
    assert tick.code == 0, tick.err
    assert ok_json(cli, "run", "list", "--policy", "gold") == []
    [schedule] = ok_json(cli, "policy", "show", "gold")["schedules"]
    assert datetime.fromisoformat(schedule["deferred_occurrence"]) == fire
    assert datetime.fromisoformat(schedule["next_run_utc"]) == fire + timedelta(days=1)
    retry = datetime.fromisoformat(schedule["retry_at"])
    # asked again after 30 s plus the minute it has waited, less up to 10% jitter
    earliest = fire + timedelta(minutes=2, seconds=21)
    assert earliest <= retry < fire + timedelta(minutes=2, seconds=35)
    shown = cli("policy", "show", "gold")
    assert "waits for its targets" in shown.out and "asking again at" in shown.out

    sim.cloud.configure(sim.cloud.config().with_faults(error_rate=0.0))
    tick = cli("--os-cloud", sim.spec, "scheduler", "--once", *clock_at(retry))
    assert tick.code == 0, tick.err
    [run] = ok_json(cli, "run", "list", "--policy", "gold")
    assert (run["state"], run["target_name"]) == ("pending", "web1")
    assert datetime.fromisoformat(run["scheduled_for"]) == fire
    [schedule] = ok_json(cli, "policy", "show", "gold")["schedules"]
    assert schedule["deferred_occurrence"] is None and schedule["retry_at"] is None
    assert datetime.fromisoformat(schedule["next_run_utc"]) == fire + timedelta(days=1)
