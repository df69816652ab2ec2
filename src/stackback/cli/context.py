"""What every command shares: settings, the store, the clock, the services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from stackback.clock import SystemClock
from stackback.cloud import CloudProvider
from stackback.config import Settings
from stackback.errors import InvalidInput
from stackback.ports import Clock
from stackback.services.backups import BackupService
from stackback.services.policies import PolicyService
from stackback.services.servers import ServerDirectory
from stackback.services.status import StatusService
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import SqlStore


def missing_sqlite_directory(db_url: str) -> Path | None:
    """The directory a SQLite database URL names, if it does not exist."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("uri"):  # sqlite3 reads the name as a file: URI
        return None
    directory = Path(str(url.database)).expanduser().parent
    return None if directory.exists() else directory


def sqlite_file_missing(db_url: str) -> bool:
    """True for a SQLite database file that does not exist yet (nothing has created it)."""
    url = make_url(db_url)
    return (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not Path(str(url.database)).expanduser().exists()
    )


@dataclass
class AppContext:
    """Built once per invocation; settings and the store load lazily (``--help`` needs none)."""

    load_settings: Callable[[], Settings]
    clock: Clock = field(default_factory=SystemClock)
    _settings: Settings | None = None
    _store: SqlStore | None = None
    _clouds: CloudProvider | None = None

    @property
    def settings(self) -> Settings:
        """Read on first use: a bad ``--db`` is reported by the command that needs it."""
        if self._settings is None:
            self._settings = self.load_settings()
        return self._settings

    @property
    def store(self) -> SqlStore:
        if self._store is None:
            missing = missing_sqlite_directory(self.settings.db_url)
            if missing is not None and self.settings.db_given:  # a typo must not start afresh
                raise InvalidInput(
                    f"--db: directory {missing} does not exist (create it, or run "
                    "`stackback db upgrade` to create the database there)",
                    field="db",
                )
            fresh = sqlite_file_missing(self.settings.db_url)
            engine = create_db_engine(self.settings.db_url)
            if fresh:  # a database that did not exist yet is created at the current schema
                upgrade(engine)
            self._store = SqlStore(engine)
        return self._store

    @property
    def clouds(self) -> CloudProvider:
        if self._clouds is None:
            self._clouds = CloudProvider(self.settings.cloud, self.clock, self.settings.state_dir)
        return self._clouds

    @property
    def policies(self) -> PolicyService:
        return PolicyService(self.store, self.clock, ServerDirectory(self.clouds))

    @property
    def status(self) -> StatusService:
        return StatusService(self.store, self.clock)

    @property
    def backups(self) -> BackupService:
        return BackupService(self.store, self.clouds, self.clock)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
