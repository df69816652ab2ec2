"""``stackback alert check | test | list``: the alerts file, a test alert, what was sent."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from stackback.cli import logs
from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, format_option
from stackback.cli.policy import pass_app
from stackback.errors import InvalidInput
from stackback.notify.config import AlertSettings, alerts_path, load_alerts
from stackback.services.alerts import AlertingStore, AlertService
from stackback.views import delivery_view

alerts_option = click.option(
    "--alerts",
    "alerts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STACKBACK_ALERTS",
    help="Alerts file (default: alerts.yaml in the state directory). Env: STACKBACK_ALERTS.",
)


def _load(app: AppContext, given: Path | None) -> tuple[Path, AlertSettings]:
    path = alerts_path(given, app.settings.state_dir)
    if path is None:
        where = app.settings.state_dir / "alerts.yaml"
        raise InvalidInput(f"no alerts file: give --alerts FILE or create {where}", field="alerts")
    settings = load_alerts(path)
    for secret in settings.secrets():
        logs.register_secret(secret)
    return path, settings


@click.group("alert")
def alert() -> None:
    """Alert channels (docs/alerts.md): check the file, send a test, list deliveries."""


@alert.command("check")
@alerts_option
@format_option
@pass_app
def check(app: AppContext, /, alerts_file: Path | None, fmt: str) -> None:
    """Read the alerts file and show its channels and what each receives."""
    path, settings = _load(app, alerts_file)
    rows = [
        {
            "channel": c.route.channel,
            "type": type(c).__name__.removesuffix("Channel").lower(),
            "policies": list(c.route.policies) or None,
            "events": [e.value for e in c.route.events] or None,
        }
        for c in settings.channels
    ]
    emit_list(rows, ["channel", "type", "policies", "events"], fmt, title=str(path))


@alert.command("test")
@alerts_option
@click.option("--channel", metavar="NAME", help="Only this channel.")
@format_option
@pass_app
def test(app: AppContext, /, alerts_file: Path | None, channel: str | None, fmt: str) -> None:
    """Send a test alert through every channel (exit 1 if one fails); it is recorded."""
    _path, settings = _load(app, alerts_file)
    service = AlertService(cast(AlertingStore, app.store), app.clock, settings.channels)
    deliveries = service.send_test(channel)
    columns = ["channel", "status", "attempts", "detail"]
    emit_list([delivery_view(d) for d in deliveries], columns, fmt, title="Test alert")
    if any(d.status.value != "delivered" for d in deliveries):
        click.get_current_context().exit(1)


@alert.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@format_option
@pass_app
def list_deliveries(app: AppContext, /, limit: int, fmt: str) -> None:
    """Alert deliveries, newest first, with their status."""
    store = cast(AlertingStore, app.store)
    rows = [delivery_view(d) for d in store.list_deliveries(limit=limit)]
    columns = ["at", "channel", "event", "target_name", "status", "attempts", "detail"]
    emit_list(rows, columns, fmt, title="Alert deliveries")


COMMANDS = [alert]
