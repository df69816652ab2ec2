"""Database engines and schema migrations (SQLite by default, PostgreSQL for replicas)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stackback.errors import InvalidInput, NotMigrated, SchemaTooNew

MIGRATIONS = Path(__file__).with_name("migrations")


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``sqlite:///path`` URLs; use psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"invalid database URL {url!r}: {exc}", field="db") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql",
            field="db",
        )
    if parsed.get_driver_name() not in ("pysqlite", "psycopg"):
        # The tick counts inserted runs by an executemany's rowcount: psycopg 3 and sqlite3
        # sum it over the batch; other drivers (psycopg2's batch mode) do not.
        raise InvalidInput(
            f"unsupported database driver {parsed.get_driver_name()!r}: use postgresql:// "
            "(psycopg 3) or sqlite:///PATH",
            field="db",
        )
    return parsed.render_as_string(hide_password=False)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _make_parent(database: Path) -> None:
    """Create the directory of a SQLite file; a path that cannot hold one is the caller's fault."""
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        why = "a file is in the way" if isinstance(error, FileExistsError) else error.strerror
        raise InvalidInput(
            f"SQLite database {database}: cannot create its directory {database.parent} "
            f"({why or error})",
            field="db",
        ) from error


def create_db_engine(url: str) -> Engine:
    """An engine with stackback's connection settings.

    On SQLite: WAL, a busy timeout, foreign keys on, and every transaction
    opened with ``BEGIN IMMEDIATE`` so that concurrent writers (scheduler and
    workers in several processes) serialise instead of failing on upgrade.
    """
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            _make_parent(Path(database).expanduser())
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def refuse_unknown_revision(engine: Engine, current: str | None) -> None:
    """A revision this code has no migration for was written by a newer stackback."""
    if current is None or current in {script.revision for script in _scripts().walk_revisions()}:
        return
    where = engine.url.render_as_string(hide_password=True)
    raise SchemaTooNew(
        f"database {where} is at schema revision {current}, newer than (unknown to) this "
        f"stackback, which knows up to {head_revision()}: upgrade stackback"
    )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the schema; returns (revision before, revision after)."""
    before = current_revision(engine)
    refuse_unknown_revision(engine, before)
    _migrate(engine, lambda config: command.upgrade(config, revision))
    after = current_revision(engine)
    assert after is not None
    return before, after


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the schema down to ``revision`` (for operators rolling back a release)."""
    refuse_unknown_revision(engine, current_revision(engine))
    _migrate(engine, lambda config: command.downgrade(config, revision))


def _migrate(engine: Engine, step: Callable[[Config], None]) -> None:
    """Run one Alembic command in a transaction; on SQLite with foreign keys off meanwhile.

    A migration that rebuilds a SQLite table drops it, and with foreign keys
    on, SQLite deletes its rows first and cascades to the referencing tables.
    The keys are checked after the migration instead.
    """
    config = _alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        driver = connection.connection.driver_connection  # outside any transaction (autocommit)
        assert driver is not None
        if sqlite:
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                step(config)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                driver.execute("PRAGMA foreign_keys=ON")


def ensure_migrated(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at this code's head."""
    current, head = current_revision(engine), head_revision()
    refuse_unknown_revision(engine, current)
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no stackback schema" if current is None else f"is at revision {current}"
        raise NotMigrated(
            f"database {where} {state}, this stackback needs {head}: "
            "run `stackback db upgrade` first"
        )
