"""The backups of a server that no longer exists: found, recorded, and kept or forgotten.

Off the run path, at most once per ``ORPHAN_SWEEP_INTERVAL`` per policy, the
sweeper asks each policy's cloud whether the servers its good backups belong to
still exist, and records the answer on those backups (``source_last_seen_at``;
``source_gone_at`` the first time one is found gone: the backup is *orphaned*).
A cloud error other than "not found" records nothing: a server is never taken
for gone because the cloud could not be asked. For an orphaned target it then
applies the policy's orphan rule (``stackback.safety.plan_orphans``) with the
target's backups locked (``Store.decide_for_target``): each deletion it asks for
is a recorded request the collector finishes, as a rotation's are. Under
``keep`` (the default) nothing is ever forgotten.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from stackback.engine.databases import database_cloud
from stackback.engine.settings import EngineSettings
from stackback.engine.volumes import VOLUME_KINDS, volume_cloud
from stackback.errors import CloudNotFound, StackbackError
from stackback.policy import BackupKind, BackupStatus, Policy
from stackback.ports import Clock, CloudResolver, Store
from stackback.records import BackupFilter
from stackback.safety import OrphanRequest, plan_orphans

log = logging.getLogger(__name__)

ORPHAN_SWEEP_INTERVAL = timedelta(hours=1)


class OrphanSweeper:
    """Finds the policies' orphaned targets and applies each policy's orphan rule."""

    def __init__(
        self,
        store: Store,
        clouds: CloudResolver,
        clock: Clock,
        settings: EngineSettings | None = None,
        interval: timedelta = ORPHAN_SWEEP_INTERVAL,
    ) -> None:
        self.store = store
        self.clouds = clouds
        self.clock = clock
        self.settings = settings or EngineSettings()
        self.interval = interval
        self._swept: dict[str, datetime] = {}

    def sweep_due(self) -> int:
        """Sweep every policy not swept for an interval; returns how many backups it forgot."""
        now = self.clock.now()
        forgotten = 0
        for policy in self.store.list_policies():
            last = self._swept.get(policy.id)
            if last is not None and now - last < self.interval:
                continue
            self._swept[policy.id] = now
            try:
                forgotten += self.sweep(policy)
            except StackbackError as error:
                log.warning(
                    "orphans of policy %s: %s (error id %s)", policy.name, error, error.error_id
                )
        return forgotten

    def sweep(self, policy: Policy) -> int:
        """Check the servers of ``policy``'s good backups; forget what its orphan rule says."""
        backups = self.store.list_backups(
            BackupFilter(policy_id=policy.id, statuses=(BackupStatus.AVAILABLE,), limit=None)
        )
        clouds = {b.target: b.cloud for b in backups}
        forgotten = 0
        for target, cloud in sorted(clouds.items()):
            now = self.clock.now()
            try:
                if policy.kind in VOLUME_KINDS:
                    volume_cloud(self.clouds(cloud)).get_volume(target)
                elif policy.kind is BackupKind.DATABASE_BACKUP:
                    database_cloud(self.clouds(cloud)).get_database(target)
                else:
                    self.clouds(cloud).get_server(target)
            except CloudNotFound:
                self.store.record_source(target, now=now, exists=False)
            except StackbackError as error:
                log.warning("cannot tell whether source %s exists: %s", target, error)
                continue
            else:
                self.store.record_source(target, now=now, exists=True)
                continue
            request = OrphanRequest(
                policy.orphans, policy.id, now, budget=self.settings.deletion_budget
            )
            plan = self.store.decide_for_target(target, partial(plan_orphans, request))
            for backup in plan.forget:
                log.info(
                    "backup %s of gone server %s forgotten (--orphans %s)",
                    backup.id,
                    target,
                    policy.orphans,
                )
            forgotten += len(plan.forget)
        return forgotten
