"""The services of one store, clouds and clock: what every face (CLI, API) builds on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stackback.ports import Clock, CloudResolver, Store
from stackback.services.access import Principal
from stackback.services.backups import BackupService
from stackback.services.policies import PolicyService
from stackback.services.restores import RestoreService
from stackback.services.runs import RunService
from stackback.services.servers import ServerDirectory
from stackback.services.status import StatusService
from stackback.services.verify import VerifyService

NewCredential = Callable[[Principal, str | None, str | None], str]
"""Stores what a new policy of a principal acts through later (keystone mode: a trust, or
the application credential id and secret given) and returns the policy's ``cloud``."""


@dataclass
class Services:
    """Each service over the same store, clouds and clock (built afresh on each use)."""

    store: Store
    clouds: CloudResolver
    clock: Clock
    release_credential: Callable[[str | None], object] | None = None
    """Gives up a stored credential once nothing needs it, when a policy naming it or a
    backup made through it is deleted (keystone mode); None: nothing to do."""
    max_snapshots_per_host: int | None = None
    """The per-host snapshot limit a run taken in this process obeys (``serve``'s)."""
    new_credential: NewCredential | None = None
    """keystone mode: the credential a policy created through a face acts through."""

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
        return BackupService(
            self.store, self.clouds, self.clock, release_credential=self.release_credential
        )

    @property
    def runs(self) -> RunService:
        return RunService(
            self.store,
            self.clouds,
            self.clock,
            max_snapshots_per_host=self.max_snapshots_per_host,
            release_credential=self.release_credential,
        )

    @property
    def restores(self) -> RestoreService:
        return RestoreService(self.store, self.clouds, self.clock)

    @property
    def verify(self) -> VerifyService:
        return VerifyService(self.store, self.clouds, self.clock)
