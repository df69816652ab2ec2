"""``backup now --wait``, ``run cancel`` and ``run show``: one run waited for, failing fast."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from stackback.cli.backups import progress_line
from stackback.cloud.simulator.config import SimConfig
from stackback.errors import CloudUnavailable, CloudUnreachable
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
    other = ok_json(cli, "backup", "now", "web2")  # pending, for `serve` to take
    mine = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "web1", "--wait")
    assert mine["state"] == "succeeded"
    assert ok_json(cli, "run", "show", other["id"])["state"] == "pending"
    assert [b["target_name"] for b in ok_json(cli, "backup", "list")] == ["web1"]


def test_a_first_try_shows_attempt_1(cli: CliRunner, sim: Sim) -> None:
    # Regression: a run that succeeded at its first try showed attempt 2 (its claims).
    sim.cloud.create_server("web1")
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "web1", "--wait")
    assert run["attempt"] == 1
    assert ok_json(cli, "run", "show", run["id"])["attempt"] == 1
    assert ok_json(cli, "run", "list")[0]["attempt"] == 1


def test_a_wait_that_times_out_exits_1_and_the_run_goes_on(cli: CliRunner, sim: Sim) -> None:
    # Regression: a time-out exited 2, as if the command had been mistyped.
    sim.cloud.create_server("web1")
    slow_images(sim)
    result = cli("--os-cloud", sim.spec, "backup", "now", "web1", "--wait", "--timeout", "0.5")
    assert result.code == 1
    assert_one_line_error(result.err, "still", "goes on")
    assert result.out == ""
    (run,) = ok_json(cli, "run", "list")
    assert run["state"] == "waiting"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_timeout_must_be_a_positive_number(cli: CliRunner, sim: Sim, value: str) -> None:
    result = cli("--os-cloud", sim.spec, "backup", "now", "web1", "--wait", "--timeout", value)
    assert result.code == 2
    assert_one_line_error(result.err, "timeout")


def test_timeout_needs_wait(cli: CliRunner, sim: Sim) -> None:
    result = cli("backup", "now", "web1", "--timeout", "5")
    assert result.code == 2
    assert_one_line_error(result.err, "--timeout", "--wait")
    assert ok_json(cli, "run", "list") == []


def test_a_failure_is_one_line_and_no_table(cli: CliRunner, sim: Sim) -> None:
    # Regression: the failed run's table was printed too, above the error.
    result = cli("--os-cloud", sim.spec, "backup", "now", "ghost", "--wait")
    assert result.code == 1
    assert result.out == ""
    assert_one_line_error(result.err, "ghost", "failed")


def test_an_unreachable_cloud_fails_an_on_demand_backup_at_once(cli: CliRunner, sim: Sim) -> None:
    # Regression: connection refused was retried for the whole retry window (30 minutes).
    sim.cloud.create_server("web1")
    sim.cloud.fail_next("get_server", CloudUnreachable, count=1000)
    result = cli("--os-cloud", sim.spec, "backup", "now", "web1", "--wait", "--timeout", "60")
    assert result.code == 1
    assert_one_line_error(result.err, "cloud-unreachable", "check the cloud's address")
    (run,) = ok_json(cli, "run", "list")
    assert (run["state"], run["attempt"]) == ("failed", 1)


def test_a_transient_error_is_still_retried(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    sim.cloud.fail_next("get_server", CloudUnavailable, count=1000)
    result = cli("--os-cloud", sim.spec, "backup", "now", "web1", "--wait", "--timeout", "0.5")
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
    result = cli("--os-cloud", sim.spec, "backup", "now", "web1", "--wait")
    assert result.code == 130
    (run,) = ok_json(cli, "run", "list")
    assert_one_line_error(result.err, "interrupted", run["id"], "goes on")


def test_cancel_a_pending_run(cli: CliRunner, sim: Sim) -> None:
    pending = ok_json(cli, "backup", "now", "web1")
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
    cli("--os-cloud", sim.spec, "backup", "now", "web1", "--wait", "--timeout", "0.5")
    (run,) = ok_json(cli, "run", "list")
    assert run["state"] == "waiting"
    images = {i.id for i in sim.cloud.images()}
    store = state_store(tmp_path)
    try:
        [held] = store.claim_runs(datetime.now(UTC), "w-old", lease_seconds=300)
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
