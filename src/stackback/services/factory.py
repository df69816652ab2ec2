"""Wiring for the faces: the store a database URL names, opened in one place."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from stackback.ports import Store
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import SqlStore


def sqlite_file_missing(db_url: str) -> bool:
    """True for a SQLite database file that does not exist yet (nothing has created it)."""
    url = make_url(db_url)
    return (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not Path(str(url.database)).expanduser().exists()
    )


def open_store(db_url: str) -> Store:
    """The store at ``db_url``; a SQLite file that did not exist yet is created at the
    current schema (any other database must have been migrated: ``NotMigrated``)."""
    fresh = sqlite_file_missing(db_url)
    engine = create_db_engine(db_url)
    if fresh:
        upgrade(engine)
    return SqlStore(engine)
