"""``stackback run ...``: the recorded executions of policies."""

from __future__ import annotations

from typing import Any

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, emit_object, format_option, minute, short_id
from stackback.cli.policy import pass_app
from stackback.policy import RunState
from stackback.views import run_detail, run_summary


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
    """List runs, newest first (ids shortened in the table: any 6+ characters find a run)."""
    runs = app.runs.list_runs(
        policy=policy, target=target, state=RunState(state) if state else None, limit=limit
    )
    rows = [run_summary(r) for r in runs]
    if fmt == "table":
        for row in rows:
            row["id"] = short_id(row["id"])
            row["target"] = row["target_name"] or row["target"]  # a pending run: as named
            row["due"] = minute(row["due_at"])
    emit_list(
        rows,
        ["id", "policy", "target", "state", "due", "error"],
        fmt,
        whole=("id", "policy", "target", "state", "due"),
    )


@run_group.command("show")
@click.argument("run_id")
@format_option
@pass_app
def show(app: AppContext, /, run_id: str, fmt: str) -> None:
    """Show a run with its lease (who holds it, until when) and its steps."""
    _show_run(app.runs.get(run_id), fmt)


def _show_run(run: Any, fmt: str) -> None:
    data = run_detail(run)
    if fmt == "table":
        data["lease"] = (
            f"held by {data['lease_owner']} until "
            f"{data['lease_expires_at'].isoformat(timespec='seconds')}"
            if data["lease_owner"] and data["lease_expires_at"]
            else "not held"
        )
        data["steps"] = [
            f"{s['started_at']:%Y-%m-%d %H:%M:%S} {s['name']} #{s['attempt']} "
            f"{s['outcome']}: {s['detail']}"
            for s in data["steps"]
        ]
    emit_object(data, fmt)


@run_group.command("cancel")
@click.argument("run_id")
@format_option
@pass_app
def cancel(app: AppContext, /, run_id: str, fmt: str) -> None:
    """Cancel a pending or active run; its server and cloud images are left as they are."""
    _show_run(app.runs.cancel(run_id), fmt)


@run_group.command("delete")
@click.argument("run_ids", nargs=-1, required=True)
@format_option
@pass_app
def delete(app: AppContext, /, run_ids: tuple[str, ...], fmt: str) -> None:
    """Delete the records of finished runs (their backups are not touched)."""
    deleted = app.runs.delete(run_ids)
    emit_list([{"id": r.id, "deleted": True} for r in deleted], ["id", "deleted"], fmt)


COMMANDS = [run_group]
