"""``stackback run ...``: the recorded executions of policies."""

from __future__ import annotations

from typing import Any

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.errors import Conflict
from stackback.policy import Run, RunState, check_given
from stackback.store.sql import RunFilter


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "policy": run.policy_name,
        "policy_id": run.policy_id,
        "target": run.target,
        "target_name": run.target_name,
        "trigger": run.trigger,
        "label": run.label,
        "state": run.state.value,
        "scheduled_for": run.scheduled_for,
        "due_at": run.due_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "attempt": run.attempt,
        "backup_id": run.backup_id,
        "error": run.error,
        "error_id": run.error_id,
    }


def run_detail(run: Run) -> dict[str, Any]:
    data = run_summary(run)
    data["lease_owner"] = run.lease_owner
    data["lease_expires_at"] = run.lease_expires_at
    data["steps"] = [
        {
            "name": s.name,
            "attempt": s.attempt,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
            "outcome": s.outcome,
            "detail": s.detail,
        }
        for s in run.steps
    ]
    return data


@click.group("run")
def run_group() -> None:
    """Runs: every occurrence of a policy for one target, with its steps and errors."""


@run_group.command("list")
@click.option("--policy", metavar="P", help="Only runs of this policy (name or id).")
@click.option("--target", metavar="T", help="Only runs of this target (id or name).")
@click.option(
    "--state", type=click.Choice([s.value for s in RunState]), help="Only runs in this state."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
@format_option
@pass_app
def list_(
    app: AppContext,
    /,
    policy: str | None,
    target: str | None,
    state: str | None,
    limit: int,
    fmt: str,
) -> None:
    """List runs, newest first."""
    check_given(target, "--target")
    check_given(policy, "--policy")
    policy_id = app.store.get_policy(policy).id if policy else None
    runs = app.store.list_runs(
        RunFilter(
            policy_id=policy_id,
            target=target,
            state=RunState(state) if state else None,
            limit=limit,
        )
    )
    emit_list(
        [run_summary(r) for r in runs],
        ["id", "policy", "target_name", "state", "scheduled_for", "finished_at", "error"],
        fmt,
    )


@run_group.command("show")
@click.argument("run_id")
@format_option
@pass_app
def show(app: AppContext, /, run_id: str, fmt: str) -> None:
    """Show a run with its steps."""
    data = run_detail(app.store.get_run(run_id))
    if fmt == "table":
        data["steps"] = [
            f"{s['started_at']:%Y-%m-%d %H:%M:%S} {s['name']} #{s['attempt']} "
            f"{s['outcome']}: {s['detail']}"
            for s in data["steps"]
        ]
    emit_object(data, fmt)


@run_group.command("delete")
@click.argument("run_ids", nargs=-1, required=True)
@format_option
@pass_app
def delete(app: AppContext, /, run_ids: tuple[str, ...], fmt: str) -> None:
    """Delete the records of finished runs (their backups are not touched)."""
    runs = [app.store.get_run(r) for r in run_ids]
    busy = [r.id for r in runs if not r.state.is_terminal]
    if busy:
        raise Conflict(f"runs still in progress cannot be deleted: {', '.join(busy)}")
    deleted = [app.store.delete_run(r.id) for r in runs]
    emit_list([{"id": r.id, "deleted": True} for r in deleted], ["id", "deleted"], fmt)


COMMANDS = [run_group]
