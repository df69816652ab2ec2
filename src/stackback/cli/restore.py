"""``stackback restore BACKUP`` and ``restore list|show|cancel``: recorded restore jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.engine.restore import RestoreRunner
from stackback.engine.worker import worker_name
from stackback.restoreplan import RestoreJob, RestoreMode, RestoreOverrides, RestoreState
from stackback.services.restores import RestoreService
from stackback.views import plan_view, restore_view

WAIT_POLL = timedelta(seconds=5)
"""How often ``--wait`` looks at the cloud (tests make it faster)."""


class _RestoreGroup(click.Group):
    """``restore BACKUP ...`` starts a restore; ``restore list|show|cancel`` manage them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


def _service(app: AppContext) -> RestoreService:
    return RestoreService(app.store, app.clouds, app.clock)


def _runner(app: AppContext) -> RestoreRunner:
    return RestoreRunner(app.store, app.clouds, app.clock, owner=worker_name(), poll=WAIT_POLL)


def _fail_unless(job: RestoreJob, wanted: RestoreState) -> None:
    if job.state is not wanted:
        click.echo(
            f"stackback: error: restore {job.id} {job.state.value}: {job.error or 'no detail'}",
            err=True,
        )
        click.get_current_context().exit(1)


@click.group("restore", cls=_RestoreGroup, invoke_without_command=False)
def restore_group() -> None:
    """Restore a backup: `restore BACKUP [OPTIONS]` (options: `restore start --help`).

    A new server by default (or the server rebuilt in place); list, show and
    cancel restores.
    """


@restore_group.command("start")
@click.argument("backup")
@click.option("--as-new", "name", metavar="NAME", help="Name of the new server (the default mode).")
@click.option("--in-place", is_flag=True, help="Rebuild the (image-backed) server itself.")
@click.option(
    "--volumes",
    "with_volumes",
    is_flag=True,
    help="In place: also replace each data volume by one from the backup's snapshot "
    "(the old volume is detached and kept).",
)
@click.option("--flavor", metavar="F", help="Flavor instead of the recorded one.")
@click.option("--network", metavar="N", help="Network instead of the recorded ones.")
@click.option("--key-name", metavar="K", help="Key pair instead of the recorded one.")
@click.option(
    "--security-group", "security_groups", metavar="G", multiple=True, help="Instead of recorded."
)
@click.option("--availability-zone", metavar="Z", help="Zone instead of the recorded one.")
@click.option(
    "--volume-size",
    type=click.IntRange(min=1),
    metavar="GB",
    help="Database backups: the volume size instead of the recorded one.",
)
@click.option("--datastore", metavar="TYPE", help="Database backups: instead of the recorded.")
@click.option(
    "--datastore-version", metavar="V", help="Database backups: instead of the recorded one."
)
@click.option("--dry-run", is_flag=True, help="Print the plan; create nothing.")
@click.option("--wait", is_flag=True, help="Carry the restore out in this process and wait.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1, max=7 * 24 * 3600),
    default=3600.0,
    show_default=True,
    help="Seconds; past this the restore fails and removes what it made.",
)
@format_option
@pass_app
def start(
    app: AppContext,
    /,
    backup: str,
    name: str | None,
    in_place: bool,
    with_volumes: bool,
    flavor: str | None,
    network: str | None,
    key_name: str | None,
    security_groups: tuple[str, ...],
    availability_zone: str | None,
    volume_size: int | None,
    datastore: str | None,
    datastore_version: str | None,
    dry_run: bool,
    wait: bool,
    timeout: float,
    fmt: str,
) -> None:
    """Restore BACKUP: a new server from it (default), or the server rebuilt in place; a
    database backup: a new Trove instance."""
    if in_place and name is not None:
        raise click.UsageError("--in-place and --as-new exclude each other")
    mode = RestoreMode.IN_PLACE if in_place else RestoreMode.AS_NEW
    overrides = RestoreOverrides(
        name=name,
        flavor=flavor,
        network=network,
        key_name=key_name,
        security_groups=security_groups,
        availability_zone=availability_zone,
        volume_size=volume_size,
        datastore=datastore,
        datastore_version=datastore_version,
    )
    service = _service(app)
    if dry_run:
        planned = service.plan(backup, mode=mode, overrides=overrides, with_volumes=with_volumes)
        emit_object({"dry_run": True, **plan_view(planned.plan, planned.backup.id)}, fmt)
        return
    job = service.start(
        backup,
        mode=mode,
        overrides=overrides,
        timeout=timedelta(seconds=timeout),
        with_volumes=with_volumes,
    )
    if wait:
        job = _runner(app).drive(job.id)
    emit_object(_table_ready(restore_view(job), fmt), fmt)
    if wait:
        _fail_unless(job, RestoreState.SUCCEEDED)


@restore_group.command("list")
@click.option("--state", type=click.Choice([s.value for s in RestoreState]), help="Only these.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
@format_option
@pass_app
def list_(app: AppContext, /, state: str | None, limit: int, fmt: str) -> None:
    """List restore jobs, newest first."""
    jobs = _service(app).list(state=RestoreState(state) if state else None, limit=limit)
    rows = [restore_view(job) for job in jobs]
    emit_list(
        rows,
        ["id", "backup_id", "mode", "state", "name", "server_id", "created_at", "error"],
        fmt,
    )


@restore_group.command("show")
@click.argument("restore")
@format_option
@pass_app
def show(app: AppContext, /, restore: str, fmt: str) -> None:
    """Show one restore job: its plan, what it created, its steps."""
    emit_object(_table_ready(restore_view(_service(app).get(restore)), fmt), fmt)


@restore_group.command("cancel")
@click.argument("restore")
@click.option("--wait", is_flag=True, help="Carry the cleanup out in this process and wait.")
@format_option
@pass_app
def cancel(app: AppContext, /, restore: str, wait: bool, fmt: str) -> None:
    """Cancel a restore: it stops and removes whatever it created."""
    job = _service(app).cancel(restore)
    if wait:
        job = _runner(app).drive(job.id)
    emit_object(_table_ready(restore_view(job), fmt), fmt)
    if wait:
        _fail_unless(job, RestoreState.CANCELLED)


def _table_ready(data: dict[str, Any], fmt: str) -> dict[str, Any]:
    if fmt == "table":
        data.pop("plan", None)
        data["created"] = [f"{c['kind']} {c['id']}" for c in data["created"]]
        data["steps"] = [
            f"{s['name']} {s['outcome']}" + (f": {s['detail']}" if s["detail"] else "")
            for s in data["steps"]
        ]
    return data


COMMANDS = [restore_group]
