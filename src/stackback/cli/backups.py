"""``stackback backup ...``: recovery points, protection, deletion, on-demand backups."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import click
from click.core import ParameterSource

from stackback.cli.context import AppContext
from stackback.cli.options import offline_option
from stackback.cli.output import (
    console,
    emit_list,
    emit_object,
    format_option,
    minute,
    short_id,
    verified,
)
from stackback.cli.policy import pass_app
from stackback.cloud.metadata import DEFAULT_METADATA_URL, identify
from stackback.errors import InvalidInput
from stackback.policy import Backup, Run, RunState
from stackback.views import backup_detail, backup_summary, run_summary


def _show_backup(
    backup: Backup, fmt: str, chain: tuple[list[str], list[str]] | None = None
) -> None:
    """One backup, its artifacts one per line (``show``, ``protect``, ``delete`` alike);
    ``show`` adds its chain (what it depends on, full first; what depends on it)."""
    data = backup_detail(backup, chain)
    if fmt == "table":
        if chain is not None:
            data["chain"] = " <- ".join([*data["chain"], "(this)"]) if data["chain"] else None
            data["children"] = ", ".join(data["children"]) or None
        data["artifacts"] = [
            f"{a['kind']} {a['id']} {a['status']}" + (f" ({a['error']})" if a["error"] else "")
            for a in data["artifacts"]
        ]
        data["verification"] = verified(data["verification"])
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
            row["verified"] = verified(row["verification"])
            if row["orphaned"]:
                seen = minute(row["source_last_seen_at"])
                row["status"] = f"{row['status']} (orphaned: server last seen {seen})"
            row["parent"] = short_id(row["parent_id"]) if row["parent_id"] else ""
    chained = any(row["parent_id"] for row in rows)
    emit_list(
        rows,
        [
            "id",
            "target",
            "policy",
            "status",
            "created",
            *(["parent"] if chained else []),
            "reasons",
            "verified",
        ],
        fmt,
        whole=("id", "target", "policy", "status", "created"),
    )


@backup_group.command("show")
@click.argument("backup")
@format_option
@pass_app
def show(app: AppContext, /, backup: str, fmt: str) -> None:
    """Show one backup, its artifacts and its chain (incremental backups)."""
    found = app.backups.get(backup)
    _show_backup(found, fmt, app.backups.chain(found))


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


INTERVAL_UNITS = {"d": 86400, "h": 3600, "min": 60, "s": 1}
INTERVAL_PART = re.compile(r"(\d{1,9})(d|h|min|s)")
LONGEST_INTERVAL = timedelta(days=366)


def parse_interval(text: str, option: str = "--min-interval") -> timedelta:
    """``1h``, ``90min``, ``1h30min``, ``2d``, ``45s`` or plain seconds, as a timedelta.

    ``m`` is refused: retention durations read it as months, so it says neither here."""
    raw = text.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 9:
        seconds = int(raw)
    else:
        parts = INTERVAL_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            hint = " ('m' is ambiguous: write 'min' for minutes)" if "m" in raw else ""
            raise InvalidInput(
                f"{option}: {text!r} is not a duration; use d, h, min, s (e.g. 1h30min) "
                f"or seconds{hint}",
                field=option,
            )
        seconds = sum(int(number) * INTERVAL_UNITS[unit] for number, unit in parts)
    interval = timedelta(seconds=seconds)
    if not timedelta(0) < interval <= LONGEST_INTERVAL:
        raise InvalidInput(
            f"{option} must be more than 0 and at most {LONGEST_INTERVAL.days} days, not {text!r}",
            field=option,
        )
    return interval


def _skipped(recent: Backup, server: str, interval: str, fmt: str) -> None:
    """Say that ``--min-interval`` found a good backup recent enough (exit 0)."""
    label = recent.target_name or server
    reason = (
        f"backup {recent.id} of {label} (type {recent.label}) was taken at "
        f"{minute(recent.created_at)}, less than {interval} ago"
    )
    if fmt == "json":
        emit_object({"skipped": True, "reason": reason, "backup": backup_summary(recent)}, fmt)
    else:
        click.echo(f"skipped: {reason}")


def _on_command_line(*names: str) -> bool:
    """Whether any of these options was typed (not taken from the environment)."""
    ctx = click.get_current_context()
    return any(ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE for n in names)


def _own_server(metadata_url: str | None, config_drive: str | None) -> str:
    """``--self``: this server's id, from the config drive or the metadata service."""
    if config_drive is not None and not config_drive.strip():
        raise InvalidInput("--config-drive must name a directory", field="config-drive")
    identity = identify(
        metadata_url=metadata_url,
        config_drive=Path(config_drive) if config_drive is not None else None,
    )
    return identity.server_id


@backup_group.command("now")
@click.argument("server", required=False)
@click.option(
    "--self",
    "self_",
    is_flag=True,
    help="Back up the server this runs on (its id from the config drive or metadata service).",
)
@click.option(
    "--metadata-url",
    metavar="URL",
    envvar="STACKBACK_METADATA_URL",
    help=f"With --self: where meta_data.json is (default {DEFAULT_METADATA_URL}). "
    "Env: STACKBACK_METADATA_URL.",
)
@click.option(
    "--config-drive",
    metavar="PATH",
    envvar="STACKBACK_CONFIG_DRIVE",
    help="With --self: read meta_data.json from the config drive mounted at PATH "
    "(default: a mounted config-2 filesystem, if any). Env: STACKBACK_CONFIG_DRIVE.",
)
@click.option(
    "--min-interval",
    metavar="DURATION",
    help="Skip (exit 0) if a good backup of this type is newer than DURATION (e.g. 1h, 90min).",
)
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
    server: str | None,
    self_: bool,
    metadata_url: str | None,
    config_drive: str | None,
    min_interval: str | None,
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
    With --self (instead of SERVER), the server this runs on: the apt hook in
    contrib/apt (docs/pre-upgrade-hook.md).
    """
    if timeout is not None and not wait:
        raise InvalidInput("--timeout applies only with --wait", field="timeout")
    if self_ and server is not None:
        raise InvalidInput("give SERVER or --self, not both", field="self")
    if not self_ and _on_command_line("metadata_url", "config_drive"):
        raise InvalidInput("--metadata-url and --config-drive apply only with --self")
    if not self_ and server is None:
        raise InvalidInput("missing SERVER (or --self for the server this runs on)")
    interval = parse_interval(min_interval) if min_interval is not None else None
    if self_:
        server = _own_server(metadata_url, config_drive)
    assert server is not None
    if interval is not None:
        recent = app.backups.recent_good_backup(server, label=label, within=interval)
        if recent is not None:
            _skipped(recent, server, str(min_interval), fmt)
            return
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
