"""Reconcile the catalogue with the cloud, using stackback's marker metadata.

After losing the database, every artifact stackback created still carries
its markers (backup id, target, policy, run): the catalogue can be rebuilt
from them. The reverse check finds records whose artifacts are gone.
Without ``apply`` nothing is written (a report only); nothing in the cloud is
ever deleted by a reconcile.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from stackback.errors import NotFound
from stackback.policy import ArtifactStatus, Backup, BackupKind, BackupStatus
from stackback.ports import (
    MARKER_BACKUP,
    MARKER_LABEL,
    MARKER_POLICY,
    MARKER_RUN,
    MARKER_TARGET,
    ArtifactInfo,
    ArtifactRef,
    Clock,
    Cloud,
    Store,
)
from stackback.records import BackupFilter


@dataclass
class ReconcileReport:
    """What a reconcile found (and, with ``apply``, did)."""

    applied: bool
    imported: list[str] = field(default_factory=list)
    adopted_artifacts: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    marked_gone: list[str] = field(default_factory=list)
    consistent: int = 0


def _status_of(infos: list[ArtifactInfo]) -> BackupStatus:
    statuses = {i.status for i in infos}
    if statuses <= {ArtifactStatus.AVAILABLE}:
        return BackupStatus.AVAILABLE
    if statuses & {ArtifactStatus.FAILED, ArtifactStatus.DELETED, ArtifactStatus.DELETING}:
        return BackupStatus.FAILED
    return BackupStatus.CREATING


class Reconciler:
    """Compares the marked artifacts of one cloud with the backups recorded for it."""

    def __init__(self, store: Store, cloud: Cloud, clock: Clock, *, cloud_name: str | None):
        self.store = store
        self.cloud = cloud
        self.clock = clock
        self.cloud_name = cloud_name

    def run(self, *, apply: bool) -> ReconcileReport:
        report = ReconcileReport(applied=apply)
        by_backup: dict[str, list[ArtifactInfo]] = defaultdict(list)
        for info in self.cloud.list_marked_artifacts():
            backup_id = info.metadata.get(MARKER_BACKUP)
            if backup_id:
                by_backup[backup_id].append(info)
        for backup_id, infos in sorted(by_backup.items()):
            try:
                recorded = self.store.get_backup(backup_id)
            except NotFound:
                report.unrecorded.append(backup_id)
                if apply:
                    self._import(backup_id, infos)
                    report.imported.append(backup_id)
                continue
            known = {(a.kind, a.cloud_id) for a in recorded.artifacts}
            extra = [i for i in infos if (i.ref.kind, i.ref.id) not in known]
            for info in extra:
                report.adopted_artifacts.append(info.ref.id)
                if apply:
                    self.store.add_artifact(
                        recorded.id,
                        info.ref.kind,
                        info.ref.id,
                        status=info.status,
                        now=self.clock.now(),
                        size=info.size,
                    )
            if not extra:
                report.consistent += 1
        self._find_missing(report, apply=apply)
        return report

    def _import(self, backup_id: str, infos: list[ArtifactInfo]) -> None:
        first = infos[0].metadata
        policy_id = first.get(MARKER_POLICY)
        policy_name = None
        if policy_id:
            try:
                policy_name = self.store.get_policy(policy_id).name
            except NotFound:
                policy_id = None
        created = min((i.created_at for i in infos if i.created_at), default=self.clock.now())
        status = _status_of(infos)
        backup = self.store.ensure_backup(
            Backup(
                id=backup_id,
                target=first.get(MARKER_TARGET, "unknown"),
                kind=BackupKind.SERVER_IMAGE,
                status=status,
                created_at=created,
                policy_id=policy_id,
                policy_name=policy_name,
                label=first.get(MARKER_LABEL),
                cloud=self.cloud_name,
                reasons=(f"imported by reconcile (run {first.get(MARKER_RUN, '?')})",),
            )
        )
        for info in infos:
            self.store.add_artifact(
                backup.id,
                info.ref.kind,
                info.ref.id,
                status=info.status,
                now=self.clock.now(),
                size=info.size,
            )
        if status is BackupStatus.AVAILABLE:
            self.store.update_backup(backup.id, completed_at=created)

    def _find_missing(self, report: ReconcileReport, *, apply: bool) -> None:
        live = [
            b
            for b in self.store.list_backups(
                BackupFilter(statuses=(BackupStatus.AVAILABLE,), limit=1_000_000)
            )
            if b.cloud == self.cloud_name
        ]
        refs = [
            ArtifactRef(a.kind, a.cloud_id)
            for b in live
            for a in b.artifacts
            if a.status is not ArtifactStatus.DELETED
        ]
        infos = self.cloud.artifact_statuses(refs) if refs else {}
        for backup in live:
            gone = [
                a
                for a in backup.artifacts
                if a.status is not ArtifactStatus.DELETED
                and infos.get(ArtifactRef(a.kind, a.cloud_id)) is not None
                and infos[ArtifactRef(a.kind, a.cloud_id)].status is ArtifactStatus.DELETED
            ]
            if not gone:
                continue
            report.missing.append(backup.id)
            if apply:
                now = self.clock.now()
                for artifact in gone:
                    self.store.update_artifact(
                        artifact.id,
                        status=ArtifactStatus.DELETED,
                        deleted_at=now,
                        error="gone from the cloud (found by reconcile)",
                    )
                self.store.update_backup(
                    backup.id,
                    status=BackupStatus.FAILED,
                    error="artifacts gone from the cloud: " + ", ".join(a.cloud_id for a in gone),
                )
                report.marked_gone.append(backup.id)
