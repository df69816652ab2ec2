"""Wiring for the faces: the store a database URL names, opened in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from stackback.errors import InvalidInput
from stackback.ports import Store
from stackback.store.database import (
    create_db_engine,
    current_revision,
    head_revision,
    refuse_unknown_revision,
    upgrade,
)
from stackback.store.sql import SqlStore


def sqlite_file_missing(db_url: str) -> bool:
    """True for a SQLite database file that does not exist yet (nothing has created it)."""
    url = make_url(db_url)
    return (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not Path(str(url.database)).expanduser().exists()
    )


def missing_sqlite_directory(db_url: str) -> Path | None:
    """The directory a SQLite database URL names, if it does not exist."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("uri"):  # sqlite3 reads the name as a file: URI
        return None
    directory = Path(str(url.database)).expanduser().parent
    return None if directory.exists() else directory


def open_store(db_url: str, *, create_directory: bool = True) -> Store:
    """The store at ``db_url``; a SQLite file that did not exist yet is created at the
    current schema (any other database must have been migrated: ``NotMigrated``).

    Without ``create_directory``, a SQLite file whose directory does not exist is refused
    (a mistyped ``--db`` must not start an empty catalogue).
    """
    missing = missing_sqlite_directory(db_url)
    if missing is not None and not create_directory:
        raise InvalidInput(
            f"--db: directory {missing} does not exist (create it, or run "
            "`stackback db upgrade` to create the database there)",
            field="db",
        )
    fresh = sqlite_file_missing(db_url)
    engine = create_db_engine(db_url)
    if fresh:
        upgrade(engine)
    return SqlStore(engine)


@dataclass(frozen=True)
class SchemaStatus:
    database: str
    """The URL, without its password."""
    current: str | None
    required: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.required


def upgrade_database(db_url: str) -> tuple[SchemaStatus, str | None]:
    """Migrate the database at ``db_url`` to this version's schema; (after, revision before)."""
    engine = create_db_engine(db_url)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    return SchemaStatus(where, after, head_revision()), before


def schema_status(db_url: str) -> SchemaStatus:
    """The schema revision of the database and the one this code needs; changes nothing.

    Connecting would create an empty SQLite file (and its directory), which every other
    command would then refuse as unmigrated: a missing file is reported as no revision.
    """
    current = None
    if not sqlite_file_missing(db_url):
        engine = create_db_engine(db_url)
        try:
            current = current_revision(engine)
            refuse_unknown_revision(engine, current)
        finally:
            engine.dispose()
    where = make_url(db_url).render_as_string(hide_password=True)
    return SchemaStatus(where, current, head_revision())
