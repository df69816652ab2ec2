"""``stackback db ...``: schema migrations."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url

from stackback.cli.context import AppContext
from stackback.cli.output import emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.services.factory import sqlite_file_missing
from stackback.store.database import (
    create_db_engine,
    current_revision,
    head_revision,
    refuse_unknown_revision,
    upgrade,
)


@click.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("upgrade")
@format_option
@pass_app
def upgrade_(app: AppContext, /, fmt: str) -> None:
    """Migrate the database to this version's schema (safe to run again)."""
    engine = create_db_engine(app.settings.db_url)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    emit_object(
        {"database": engine.url.render_as_string(hide_password=True), "from": before, "to": after},
        fmt,
    )


@db_group.command("status")
@format_option
@pass_app
def status(app: AppContext, /, fmt: str) -> None:
    """Show the schema revision of the database and the one this code needs.

    Exits 1 when they differ (the database needs `stackback db upgrade`).
    """
    url = app.settings.db_url
    current = None
    # Only look: connecting would create an empty SQLite file (and its directory), which every
    # other command would then refuse as unmigrated instead of creating it at the schema.
    if not sqlite_file_missing(url):
        engine = create_db_engine(url)
        try:
            current = current_revision(engine)
            refuse_unknown_revision(engine, current)
        finally:
            engine.dispose()
    head = head_revision()
    emit_object(
        {
            "database": make_url(url).render_as_string(hide_password=True),
            "current": current,
            "required": head,
            "up_to_date": current == head,
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
