"""``stackback backup ...``: recovery points, protection, deletion, on-demand backups."""

from __future__ import annotations

from typing import Any

import click

from stackback.cli.context import AppContext
from stackback.cli.options import offline_option
from stackback.cli.output import emit_list, emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.cli.runs import run_summary
from stackback.policy import Backup, RunState


def backup_summary(backup: Backup) -> dict[str, Any]:
    return {
        "id": backup.id,
        "target": backup.target,
        "target_name": backup.target_name,
        "policy": backup.policy_name,
        "policy_id": backup.policy_id,
        "label": backup.label,
        "kind": backup.kind.value,
        "status": backup.status.value,
        "protected": backup.protected,
        "created_at": backup.created_at,
        "completed_at": backup.completed_at,
        "deleted_at": backup.deleted_at,
        "reasons": list(backup.reasons),
        "run_id": backup.run_id,
        "error": backup.error,
        "deletion_run_id": backup.deletion_run_id,
        "deletion_guarded": backup.deletion_guarded,
        "artifacts": [
            {
                "kind": a.kind.value,
                "id": a.cloud_id,
                "status": a.status.value,
                "size": a.size,
                "error": a.error,
                "delete_attempts": a.delete_attempts,
            }
            for a in backup.artifacts
        ],
    }


@click.group("backup")
def backup_group() -> None:
    """Backups: recovery points and their cloud artifacts."""


@backup_group.command("list")
@click.option("--server", metavar="S", help="Only backups of this server (id or name).")
@click.option("--policy", metavar="P", help="Only backups made by this policy.")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted backups.")
@click.option(
    "--limit", type=click.IntRange(1, 1_000_000_000), default=None, help="At most N, the newest."
)
@format_option
@pass_app
def list_(
    app: AppContext,
    /,
    server: str | None,
    policy: str | None,
    include_deleted: bool,
    limit: int | None,
    fmt: str,
) -> None:
    """List backups, newest first, with why retention keeps each."""
    rows = [
        backup_summary(b)
        for b in app.backups.list_backups(
            server=server, policy=policy, include_deleted=include_deleted, limit=limit
        )
    ]
    if fmt == "table":
        for row in rows:
            row["artifacts"] = [f"{a['kind']} {a['id']}" for a in row["artifacts"]]
    emit_list(
        rows,
        [
            "id",
            "target_name",
            "policy",
            "status",
            "protected",
            "created_at",
            "reasons",
            "artifacts",
        ],
        fmt,
    )


@backup_group.command("show")
@click.argument("backup")
@format_option
@pass_app
def show(app: AppContext, /, backup: str, fmt: str) -> None:
    """Show one backup and its artifacts."""
    data = backup_summary(app.backups.get(backup))
    if fmt == "table":
        data["artifacts"] = [
            f"{a['kind']} {a['id']} {a['status']}" + (f" ({a['error']})" if a["error"] else "")
            for a in data["artifacts"]
        ]
    emit_object(data, fmt)


@backup_group.command("protect")
@click.argument("backup")
@format_option
@pass_app
def protect(app: AppContext, /, backup: str, fmt: str) -> None:
    """Protect a backup: retention never counts or deletes it."""
    emit_object(backup_summary(app.backups.protect(backup, True)), fmt)


@backup_group.command("unprotect")
@click.argument("backup")
@format_option
@pass_app
def unprotect(app: AppContext, /, backup: str, fmt: str) -> None:
    """Return a backup to its policy's retention."""
    emit_object(backup_summary(app.backups.protect(backup, False)), fmt)


@backup_group.command("delete")
@click.argument("backup")
@click.option(
    "--force", is_flag=True, help="Also delete a protected backup or a target's last good one."
)
@format_option
@pass_app
def delete(app: AppContext, /, backup: str, force: bool, fmt: str) -> None:
    """Delete a backup and its cloud artifacts."""
    emit_object(backup_summary(app.backups.delete(backup, force=force)), fmt)


@backup_group.command("now")
@click.argument("server")
@click.option("--type", "label", metavar="LABEL", help="Label of this backup (default manual).")
@click.option("--keep-last", type=int, metavar="N", help="Keep the last N backups of this label.")
@click.option("--wait", is_flag=True, help="Take the backup in this process and wait for it.")
@offline_option
@format_option
@pass_app
def now(
    app: AppContext,
    /,
    server: str,
    label: str | None,
    keep_last: int | None,
    wait: bool,
    offline: bool,
    fmt: str,
) -> None:
    """Back SERVER up now (e.g. before an upgrade); runs on the workers of `serve`."""
    run = app.backups.backup_now(
        server, label=label, keep_last=keep_last, cloud=app.settings.cloud, offline=offline
    )
    if wait:
        from stackback.cli.serve import wait_for_run

        run = wait_for_run(app, run.id)
    emit_object(run_summary(run), fmt)
    if wait and run.state is not RunState.SUCCEEDED:
        # `backup now --wait && upgrade` must not go ahead without a backup.
        click.echo(
            f"stackback: error: backup of {server} {run.state.value}: {run.error or 'no detail'}",
            err=True,
        )
        click.get_current_context().exit(1)  # a stackback failure, like EXIT_FAILURE


COMMANDS = [backup_group]
