"""``backup now --wait``, ``run cancel`` and ``run show``: one run waited for, failing fast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from stackback.cli.backups import progress_line
from stackback.cloud.simulator.config import SimConfig
from stackback.errors import CloudError, CloudRejected, CloudUnavailable, CloudUnreachable
from stackback.policy import Run, RunState, Step
from stackback.store.sql import SqlStore
from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json


def state_store(tmp_path: Path) -> SqlStore:
    """The store the CLI uses in these tests (the default SQLite file of the state dir)."""
    return SqlStore(create_engine(f"sqlite:///{tmp_path / 'state' / 'stackback.db'}"))


def slow_images(sim: Sim) -> None:
    sim.cloud.configure(SimConfig(image_snapshot_seconds=3600, image_base_seconds=3600))


def test_wait_drives_only_its_own_run(cli: CliRunner, sim: Sim) -> None:
    # Regression: --wait ran a whole worker, which claimed and took other due runs too.
    sim.cloud.create_server("web1")
    sim.cloud.create_server("web2")
    other = ok_json(cli, "backup", "now", "--offline", "web2")  # pending, for `serve` to take
    mine = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait")
    assert mine["state"] == "succeeded"
    assert ok_json(cli, "run", "show", other["id"])["state"] == "pending"
    assert [b["target_name"] for b in ok_json(cli, "backup", "list")] == ["web1"]


def test_a_first_try_shows_attempt_1(cli: CliRunner, sim: Sim) -> None:
    # Regression: a run that succeeded at its first try showed attempt 2 (its claims).
    sim.cloud.create_server("web1")
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait")
    assert run["attempt"] == 1
    assert ok_json(cli, "run", "show", run["id"])["attempt"] == 1
    assert ok_json(cli, "run", "list")[0]["attempt"] == 1


def test_a_wait_that_times_out_exits_1_and_the_run_goes_on(cli: CliRunner, sim: Sim) -> None:
    # Regression: a time-out exited 2, as if the command had been mistyped.
    sim.cloud.create_server("web1")
    slow_images(sim)
    result = cli(
        "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait", "--timeout", "0.5"
    )
    assert result.code == 1
    assert_one_line_error(result.err, "still", "goes on")
    assert result.out == ""
    (run,) = ok_json(cli, "run", "list")
    assert run["state"] == "waiting"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_timeout_must_be_a_positive_number(cli: CliRunner, sim: Sim, value: str) -> None:
    result = cli(
        "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait", "--timeout", value
    )
    assert result.code == 2
    assert_one_line_error(result.err, "timeout")


def test_timeout_needs_wait(cli: CliRunner, sim: Sim) -> None:
    result = cli("backup", "now", "--offline", "web1", "--timeout", "5")
    assert result.code == 2
    assert_one_line_error(result.err, "--timeout", "--wait")
    assert ok_json(cli, "run", "list") == []


def test_a_failure_is_one_line_and_no_table(cli: CliRunner, sim: Sim) -> None:
    # Regression: the failed run's table was printed too, above the error.
    result = cli("--os-cloud", sim.spec, "backup", "now", "--offline", "ghost", "--wait")
    assert result.code == 1
    assert result.out == ""
    assert_one_line_error(result.err, "ghost", "failed")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (CloudUnreachable, ("cloud-unreachable", "check the cloud's address")),
        (CloudRejected, ("cloud-rejected",)),  # e.g. authentication refused (401)
    ],
)
def test_an_unreachable_or_refusing_cloud_fails_an_on_demand_backup_at_once(
    cli: CliRunner, sim: Sim, error: type[CloudError], words: tuple[str, ...]
) -> None:
    # Regression: connection refused was retried for the whole retry window (30 minutes).
    sim.cloud.create_server("web1")
    sim.cloud.fail_next("get_server", error, count=1000)
    result = cli(
        "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait", "--timeout", "60"
    )
    assert result.code == 1
    assert_one_line_error(result.err, *words)
    (run,) = ok_json(cli, "run", "list")
    assert (run["state"], run["attempt"]) == ("failed", 1)


def test_a_transient_error_is_still_retried(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    sim.cloud.fail_next("get_server", CloudUnavailable, count=1000)
    result = cli(
        "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait", "--timeout", "0.5"
    )
    assert result.code == 1
    (run,) = ok_json(cli, "run", "list")
    assert (run["state"], run["attempt"]) == ("pending", 2)  # one retry recorded, and waiting
    assert run["next_try_at"] is not None


def test_progress_says_state_step_retries_and_next_try() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    run = Run(
        id="0123456789abcdef",
        policy_id=None,
        target="web1",
        scheduled_for=now,
        due_at=now,
        state=RunState.PENDING,
        not_before=datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC),
        steps=(
            Step("pending", now, now, "retry", "cloud-unavailable: 503"),
            Step("pending", now, now, "retry", "cloud-unavailable: 503"),
        ),
    )
    line = progress_line(run)
    assert line == (
        "waiting for run 01234567 of web1: pending, last step pending retry, 2 retries, "
        "next try 12:00:30 UTC"
    )


def test_ctrl_c_says_which_run_goes_on(
    cli: CliRunner, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: Ctrl-C exited 130 without a word; the run id was lost.
    def interrupted(*_args: object, **_kwargs: object) -> Run:
        raise KeyboardInterrupt

    monkeypatch.setattr("stackback.services.runs.RunService.wait", interrupted)
    result = cli("--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait")
    assert result.code == 130
    (run,) = ok_json(cli, "run", "list")
    assert_one_line_error(result.err, "interrupted", run["id"], "goes on")


def test_cancel_a_pending_run(cli: CliRunner, sim: Sim) -> None:
    pending = ok_json(cli, "backup", "now", "--offline", "web1")
    cancelled = ok_json(cli, "run", "cancel", pending["id"][:8])
    assert (cancelled["state"], cancelled["error"]) == ("cancelled", "cancelled by the operator")
    assert cancelled["steps"][-1]["name"] == "cancel"
    again = cli("run", "cancel", pending["id"])
    assert again.code == 1
    assert_one_line_error(again.err, "already ended")
    # nothing left for a worker
    assert cli("--os-cloud", sim.spec, "worker", "--once").code == 0
    assert ok_json(cli, "run", "show", pending["id"])["state"] == "cancelled"


def test_cancel_an_active_run_leaves_the_server_and_fences_its_worker(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    sim.cloud.create_server("web1")
    slow_images(sim)
    cli("--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait", "--timeout", "0.5")
    (run,) = ok_json(cli, "run", "list")
    assert run["state"] == "waiting"
    images = {i.id for i in sim.cloud.images()}
    store = state_store(tmp_path)
    try:
        soon = datetime.now(UTC) + timedelta(seconds=5)  # past its next poll (50 ms away)
        [held] = store.claim_runs(soon, "w-old", lease_seconds=300)
        table = cli("run", "show", run["id"])
        assert "held by w-old until" in table.out
        shown = ok_json(cli, "run", "show", run["id"])
        assert shown["lease_owner"] == "w-old" and shown["lease_expires_at"] is not None

        cancelled = ok_json(cli, "run", "cancel", run["id"])
        assert cancelled["state"] == "cancelled" and cancelled["lease_owner"] is None
        backup = ok_json(cli, "backup", "show", run["backup_id"])
        assert backup["status"] == "failed"
        assert {i.id for i in sim.cloud.images()} == images  # the cloud is left as it was
        with pytest.raises(Exception, match="taken over"):
            store.update_run(held.id, held.attempt, state=RunState.ROTATING)
        assert ok_json(cli, "run", "show", run["id"])["state"] == "cancelled"
    finally:
        store.dispose()


def test_a_too_short_id_prefix_says_the_minimum(cli: CliRunner) -> None:
    result = cli("run", "show", "abc")
    assert result.code == 2
    assert_one_line_error(result.err, "at least 6 characters")
    assert_one_line_error(cli("backup", "show", "0a1").err, "at least 6 characters")


# -- outputs that agree ------------------------------------------------------------------------


def test_lists_show_a_renamed_policy_by_its_new_name(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    # Regression: runs and backups kept showing the name the policy had when they were made.
    server = sim.cloud.create_server("web1")
    policy = ok_json(
        cli, "policy", "create", "nightly", "--server", "web1", "--cron", "0 1 * * *",
        "--keep-last", "7",
    )  # fmt: skip
    store = state_store(tmp_path)
    try:
        run = store.create_manual_run(
            target="web1", now=datetime.now(UTC), label=None, retention=None,
            policy=store.get_policy(policy["id"]),
        )  # fmt: skip
    finally:
        store.dispose()
    assert cli("--os-cloud", sim.spec, "worker", "--once").code == 0
    ok_json(cli, "policy", "set", "nightly", "--name", "nightly-eu")
    listed = ok_json(cli, "run", "list")
    assert [(r["id"], r["policy"]) for r in listed] == [(run.id, "nightly-eu")]
    assert ok_json(cli, "run", "show", run.id)["policy"] == "nightly-eu"
    assert "nightly-eu" in cli("run", "list").out
    backups = ok_json(cli, "backup", "list", "--server", server.id)
    assert backups
    for backup in backups:
        assert backup["policy"] == "nightly-eu"
        assert ok_json(cli, "backup", "show", backup["id"])["policy"] == "nightly-eu"


def test_a_protected_backup_says_protected_as_retention_preview_does(
    cli: CliRunner, sim: Sim
) -> None:
    # Regression: `backup list` gave a protected backup the reasons it had before (none).
    sim.cloud.create_server("web1")
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait")
    protected = ok_json(cli, "backup", "protect", run["backup_id"])
    assert protected["reasons"] == ["protected"]
    assert ok_json(cli, "backup", "list")[0]["reasons"] == ["protected"]
    assert ok_json(cli, "backup", "unprotect", run["backup_id"])["reasons"] == []


def test_run_list_shows_a_pending_runs_target_and_when_it_is_due(cli: CliRunner) -> None:
    # Regression: a pending run's target column was empty and the table had no due time.
    run = ok_json(cli, "backup", "now", "--offline", "web1")
    table = cli("run", "list")
    [line] = [line for line in table.out.splitlines() if run["id"][:8] in line]
    due = datetime.fromisoformat(run["due_at"])
    assert "web1" in line and f"{due:%Y-%m-%d %H:%M}" in line and "pending" in line


LONG_SERVER = "database-primary-eu-west-01"
LONG_POLICY = "nightly-database-servers"
LONG_ZONE = "America/Argentina/Buenos_Aires"


def test_tables_never_break_a_name_or_a_zone_at_80_columns(
    cli: CliRunner, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: every column folded, "Europe/Amsterdam" became "Europe/A" + "msterdam".
    sim.cloud.create_server(LONG_SERVER)
    sim.cloud.create_server("web1")
    ok_json(cli, "policy", "create", LONG_POLICY, "--server", LONG_SERVER,
            "--cron", "0 1 * * *", "--timezone", LONG_ZONE, "--keep-daily", "7")  # fmt: skip
    ok_json(cli, "policy", "create", "web", "--server", "web1", "--cron", "30 2 * * *",
            "--timezone", "Europe/Amsterdam", "--keep-last", "3")  # fmt: skip
    ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "--offline", LONG_SERVER, "--wait")
    ok_json(cli, "backup", "now", "--offline", "web1")
    monkeypatch.setenv("COLUMNS", "80")
    for args, names in [
        (("policy", "list"), (LONG_POLICY, LONG_SERVER, LONG_ZONE, "Europe/Amsterdam")),
        (("run", "list"), (LONG_SERVER, "web1")),
        (("backup", "list"), (LONG_SERVER,)),
        (("server", "show", LONG_SERVER), (LONG_POLICY, LONG_ZONE)),
        (("policy", "show", LONG_POLICY), (LONG_POLICY, LONG_SERVER, LONG_ZONE)),
    ]:
        result = cli(*args)
        assert result.code == 0, result.err
        assert max(len(line) for line in result.out.splitlines()) <= 80, result.out
        for name in names:
            assert name in result.out, (args, name, result.out)


def test_errors_name_a_server_by_its_name_with_its_id(cli: CliRunner, sim: Sim) -> None:
    # Regression: "the last good backup of 5f0c…" named the server by its id only.
    server = sim.cloud.create_server("web1")
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait")
    refused = cli("--os-cloud", sim.spec, "backup", "delete", run["backup_id"])
    assert refused.code == 1
    assert_one_line_error(refused.err, f"web1 [{server.id}]")
    sim.cloud.delete_server(server.id)
    gone = cli("--os-cloud", sim.spec, "backup", "now", "--offline", server.id, "--wait")
    assert gone.code == 1
    assert_one_line_error(gone.err, "no longer exists")


def test_artifacts_have_one_shape_in_show_protect_and_delete(cli: CliRunner, sim: Sim) -> None:
    # Regression: `backup delete` printed artifacts as key=value mappings, `backup show` as lines.
    sim.cloud.create_server("web1")
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "--offline", "web1", "--wait")
    backup_id = run["backup_id"]
    shown = ok_json(cli, "backup", "show", backup_id)
    assert ok_json(cli, "backup", "protect", backup_id)["artifacts"] == shown["artifacts"]
    shown_table = cli("backup", "show", backup_id).out
    deleted = cli("--os-cloud", sim.spec, "backup", "delete", backup_id, "--force")
    assert deleted.code == 0, deleted.err
    (image,) = shown["artifacts"]
    line = f"image {image['id']} "
    assert line in shown_table and line in deleted.out
    assert "kind=" not in deleted.out
    after = ok_json(cli, "backup", "show", backup_id)
    assert [set(a) for a in after["artifacts"]] == [set(image)]
