"""Reconcile the catalogue with the cloud, using stackback's marker metadata.

After losing the database, every artifact stackback created still carries
its markers (backup id, target, policy, run): the catalogue can be rebuilt
from them. The reverse check finds records whose artifacts are gone.
Without ``apply`` nothing is written (a report only); nothing in the cloud is
ever deleted by a reconcile.

Markers alone do not prove stackback made an image: Nova copies a server's
base-image properties into every snapshot of it, so a user's own snapshot of a
server booted from a stackback image carries that old backup's markers. An
artifact is adopted or imported only if its provenance checks out (see
:meth:`Reconciler._provenance_problem`); the others are reported as skipped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from stackback.errors import CloudError, NotFound
from stackback.policy import (
    VOLUME_KINDS,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
)
from stackback.ports import (
    MARKER_BACKUP,
    MARKER_IMAGE_ID,
    MARKER_LABEL,
    MARKER_POLICY,
    MARKER_RUN,
    MARKER_TARGET,
    MARKER_TARGET_NAME,
    NOVA_BASE_IMAGE_REF,
    NOVA_INSTANCE_UUID,
    ArtifactInfo,
    ArtifactRef,
    Clock,
    Cloud,
    Store,
)
from stackback.records import BackupFilter


@dataclass
class SkippedArtifact:
    """A marked artifact reconcile would not take as stackback's own, and why."""

    id: str
    backup: str
    reason: str


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
    skipped: list[SkippedArtifact] = field(default_factory=list)


def _status_of(infos: list[ArtifactInfo]) -> BackupStatus:
    statuses = {i.status for i in infos}
    if statuses <= {ArtifactStatus.AVAILABLE}:
        return BackupStatus.AVAILABLE
    if statuses & {ArtifactStatus.FAILED, ArtifactStatus.DELETED, ArtifactStatus.DELETING}:
        return BackupStatus.FAILED
    return BackupStatus.CREATING


@dataclass
class _Group:
    """The marked artifacts naming one backup id, and what they are checked against."""

    images: dict[str, ArtifactInfo]
    backup_id: str = ""
    infos: list[ArtifactInfo] = field(default_factory=list)
    run_id: str | None = None
    target: str = ""
    recorded_servers: set[str] = field(default_factory=set)
    known: set[tuple[ArtifactKind, str]] = field(default_factory=set)
    """The artifacts recorded for the backup (any status: deleted ones too)."""
    _marks: dict[tuple[ArtifactKind, str], str | None] = field(default_factory=dict)

    def reset(
        self,
        backup_id: str,
        infos: list[ArtifactInfo],
        recorded: Backup | None,
        known: set[tuple[ArtifactKind, str]],
    ) -> None:
        self.backup_id, self.infos, self.known = backup_id, infos, known
        self._marks = {(i.ref.kind, i.ref.id): i.metadata.get(MARKER_BACKUP) for i in infos}
        if recorded is not None:
            self.run_id, self.target = recorded.run_id, recorded.target
        else:
            images = [i for i in infos if i.ref.kind is ArtifactKind.IMAGE] or infos
            first = min(images, key=_age_key)
            self.run_id = first.metadata.get(MARKER_RUN)
            self.target = first.metadata.get(MARKER_TARGET, "")
        self.recorded_servers = {
            server
            for i in infos
            if (i.ref.kind, i.ref.id) in known and (server := i.metadata.get(NOVA_INSTANCE_UUID))
        }

    def marks(self, kind: ArtifactKind, artifact_id: str) -> str | None:
        """The backup marker of one listed artifact of this group (None: not marked so)."""
        return self._marks.get((kind, artifact_id))


def _age_key(info: ArtifactInfo) -> tuple[bool, float, str]:
    created = info.created_at
    return (created is None, created.timestamp() if created else 0.0, info.ref.id)


class Reconciler:
    """Compares the marked artifacts of one cloud with the backups recorded for it."""

    def __init__(self, store: Store, cloud: Cloud, clock: Clock, *, cloud_name: str | None):
        self._backup_of_artifact: dict[ArtifactRef, str | None] = {}
        self.store = store
        self.cloud = cloud
        self.clock = clock
        self.cloud_name = cloud_name
        self._server_by_target: dict[str, str | None] = {}

    def run(self, *, apply: bool) -> ReconcileReport:
        report = ReconcileReport(applied=apply)
        marked = self.cloud.list_marked_artifacts()
        self._backup_of_artifact = {
            info.ref: info.metadata.get(MARKER_BACKUP) for info in marked
        }  # a Trove backup's parent, as the stackback backup it belongs to
        by_backup: dict[str, list[ArtifactInfo]] = defaultdict(list)
        for info in marked:
            backup_id = info.metadata.get(MARKER_BACKUP)
            if backup_id:
                by_backup[backup_id].append(info)
        group = _Group(images={i.ref.id: i for i in marked if i.ref.kind is ArtifactKind.IMAGE})
        self._server_by_target.clear()
        for backup_id, infos in sorted(by_backup.items()):
            try:
                recorded: Backup | None = self.store.get_backup(backup_id)
            except NotFound:
                recorded = None
            known = {(a.kind, a.cloud_id) for a in recorded.artifacts} if recorded else set()
            group.reset(backup_id, infos, recorded, known)
            accepted: list[ArtifactInfo] = []
            for info in infos:
                if (info.ref.kind, info.ref.id) in known:
                    continue
                problem = self._provenance_problem(info, group)
                if problem is None:
                    accepted.append(info)
                else:
                    report.skipped.append(SkippedArtifact(info.ref.id, backup_id, problem))
            if recorded is None:
                if accepted:
                    report.unrecorded.append(backup_id)
                    if apply:
                        self._import(backup_id, accepted)
                        report.imported.append(backup_id)
                continue
            for info in accepted:
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
            if not accepted:
                report.consistent += 1
        self._find_missing(report, apply=apply)
        return report

    # -- provenance ------------------------------------------------------------------

    def _provenance_problem(self, info: ArtifactInfo, group: _Group) -> str | None:
        """Why ``info`` may not be the artifact stackback made for the group's backup (None: ok).

        - its run and target markers agree with the backup's record (or, for a backup
          with no record, with the group's earliest image: an inherited copy is always
          younger than the image it was inherited from) and with the run's record;
        - an image's id marker (``stackback_image_id``, stamped once it is available), if
          it has one, is its own id: a copy inherits the id of the image it was copied from;
        - an image was not made from a server booted from an image of this same backup
          (``base_image_ref`` names one listed with its markers, or recorded for it);
        - a volume-backed server's image (it lists volume snapshots) names only volume
          snapshots that carry this backup's markers (its ``instance_uuid``, if any, is
          inherited from the boot volume's image and proves nothing); an image-backed
          server's image names, in ``instance_uuid``, the server the backup is of;
        - Cinder snapshots carry only the metadata stackback set: their markers suffice.
        """
        meta = info.metadata
        run_id, target = meta.get(MARKER_RUN), meta.get(MARKER_TARGET)
        if not run_id or not target:
            return "incomplete stackback markers (no run or no target)"
        if group.run_id is not None and run_id != group.run_id:
            return f"its run marker {run_id} is not the backup's run {group.run_id}"
        if target != group.target:
            return f"its target marker {target!r} is not the backup's target {group.target!r}"
        run_backup = self._backup_of_run(run_id)
        if run_backup is not None and run_backup != group.backup_id:
            return f"run {run_id} made backup {run_backup}, not {group.backup_id}"
        if info.ref.kind is not ArtifactKind.IMAGE:
            return None
        own_id = meta.get(MARKER_IMAGE_ID)
        if own_id and own_id != info.ref.id:
            return (
                f"it carries image {own_id}'s id marker: its markers were inherited from "
                "that image, which its server was booted from"
            )
        base_ref = meta.get(NOVA_BASE_IMAGE_REF, "")
        base = group.images.get(base_ref)
        base_is_this_backups = (ArtifactKind.IMAGE, base_ref) in group.known or (
            base is not None and base.metadata.get(MARKER_BACKUP) == group.backup_id
        )
        if base_is_this_backups:
            return (
                f"made from a server booted from image {base_ref} of this backup: "
                "its markers were inherited"
            )
        if info.children:
            # A volume-backed server's image: Nova copies into it the image properties of
            # the server's boot volume, instance_uuid included (a volume made from another
            # server's snapshot names that server), so only its volume snapshots can tell.
            if all(group.marks(c.kind, c.id) == group.backup_id for c in info.children):
                return None
            return (
                "its volume snapshots do not carry this backup's markers: "
                "nothing shows it is the snapshot stackback made"
            )
        server = meta.get(NOVA_INSTANCE_UUID)
        if server and server in self._servers_of(group):
            return None
        if server:
            return (
                f"a snapshot of server {server}, not of the backup's target {group.target!r}: "
                "its markers were inherited from the image that server was booted from"
            )
        return "no instance_uuid and no volume snapshots: nothing shows stackback made it"

    def _servers_of(self, group: _Group) -> set[str]:
        """Ids of the server the group's backup is of.

        Its target marker (a server id), the ``instance_uuid`` of the images recorded for
        it; only when neither can tell (an old backup whose target is a server *name*),
        the server that name resolves to now.
        """
        servers = {group.target} | group.recorded_servers
        if group.recorded_servers or any(
            i.metadata.get(NOVA_INSTANCE_UUID) == group.target for i in group.infos
        ):
            return servers
        if group.target not in self._server_by_target:
            try:
                resolved: str | None = self.cloud.get_server(group.target).id
            except CloudError:
                resolved = None
            self._server_by_target[group.target] = resolved
        resolved = self._server_by_target[group.target]
        return servers | ({resolved} if resolved else set())

    def _backup_of_run(self, run_id: str) -> str | None:
        try:
            return self.store.get_run(run_id).backup_id
        except NotFound:
            return None

    def _import(self, backup_id: str, infos: list[ArtifactInfo]) -> None:
        first = infos[0].metadata
        policy_id = first.get(MARKER_POLICY) or None  # stamped empty when there is none
        policy_name = None
        kinds = {i.ref.kind for i in infos}
        kind = (
            BackupKind.VOLUME_BACKUP
            if kinds == {ArtifactKind.VOLUME_BACKUP}
            else (BackupKind.SERVER_IMAGE)
        )
        if policy_id:
            try:
                policy = self.store.get_policy(policy_id)
                policy_name = policy.name
                if policy.kind in VOLUME_KINDS:  # a volume's snapshot, not a server's
                    kind = policy.kind
            except NotFound:  # deleted, or lost with the database: still a policy's backup,
                policy_id, policy_name = None, f"unknown policy {policy_id}"  # not a manual one
        created = min((i.created_at for i in infos if i.created_at), default=self.clock.now())
        status = _status_of(infos)
        database = any(i.ref.kind is ArtifactKind.DATABASE_BACKUP for i in infos)
        parent = next((i.parent for i in infos if i.parent is not None), None)
        backup = self.store.ensure_backup(
            Backup(
                id=backup_id,
                target=first.get(MARKER_TARGET, "unknown"),
                target_name=first.get(MARKER_TARGET_NAME) or None,
                kind=BackupKind.DATABASE_BACKUP if database else kind,
                status=status,
                created_at=created,
                parent_id=self._backup_of_artifact.get(parent) if parent else None,
                policy_id=policy_id,
                policy_name=policy_name,
                label=first.get(MARKER_LABEL) or None,
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
