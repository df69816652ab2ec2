"""What every command shares: settings, the store, the clock, the services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stackback.clock import SystemClock
from stackback.cloud import CloudProvider
from stackback.config import Settings, policy_credentials
from stackback.errors import InvalidInput
from stackback.ports import Clock, CredentialStore, Store
from stackback.services.backups import BackupService
from stackback.services.container import Services
from stackback.services.factory import open_store
from stackback.services.policies import PolicyService
from stackback.services.runs import RunService
from stackback.services.status import StatusService

if TYPE_CHECKING:
    from stackback.services.keystone import PolicyCredentials


@dataclass
class AppContext:
    """Built once per invocation; settings and the store load lazily (``--help`` needs none)."""

    load_settings: Callable[[], Settings]
    clock: Clock = field(default_factory=SystemClock)
    verbose: int = 0
    """How many -v were given (more log output)."""
    _settings: Settings | None = None
    _store: Store | None = None
    _clouds: CloudProvider | None = None
    _credentials: PolicyCredentials | None = None

    @property
    def settings(self) -> Settings:
        """Read on first use: a bad ``--db`` is reported by the command that needs it."""
        if self._settings is None:
            self._settings = self.load_settings()
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(
                self.settings.db_url, create_directory=not self.settings.db_given
            )
        return self._store

    @property
    def credential_store(self) -> CredentialStore:
        """The stored trusts and application credentials (read without Keystone)."""
        store = self.store
        if not isinstance(store, CredentialStore):
            raise InvalidInput("this store keeps no credentials", field="db")
        return store

    @property
    def credentials(self) -> PolicyCredentials | None:
        """Stored trusts and application credentials (``keystone`` mode only)."""
        if self._credentials is None and self.settings.keystone is not None:
            self._credentials = policy_credentials(self.settings, self.credential_store, self.clock)
        return self._credentials

    @property
    def clouds(self) -> CloudProvider:
        if self._clouds is None:
            credentials = self.credentials
            self._clouds = CloudProvider(
                self.settings.cloud,
                self.clock,
                self.settings.state_dir,
                credentials=credentials.clouds() if credentials is not None else None,
            )
        return self._clouds

    @property
    def services(self) -> Services:
        """The services over this invocation's store, clouds and clock."""
        credentials = self.credentials
        return Services(
            self.store,
            self.clouds,
            self.clock,
            release_credential=credentials.release if credentials is not None else None,
            max_snapshots_per_host=self.settings.max_snapshots_per_host,
        )

    @property
    def policies(self) -> PolicyService:
        return self.services.policies

    @property
    def status(self) -> StatusService:
        return self.services.status

    @property
    def backups(self) -> BackupService:
        return self.services.backups

    @property
    def runs(self) -> RunService:
        return self.services.runs

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
