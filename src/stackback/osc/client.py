"""The ``backup`` client of the openstack client: stackback's services on its cloud.

The openstack client's own cloud (``--os-cloud`` and the other ``--os-*`` options) is
the cloud stackback acts as: policies record its name, and its authenticated
connection serves every call to it, as ``stackback --os-cloud NAME`` would. The
database is the standalone CLI's: ``STACKBACK_DB``, else the state directory's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openstack.connection import Connection

from stackback.clock import SystemClock
from stackback.cloud import CloudProvider, is_simulator
from stackback.cloud.openstack import OpenStackCloud
from stackback.config import Settings, load_settings, policy_credentials
from stackback.ports import Clock, Cloud, CredentialStore, Store
from stackback.services.backups import BackupService
from stackback.services.container import Services
from stackback.services.factory import open_store
from stackback.services.policies import PolicyService
from stackback.services.restores import RestoreService
from stackback.services.runs import RunService
from stackback.services.status import StatusService
from stackback.services.verify import VerifyService


class ClientClouds(CloudProvider):
    """The clouds a command reaches: the openstack client's own through its connection.

    A run or backup that names another clouds.yaml entry opens that entry, as the
    standalone CLI does.
    """

    def __init__(
        self,
        default: str | None,
        clock: Clock,
        state_dir: Path,
        connect: Callable[[], Connection] | None,
    ) -> None:
        super().__init__(default, clock, state_dir)
        self.connect = connect

    def _open(self, spec: str) -> Cloud:
        if self.connect is not None and spec == self.default and not is_simulator(spec):
            return OpenStackCloud(self.connect, cloud_name=spec)
        return super()._open(spec)


@dataclass
class StackbackClient:
    """Built once per ``openstack`` invocation; the store and clouds open on first use."""

    load_settings: Callable[[], Settings]
    connect: Callable[[], Connection] | None = None
    """The openstack client's authenticated connection (None: open clouds by name)."""
    clock: Clock = field(default_factory=SystemClock)
    _settings: Settings | None = None
    _store: Store | None = None
    _clouds: CloudProvider | None = None

    @classmethod
    def for_client_manager(cls, manager: Any) -> StackbackClient:
        """The client of an openstack ``ClientManager``: its cloud's name and connection."""
        name = getattr(manager._cli_options, "name", None) or None

        def connect() -> Connection:
            # The commands leave authentication to their first cloud call (most reach no
            # cloud): what the shell does for a command that needs it, done now.
            manager._auth_required = True
            manager.setup_auth()
            connection: Connection = manager.sdk_connection
            return connection

        return cls(lambda: load_settings(cloud=name), connect)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self.load_settings()
        return self._settings

    @property
    def cloud(self) -> str | None:
        """The cloud a new policy or backup records (the openstack client's)."""
        return self.settings.cloud

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(
                self.settings.db_url, create_directory=not self.settings.db_given
            )
        return self._store

    @property
    def clouds(self) -> CloudProvider:
        if self._clouds is None:
            self._clouds = ClientClouds(
                self.settings.cloud, self.clock, self.settings.state_dir, self.connect
            )
        return self._clouds

    @property
    def services(self) -> Services:
        """The services over this client's store, clouds and clock (as every face has them)."""
        return Services(
            self.store,
            self.clouds,
            self.clock,
            release_credential=self._release_credential(),
            max_snapshots_per_host=self.settings.max_snapshots_per_host,
        )

    def _release_credential(self) -> Callable[[str | None], object] | None:
        """keystone mode: deleting a policy or backup gives up the credential it leaves
        unneeded, as the standalone CLI does."""
        store = self.store
        if self.settings.keystone is None or not isinstance(store, CredentialStore):
            return None
        return policy_credentials(self.settings, store, self.clock).release

    @property
    def policies(self) -> PolicyService:
        return self.services.policies

    @property
    def backups(self) -> BackupService:
        return self.services.backups

    @property
    def runs(self) -> RunService:
        return self.services.runs

    @property
    def restores(self) -> RestoreService:
        return self.services.restores

    @property
    def verifications(self) -> VerifyService:
        return self.services.verify

    @property
    def status(self) -> StatusService:
        return self.services.status

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None
