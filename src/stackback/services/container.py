"""The services of one store, clouds and clock: what every face (CLI, API) builds on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stackback.ports import Clock, CloudResolver, Store
from stackback.services.backups import BackupService
from stackback.services.policies import PolicyService
from stackback.services.restores import RestoreService
from stackback.services.runs import RunService
from stackback.services.servers import ServerDirectory
from stackback.services.status import StatusService
from stackback.services.verify import VerifyService


@dataclass
class Services:
    """Each service over the same store, clouds and clock (built afresh on each use)."""

    store: Store
    clouds: CloudResolver
    clock: Clock
    release_credential: Callable[[str | None], object] | None = None
    """Gives up a deleted policy's stored credential (keystone mode); None: nothing to do."""

    @property
    def policies(self) -> PolicyService:
        return PolicyService(
            self.store,
            self.clock,
            ServerDirectory(self.clouds),
            release_credential=self.release_credential,
        )

    @property
    def status(self) -> StatusService:
        return StatusService(self.store, self.clock)

    @property
    def backups(self) -> BackupService:
        return BackupService(self.store, self.clouds, self.clock)

    @property
    def runs(self) -> RunService:
        return RunService(self.store, self.clouds, self.clock)

    @property
    def restores(self) -> RestoreService:
        return RestoreService(self.store, self.clouds, self.clock)

    @property
    def verify(self) -> VerifyService:
        return VerifyService(self.store, self.clouds, self.clock)
