"""The snapshot step of a ``database-backup`` run: one Trove backup, full or incremental.

Trove backups carry no metadata: the markers (backup id, run id, policy) go in the
backup's description, and everything the create call will send (name,
description, parent) is decided and recorded (the backup record with its
``parent_id``, then a ``stamp`` step in the run's journal) before the call. A run
resumed after a crash looks for a Trove backup whose description names its run
before asking for another, so it never makes a second one.

Whether the backup is full or an increment, and of which parent, is
``stackback.chains.choose``'s decision (the rule Cinder volume backups follow too)
over the target's backups of the policy; stackback always names the parent itself
(without one Trove chains onto the instance's last completed backup, which may be a
user's).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from stackback.chains import ChainRule, choose
from stackback.databases import backup_name, description
from stackback.engine.failpoints import failpoint
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudNotFound, RunFailed
from stackback.policy import (
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    Policy,
    Run,
    server_label,
)
from stackback.ports import (
    MARKER_RUN,
    Clock,
    Cloud,
    DatabaseCloud,
    DatabaseInfo,
    Store,
)
from stackback.records import BackupFilter, StepNote

Note = Callable[[str, datetime, str, str], StepNote]
Markers = Callable[[Run, Backup], dict[str, str]]


def database_cloud(cloud: Cloud) -> DatabaseCloud:
    """The cloud as a Trove, or a run failure saying it has none."""
    if not isinstance(cloud, DatabaseCloud):
        raise RunFailed("this cloud has no database service (Trove): database backups need one")
    return cloud


class DatabaseBackups:
    """Takes (or, resumed, finds) a run's Trove backup."""

    def __init__(
        self,
        store: Store,
        cloud: Cloud,
        clock: Clock,
        settings: EngineSettings,
        note: Note,
        markers: Markers,
    ) -> None:
        self.store = store
        self.artifacts = cloud
        self.cloud = database_cloud(cloud)
        self.clock = clock
        self.settings = settings
        self.note = note
        self.markers = markers

    def instance(self, run: Run, key: str | None = None) -> DatabaseInfo:
        """The run's instance by ``key`` (the id its backups are kept under) or its target."""
        key = key or run.target
        try:
            return self.cloud.get_database(key)
        except CloudNotFound:
            self.store.record_source(run.server_id or key, now=self.clock.now(), exists=False)
            label = server_label(run.server_id or key, run.target_name or run.target)
            raise RunFailed(
                f"database instance {label} no longer exists; its existing backups are kept"
            ) from None

    def record(self, run: Run, policy: Policy | None, fence: tuple[str, int]) -> Backup:
        """The run's backup record, its parent decided (created once, before any cloud call)."""
        found = self.store.backup_for_run(run.id)
        if found is not None:
            return found
        instance = self.instance(run, run.server_id)
        now = self.clock.now()
        history = self.store.list_backups(
            BackupFilter(target=instance.id, policy_id=run.policy_id, limit=None)
        )
        choice = choose(ChainRule.of(policy), history, now)
        backup = self.store.ensure_backup(
            Backup.of_run(
                run,
                backup_id=str(uuid.uuid4()),
                target=instance.id,
                target_name=run.target_name,
                kind=BackupKind.DATABASE_BACKUP,
                created_at=now,
                project=policy.project if policy else None,
                parent_id=choice.parent.id if choice.parent else None,
            ),
            fence=fence,
            restore_source=instance.spec.to_dict(),
        )
        self.store.update_run(run.id, run.attempt, step=self.note("chain", now, "ok", choice.why))
        return backup

    def take(self, run: Run, backup: Backup, *, resumed: bool, fence: tuple[str, int]) -> str:
        """Find the run's Trove backup (resumed) or ask for it; what the step records."""
        if resumed or backup.artifacts:
            found = [
                info
                for info in self.artifacts.find_artifacts({MARKER_RUN: run.id})
                if info.ref.kind is ArtifactKind.DATABASE_BACKUP
            ]
            if found:
                for info in found:
                    if (info.ref.kind, info.ref.id) not in {
                        (a.kind, a.cloud_id) for a in backup.artifacts
                    }:
                        self.store.add_artifact(
                            backup.id,
                            info.ref.kind,
                            info.ref.id,
                            status=info.status,
                            now=self.clock.now(),
                            fence=fence,
                        )
                return "resumed: found " + ", ".join(i.ref.id for i in found)
        parent_cloud_id = self._parent_cloud_id(backup)
        name = backup_name(run.target_name or run.target, run.scheduled_for, backup.id)
        text = description(self.markers(run, backup), full=parent_cloud_id is None)
        now = self.clock.now()
        self.store.update_run(
            run.id,
            run.attempt,
            step=self.note(
                "stamp",
                now,
                "ok",
                f"trove backup {name!r}"
                + (f" on parent {parent_cloud_id}" if parent_cloud_id else " (full)"),
            ),
        )
        # Still ours? A worker whose lease was taken over must not start a second backup.
        self.store.renew_lease(run.id, run.attempt, now=now, until=now + self.settings.lease)
        ref = self.cloud.start_database_backup(
            backup.target, name=name, description=text, parent_id=parent_cloud_id
        )
        failpoint("after-create-database-backup")
        self.store.add_artifact(
            backup.id,
            ref.kind,
            ref.id,
            status=ArtifactStatus.PENDING,
            now=self.clock.now(),
            fence=fence,
        )
        kind = f"incremental on {parent_cloud_id}" if parent_cloud_id else "full"
        return f"trove backup {ref.id} requested ({kind})"

    def _parent_cloud_id(self, backup: Backup) -> str | None:
        """The Trove id of the parent the record names (its recorded artifact)."""
        if backup.parent_id is None:
            return None
        parent = self.store.get_backup(backup.parent_id)
        for artifact in parent.artifacts:
            if artifact.kind is ArtifactKind.DATABASE_BACKUP:
                return artifact.cloud_id
        raise RunFailed(f"parent backup {parent.id} has no Trove backup recorded")
