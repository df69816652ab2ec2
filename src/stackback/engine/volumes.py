"""The snapshot step of volume policies: a Cinder snapshot, or a Cinder backup.

``volume-snapshot`` takes a forced Cinder snapshot (the volume may be in use);
``volume-backup`` asks the Cinder backup service for a full or an incremental backup,
as the policy's chain settings say (``stackback.chains.choose``, the rule Trove backups
follow too). Both are stamped
with the run's markers: a resumed run finds its own artifact by its run id instead of
asking for a second one. Cinder chooses an incremental's parent itself; once the backup
is available, :meth:`VolumeStep.record_parent` reads it back and records it as the
stackback backup it is (its cloud id when stackback does not know it: the chain is then
held by retention).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from stackback.chains import FULL, INCREMENTAL, ChainChoice, ChainRule, choose
from stackback.engine.failpoints import failpoint
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudRejected
from stackback.policy import (
    VOLUME_KINDS,
    ArtifactKind,
    Backup,
    BackupKind,
    Policy,
    Run,
)
from stackback.ports import (
    MARKER_RUN,
    ArtifactInfo,
    ArtifactRef,
    Clock,
    Cloud,
    Store,
    VolumeCloud,
    VolumeInfo,
)
from stackback.records import BackupFilter

__all__ = ["VOLUME_KINDS", "VolumeStep", "volume_cloud", "volume_detail"]


def volume_cloud(cloud: object) -> VolumeCloud:
    """The cloud's volume operations; a cloud without them refuses volume policies."""
    if not isinstance(cloud, VolumeCloud):
        raise CloudRejected(f"{type(cloud).__name__} cannot back up Cinder volumes")
    return cloud


def volume_detail(volume: VolumeInfo) -> str:
    return f"volume {volume.id} ({volume.name})"


class VolumeStep:
    """Takes (or finds again) the artifact of a volume policy's backup."""

    def __init__(
        self,
        store: Store,
        cloud: Cloud,
        clock: Clock,
        settings: EngineSettings,
        record: Callable[[ArtifactRef], None],
    ) -> None:
        self.store = store
        self.cloud = cloud
        self.clock = clock
        self.settings = settings
        self._record = record

    def take(
        self,
        run: Run,
        backup: Backup,
        policy: Policy | None,
        stamp: Mapping[str, str],
        name: str,
        *,
        resumed: bool,
        fence: tuple[str, int],
    ) -> str:
        if resumed or backup.artifacts:
            found = [
                info
                for info in self.cloud.find_artifacts({MARKER_RUN: run.id})
                if info.ref.kind in (ArtifactKind.VOLUME_SNAPSHOT, ArtifactKind.VOLUME_BACKUP)
            ]
            if found:
                for info in found:
                    self._record(info.ref)
                return "resumed: found " + ", ".join(i.ref.id for i in found)
        renewed_at = self.clock.now()  # still ours? a second artifact must not be started
        self.store.renew_lease(
            run.id, run.attempt, now=renewed_at, until=renewed_at + self.settings.lease
        )
        if backup.kind is BackupKind.VOLUME_SNAPSHOT:
            ref = self.cloud.snapshot_volume(backup.target, name, stamp)
            failpoint("after-create-volume-artifact")
            self._record(ref)
            return f"volume snapshot {ref.id} requested"
        choice = self._choose(backup, policy)
        full = choice.full
        self.store.update_backup(
            backup.id, consistency_detail=FULL if full else INCREMENTAL, fence=fence
        )
        ref = volume_cloud(self.cloud).start_volume_backup(
            backup.target, name, stamp, incremental=not full
        )
        failpoint("after-create-volume-artifact")
        self._record(ref)
        return f"{FULL if full else INCREMENTAL} volume backup {ref.id} requested ({choice.why})"

    def _choose(self, backup: Backup, policy: Policy | None) -> ChainChoice:
        history = [
            b
            for b in self.store.list_backups(
                BackupFilter(target=backup.target, policy_id=backup.policy_id, limit=None)
            )
            if b.id != backup.id and b.kind is BackupKind.VOLUME_BACKUP
        ]
        return choose(ChainRule.of(policy), history, self.clock.now())

    def record_parent(
        self, backup: Backup, infos: Mapping[ArtifactRef, ArtifactInfo], fence: tuple[str, int]
    ) -> str | None:
        """Record the parent Cinder chose for the backup's incremental backup (if it is one).

        Returns the recorded parent id (a stackback backup id, or Cinder's id of a parent
        stackback does not know), None for a full backup.
        """
        parents = [
            info.parent.id
            for ref, info in infos.items()
            if ref.kind is ArtifactKind.VOLUME_BACKUP
            and info.parent is not None
            and any(a.cloud_id == ref.id for a in backup.artifacts)
        ]
        if not parents:
            return None
        cloud_parent = parents[0]
        known = self.store.list_backups(
            BackupFilter(target=backup.target, include_deleted=True, limit=None)
        )
        parent = next(
            (
                b.id
                for b in known
                if b.id != backup.id and any(a.cloud_id == cloud_parent for a in b.artifacts)
            ),
            cloud_parent,
        )
        if backup.parent_id != parent:
            self.store.update_backup(backup.id, parent_id=parent, fence=fence)
        return parent
