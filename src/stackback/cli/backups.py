"""``stackback backup ...``: recovery points, protection, deletion, on-demand backups."""

from __future__ import annotations

import click

from stackback.cli.context import AppContext
from stackback.cli.options import offline_option
from stackback.cli.output import (
    console,
    emit_list,
    emit_object,
    format_option,
    minute,
    short_id,
)
from stackback.cli.policy import pass_app
from stackback.errors import InvalidInput
from stackback.policy import Backup, Run, RunState
from stackback.views import backup_detail, backup_summary, run_summary


def _show_backup(backup: Backup, fmt: str) -> None:
    """One backup, its artifacts one per line (``show``, ``protect``, ``delete`` alike)."""
    data = backup_detail(backup)
    if fmt == "table":
        data["artifacts"] = [
            f"{a['kind']} {a['id']} {a['status']}" + (f" ({a['error']})" if a["error"] else "")
            for a in data["artifacts"]
        ]
    emit_object(data, fmt)


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
    """List backups, newest first, with why retention keeps each (ids shortened in the table)."""
    rows = [
        backup_summary(b)
        for b in app.backups.list_backups(
            server=server, policy=policy, include_deleted=include_deleted, limit=limit
        )
    ]
    if fmt == "table":  # `backup show` has the artifacts; "protected" is among the reasons
        for row in rows:
            row["id"] = short_id(row["id"])
            row["target"] = row["target_name"] or row["target"]
            row["created"] = minute(row["created_at"])
            if row["orphaned"]:
                seen = minute(row["source_last_seen_at"])
                row["status"] = f"{row['status']} (orphaned: server last seen {seen})"
    emit_list(
        rows,
        ["id", "target", "policy", "status", "created", "reasons"],
        fmt,
        whole=("id", "target", "policy", "status", "created"),
    )


@backup_group.command("show")
@click.argument("backup")
@format_option
@pass_app
def show(app: AppContext, /, backup: str, fmt: str) -> None:
    """Show one backup and its artifacts."""
    _show_backup(app.backups.get(backup), fmt)


@backup_group.command("protect")
@click.argument("backup")
@format_option
@pass_app
def protect(app: AppContext, /, backup: str, fmt: str) -> None:
    """Protect a backup: retention never counts or deletes it."""
    _show_backup(app.backups.protect(backup, True), fmt)


@backup_group.command("unprotect")
@click.argument("backup")
@format_option
@pass_app
def unprotect(app: AppContext, /, backup: str, fmt: str) -> None:
    """Return a backup to its policy's retention."""
    _show_backup(app.backups.protect(backup, False), fmt)


@backup_group.command("delete")
@click.argument("backup")
@click.option(
    "--force", is_flag=True, help="Also delete a protected backup or a target's last good one."
)
@format_option
@pass_app
def delete(app: AppContext, /, backup: str, force: bool, fmt: str) -> None:
    """Delete a backup and its cloud artifacts."""
    _show_backup(app.backups.delete(backup, force=force), fmt)


WAIT_TIMEOUT_SECONDS = 3600.0
LONGEST_WAIT_SECONDS = 7 * 24 * 3600.0


def progress_line(run: Run) -> str:
    """What a wait is waiting for: the run's state, its last step, its retries and the next."""
    line = f"waiting for run {short_id(run.id)} of {run.target_name or run.target}: "
    line += run.state.value
    if run.steps:
        last = run.steps[-1]
        line += f", last step {last.name} {last.outcome}"
    retries = sum(1 for step in run.steps if step.outcome == "retry")
    if retries:
        line += f", {retries} {'retry' if retries == 1 else 'retries'}"
    if run.not_before is not None and not run.state.is_terminal:
        line += f", next try {run.not_before:%H:%M:%S} UTC"
    return line


@backup_group.command("now")
@click.argument("server")
@click.option("--type", "label", metavar="LABEL", help="Label of this backup (default manual).")
@click.option("--keep-last", type=int, metavar="N", help="Keep the last N backups of this label.")
@click.option("--wait", is_flag=True, help="Take the backup in this process and wait for it.")
@offline_option
@click.option(
    "--timeout",
    type=click.FloatRange(0, LONGEST_WAIT_SECONDS, min_open=True),
    metavar="S",
    help=f"With --wait: stop waiting after S seconds (default {WAIT_TIMEOUT_SECONDS:.0f}); "
    "exits 1, the run goes on.",
)
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
    timeout: float | None,
    fmt: str,
) -> None:
    """Back SERVER up now (e.g. before an upgrade); runs on the workers of `serve`.

    With --wait, this process takes the backup (that run only) and shows on
    stderr what it waits for; a failure is one line on stderr and exit 1.
    """
    if timeout is not None and not wait:
        raise InvalidInput("--timeout applies only with --wait", field="timeout")
    run = app.backups.backup_now(
        server, label=label, keep_last=keep_last, cloud=app.settings.cloud, offline=offline
    )
    if not wait:
        emit_object(run_summary(run), fmt)
        return
    ctx = click.get_current_context()
    try:
        with console(stderr=True).status(progress_line(run)) as status:
            run = app.runs.wait(
                run.id,
                timeout=WAIT_TIMEOUT_SECONDS if timeout is None else timeout,
                progress=lambda seen: status.update(progress_line(seen)),
            )
    except KeyboardInterrupt:
        click.echo(
            f"stackback: interrupted: run {run.id} goes on (a `stackback serve` worker finishes "
            f"it); `stackback run show {run.id}` follows it, `stackback run cancel {run.id}` "
            "stops it",
            err=True,
        )
        ctx.exit(130)
    if run.state is RunState.SUCCEEDED:
        emit_object(run_summary(run), fmt)
        return
    if fmt == "json":  # scripts read the run either way; people get the one line
        emit_object(run_summary(run), fmt)
    # `backup now --wait && upgrade` must not go ahead without a backup.
    click.echo(
        f"stackback: error: backup of {run.target_name or server} {run.state.value}: "
        f"{run.error or 'no detail'} (run {run.id})",
        err=True,
    )
    ctx.exit(1)  # a stackback failure, like EXIT_FAILURE


COMMANDS = [backup_group]
