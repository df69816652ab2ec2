"""``stackback db ...``: schema migrations."""

from __future__ import annotations

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.services.factory import schema_status, upgrade_database


@click.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("upgrade")
@format_option
@pass_app
def upgrade_(app: AppContext, /, fmt: str) -> None:
    """Migrate the database to this version's schema (safe to run again)."""
    after, before = upgrade_database(app.settings.db_url)
    emit_object({"database": after.database, "from": before, "to": after.current}, fmt)


@db_group.command("status")
@format_option
@pass_app
def status(app: AppContext, /, fmt: str) -> None:
    """Show the schema revision of the database and the one this code needs.

    Exits 1 when they differ (the database needs `stackback db upgrade`).
    """
    found = schema_status(app.settings.db_url)
    current, head = found.current, found.required
    emit_object(
        {
            "database": found.database,
            "current": current,
            "required": head,
            "up_to_date": found.up_to_date,
        },
        fmt,
    )
    if current != head:
        click.echo(
            f"stackback: error: the database schema is at {current or 'no revision'}, this "
            f"stackback needs {head}: run `stackback db upgrade`",
            err=True,
        )
        click.get_current_context().exit(1)


COMMANDS = [db_group]
