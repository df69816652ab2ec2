"""``stackback server ...``: Rackspace-style per-server backup shortcuts."""

from __future__ import annotations

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, format_option
from stackback.cli.policy import cron_lines, pass_app, show_detail
from stackback.views import policy_summary


@click.group("server")
def server_group() -> None:
    """Per-server shortcuts: a daily policy keeping N backups of one server."""


@server_group.command("enable")
@click.argument("server")
@click.option("--retention", type=int, metavar="N", help="Backups to keep (default 7).")
@click.option("--cron", metavar="EXPR", help="Cron expression (default '0 1 * * *').")
@click.option("--timezone", metavar="TZ", help="IANA time zone (default UTC).")
@format_option
@pass_app
def enable(
    app: AppContext,
    /,
    server: str,
    retention: int | None,
    cron: str | None,
    timezone: str | None,
    fmt: str,
) -> None:
    """Back SERVER up daily; enabling again changes the retention."""
    policy = app.policies.enable_server(server, retention=retention, cron=cron, timezone=timezone)
    show_detail(app.policies.view_of(policy), fmt)


@server_group.command("disable")
@click.argument("server")
@format_option
@pass_app
def disable(app: AppContext, /, server: str, fmt: str) -> None:
    """Stop backing SERVER up (its existing backups stay)."""
    policy = app.policies.disable_server(server)
    show_detail(app.policies.view_of(policy), fmt)


@server_group.command("show")
@click.argument("server")
@format_option
@pass_app
def show(app: AppContext, /, server: str, fmt: str) -> None:
    """The policies that cover SERVER and their retention."""
    explicit, by_selector = app.policies.policies_for_server(server)
    view = app.policies.view_of
    rows = [{**policy_summary(view(p)), "covers": "explicitly"} for p in explicit] + [
        {
            **policy_summary(view(p)),
            "covers": f"if its metadata has {p.selector} (resolved at run time)",
        }
        for p in by_selector
    ]
    if fmt == "json":  # "retention" stays the rules mapping, as in every other command
        emit_list([{"server": server, **r} for r in rows], [], fmt)
        return
    for row in rows:
        row["retention"] = row["retention_description"]
        row["schedules"] = cron_lines(row)
    emit_list(
        rows,
        ["name", "covers", "schedules", "timezone", "retention", "enabled"],
        fmt,
        title=f"Policies covering {server}",
        whole=("name", "schedules", "timezone", "enabled"),
    )


COMMANDS = [server_group]
