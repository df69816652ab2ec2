"""``stackback server ...``: Rackspace-style per-server backup shortcuts."""

from __future__ import annotations

import click

from stackback.cli.context import AppContext
from stackback.cli.options import offline_option
from stackback.cli.output import emit_list, format_option
from stackback.cli.policy import cron_lines, pass_app, show_detail
from stackback.cloud import check_cloud_name
from stackback.services.servers import describe_server
from stackback.views import covering_policies


@click.group("server")
def server_group() -> None:
    """Per-server shortcuts: a daily policy keeping N backups of one server."""


@server_group.command("enable")
@click.argument("server")
@click.option("--retention", type=int, metavar="N", help="Backups to keep (default 7).")
@click.option("--cron", metavar="EXPR", help="Cron expression (default '0 1 * * *').")
@click.option("--timezone", metavar="TZ", help="IANA time zone (default UTC).")
@offline_option
@format_option
@pass_app
def enable(
    app: AppContext,
    /,
    server: str,
    retention: int | None,
    cron: str | None,
    timezone: str | None,
    offline: bool,
    fmt: str,
) -> None:
    """Back SERVER up daily; enabling again changes the retention."""
    if app.settings.cloud:
        check_cloud_name(app.settings.cloud)
    policy = app.policies.enable_server(
        server,
        retention=retention,
        cron=cron,
        timezone=timezone,
        cloud=app.settings.cloud,
        offline=offline,
    )
    show_detail(app.policies.view_of(policy), fmt)


@server_group.command("disable")
@click.argument("server")
@format_option
@pass_app
def disable(app: AppContext, /, server: str, fmt: str) -> None:
    """Stop backing SERVER up (its existing backups stay); say who still backs it up."""
    policy = app.policies.disable_server(server)
    covered = app.policies.server_coverage(server, policy.cloud or app.settings.cloud)
    still = [
        p.name for p in (*covered.explicit, *covered.by_selector) if p.enabled and p.id != policy.id
    ]
    done = {
        "done": f"disabled policy {policy.name!r}; the backups it made stay",
        "still_backed_up_by": still,
    }
    show_detail(app.policies.view_of(policy), fmt, done)


@server_group.command("show")
@click.argument("server")
@format_option
@pass_app
def show(app: AppContext, /, server: str, fmt: str) -> None:
    """Whether SERVER exists, and the policies that really cover it (from its metadata)."""
    covered = app.policies.server_coverage(server, app.settings.cloud)
    found = covered.server
    exists = (found is not None) if covered.checked else None
    rows = covering_policies(covered, app.policies.view_of)
    where = {"server_exists": exists, "server_id": found.id if found else None}
    if fmt == "json":  # "retention" stays the rules mapping, as in every other command
        emit_list([{"server": server, **where, **r} for r in rows], [], fmt)
        return
    for row in rows:
        row["retention"] = row["retention_description"]
        row["schedules"] = cron_lines(row)
    if exists is None:
        state = "not checked: no cloud selected (--os-cloud)"
    elif found is not None:
        state = f"exists: {describe_server(found)}"
    else:
        state = f"not found in cloud {app.settings.cloud!r}"
    emit_list(
        rows,
        ["name", "covers", "schedules", "timezone", "retention", "enabled"],
        fmt,
        title=f"Policies covering {server} ({state})",
        whole=("name", "schedules", "timezone", "enabled"),
    )


COMMANDS = [server_group]
