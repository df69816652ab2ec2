"""Finishing recorded deletions (Velero-style: deletion is a request first).

A backup to delete is marked ``deleting`` in the store before any cloud call;
the collector then deletes its artifacts one by one, recording each success,
and every failure with its reason and attempt count, so an interrupted or
failed deletion is retried later and never forgotten. It deletes only
artifacts that carry stackback's created-by marker for that very backup, and
never those of a protected backup, nor one that other backups are built on (a Trove
backup's children: Trove would delete them with it).

Just before deleting anything (the point of no return) it checks again, with
the target's backups locked in the store (``stackback.safety.judge_deletion``'s
final check), that the backup is not protected and,
unless the operator forced the deletion, that another good (available) backup
of the same target remains: a manual ``backup delete`` racing a rotation must
not leave the target without a good backup. A refused deletion restores the
backup (available if its artifacts are intact) with the reason as its error.

A backup made through a stored credential (``credential:<id>``) that is gone is reported
to ``release_credential``, which revokes the credential once nothing needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from stackback.chains import FOREIGN_CHILD
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudError, CloudRejected, StackbackError
from stackback.policy import ArtifactKind, ArtifactStatus, Backup, BackupStatus
from stackback.ports import (
    CREATED_BY_VALUE,
    MARKER_BACKUP,
    MARKER_CREATED_BY,
    ArtifactInfo,
    ArtifactRef,
    Clock,
    Cloud,
    CloudResolver,
    Store,
)
from stackback.records import BackupFilter, credential_id_of
from stackback.safety import (
    DeletionRequest,
    DeletionStage,
    failed_child_reason,
    judge_deletion,
)

log = logging.getLogger(__name__)

CHILD_STILL_IN_CLOUD = "waiting: an incremental backup of it is still being deleted in the cloud"
"""Not asked yet: asked now, Cinder would refuse, and a refusal that outlived the child's
deletion (done in the background) would pass for a child stackback did not make."""


class Collector:
    """Deletes the cloud artifacts of backups whose deletion was requested."""

    def __init__(
        self,
        store: Store,
        clouds: CloudResolver,
        clock: Clock,
        settings: EngineSettings | None = None,
        *,
        release_credential: Callable[[str | None], object] | None = None,
    ) -> None:
        self.store = store
        self.clouds = clouds
        self.clock = clock
        self.settings = settings or EngineSettings()
        self.release_credential = release_credential
        """Told the cloud of each backup gone through a stored credential; None: nothing."""

    def collect_pending(self, limit: int = 100) -> int:
        """One pass over the deletion queue; returns how many backups were finished."""
        return self.collect(self.store.backups_to_collect(limit=limit))

    def collect(self, backups: Sequence[Backup], *, strict: bool = False) -> int:
        """Delete what each backup's deletion asks for; returns how many were finished.

        One backup's trouble (a cloud error, a cloud no longer configured, a bug)
        is logged and left for the next pass: it never stops the others, and never
        reaches the run that asked for the deletion. ``strict`` (an operator's
        ``backup delete``, waiting for the answer) raises a stackback error instead,
        once the other backups are done.
        """
        failed: StackbackError | None = None
        finished = 0
        for backup in backups:
            try:
                if self._collect_one(self.store.get_backup(backup.id)):
                    finished += 1
            except StackbackError as error:
                log.warning(
                    "deleting backup %s: %s (error id %s)", backup.id, error, error.error_id
                )
                failed = failed or error
            except Exception:
                log.exception("deleting backup %s: unexpected error", backup.id)
        if strict and failed is not None:
            raise failed
        return finished

    def _collect_one(self, backup: Backup) -> bool:
        if backup.status is not BackupStatus.DELETING:
            return False
        final_check = DeletionRequest(backup.id, stage=DeletionStage.FINAL_CHECK)
        verdict = self.store.decide_for_target(
            backup.target, partial(judge_deletion, final_check), include=(backup.id,)
        )
        if verdict.refusal is not None:
            log.warning("not deleting backup %s: %s", backup.id, verdict.refusal)
            return False
        cloud = self.clouds(backup.cloud)
        remaining = sorted(  # a group snapshot first: Cinder deletes its members with it
            (a for a in backup.artifacts if a.status is not ArtifactStatus.DELETED),
            key=lambda a: a.kind is not ArtifactKind.GROUP_SNAPSHOT,
        )
        refs = [ArtifactRef(a.kind, a.cloud_id) for a in remaining]
        infos = cloud.artifact_statuses(refs) if refs else {}
        going: set[ArtifactRef] = set()  # members of a group snapshot deleted in this pass
        grouped = any(a.kind is ArtifactKind.GROUP_SNAPSHOT for a in backup.artifacts)
        failures = 0
        for artifact, ref in zip(remaining, refs, strict=True):
            now = self.clock.now()
            info = infos.get(ref)
            if info is None or info.status is ArtifactStatus.DELETED:
                self.store.update_artifact(
                    artifact.id, status=ArtifactStatus.DELETED, deleted_at=now
                )
                continue
            if ref in going or (grouped and info.status is ArtifactStatus.DELETING):
                failures += 1  # going with its group snapshot: asking again would be refused
                continue
            refusal = _not_ours(backup, info)
            if refusal is None and info.dependents:
                foreign = self._foreign_dependents(backup, info.dependents)
                if foreign:
                    self._hold_for_foreign_child(
                        backup, f"{', '.join(foreign)} (not stackback's) would go with it"
                    )
                    return False
                refusal = _under(info)
            if refusal is not None:
                failures += 1
                self.store.update_artifact(
                    artifact.id,
                    error=f"not deleted: {refusal}",
                    delete_attempts=artifact.delete_attempts + 1,
                )
                continue
            if ref.kind is ArtifactKind.VOLUME_BACKUP and self._children_still_in_cloud(
                backup, cloud
            ):
                failures += 1  # Cinder deletes an increment in the background: next pass
                self.store.update_artifact(artifact.id, error=CHILD_STILL_IN_CLOUD)
                continue
            try:
                cloud.delete_artifact(ref)
            except CloudRejected as error:
                if (
                    ref.kind is ArtifactKind.VOLUME_BACKUP
                    and "ncremental" in error.message
                    and not self._forget_failed_children(backup, cloud, ref)
                ):
                    # none of stackback's increments was in the cloud when it was asked (a
                    # deleted backup never comes back): Cinder knows another
                    self._hold_for_foreign_child(backup, f"the cloud said: {error.message}")
                    return False
                failures += 1
                self.store.update_artifact(
                    artifact.id,
                    error=f"{error.code}: {error.message}",
                    delete_attempts=artifact.delete_attempts + 1,
                )
                continue
            except CloudError as error:
                failures += 1
                self.store.update_artifact(
                    artifact.id,
                    error=f"{error.code}: {error.message}",
                    delete_attempts=artifact.delete_attempts + 1,
                )
                continue
            if ref.kind is ArtifactKind.GROUP_SNAPSHOT:
                going.update(info.children)
            self.store.update_artifact(
                artifact.id, status=ArtifactStatus.DELETED, deleted_at=now, error=None
            )
        if failures:
            return False
        finished = self.store.finish_deletion(backup.id, now=self.clock.now())
        if finished:
            self._backup_gone(backup)
        return finished

    def _backup_gone(self, backup: Backup) -> None:
        """Let the backup's credential go if it was the last thing needing it (its trouble
        is logged, never the deletion's: a credential kept is looked at again later)."""
        if self.release_credential is None or credential_id_of(backup.cloud) is None:
            return
        try:
            self.release_credential(backup.cloud)
        except StackbackError as error:
            log.warning(
                "backup %s deleted; its credential %s not released: %s (error id %s)",
                backup.id,
                backup.cloud,
                error,
                error.error_id,
            )
        except Exception:
            log.exception("backup %s deleted; releasing %s failed", backup.id, backup.cloud)

    def _children_still_in_cloud(self, backup: Backup, cloud: Cloud) -> bool:
        """Whether an increment stackback made of ``backup`` is still in the cloud (Cinder
        deletes a backup in the background: its parent waits for the next pass)."""
        known = self.store.list_backups(
            BackupFilter(target=backup.target, include_deleted=True, limit=None)
        )
        refs = [
            ArtifactRef(a.kind, a.cloud_id)
            for child in known
            if child.parent_id == backup.id
            for a in child.artifacts
        ]
        infos = cloud.artifact_statuses(refs) if refs else {}
        return any(info.status is not ArtifactStatus.DELETED for info in infos.values())

    def _forget_failed_children(self, backup: Backup, cloud: Cloud, ref: ArtifactRef) -> bool:
        """Find stackback's failed Cinder backups of the target recorded without a parent
        (before failed incrementals recorded theirs) that Cinder built on ``ref``; record
        ``backup`` as their parent and ask for their deletion (``judge_deletion``: never a
        protected one). Whether any was found: the parent then waits for them."""
        known = self.store.list_backups(BackupFilter(target=backup.target, limit=None))
        candidates = {
            ArtifactRef(a.kind, a.cloud_id): b
            for b in known
            if b.status is BackupStatus.FAILED and b.parent_id is None
            for a in b.artifacts
            if a.kind is ArtifactKind.VOLUME_BACKUP
        }
        infos = cloud.artifact_statuses(list(candidates)) if candidates else {}
        children = [
            candidates[child_ref]
            for child_ref, info in infos.items()
            if child_ref in candidates and info.parent == ref
        ]
        for child in children:
            self.store.update_backup(child.id, parent_id=backup.id)
            request = DeletionRequest(child.id, reasons=failed_child_reason(backup))
            verdict = self.store.decide_for_target(
                backup.target, partial(judge_deletion, request), include=(child.id,)
            )
            log.info(
                "backup %s: its failed incremental %s %s",
                backup.id,
                child.id,
                "is deleted first" if verdict.allowed else f"holds it ({verdict.refusal})",
            )
        return bool(children)

    def _foreign_dependents(self, backup: Backup, dependents: Sequence[ArtifactRef]) -> list[str]:
        """The cloud ids of backups stackback did not make that are built on ``backup``'s
        artifact (Trove would delete them with it)."""
        known = self.store.list_backups(
            BackupFilter(target=backup.target, include_deleted=True, limit=None)
        )
        ours = {a.cloud_id for b in known for a in b.artifacts}
        return [ref.id for ref in dependents if ref.id not in ours]

    def _hold_for_foreign_child(self, backup: Backup, detail: str) -> None:
        """Give a backup back (available) that the cloud keeps, or would delete with it, for
        a child stackback did not make: not a failure; retention holds it, and its
        ancestors, from now on."""
        why = f"deletion held: {FOREIGN_CHILD} ({detail})"
        log.warning("not deleting backup %s: %s", backup.id, why)
        self.store.update_backup(
            backup.id,
            status=BackupStatus.AVAILABLE,
            error=why,
            reasons=(FOREIGN_CHILD,),
            deletion_guarded=False,
        )


def _under(info: ArtifactInfo) -> str | None:
    """Why an artifact must not be deleted yet: others are built on it (None: none are).

    Trove deletes a backup's descendants with it: deleting a parent under a kept child,
    or under a user's incremental, would delete them. A chain is deleted newest first,
    each parent once nothing depends on it any more.
    """
    if not info.dependents:
        return None
    ids = ", ".join(ref.id for ref in info.dependents)
    return f"backups built on it still exist ({ids}): deleting it would delete them too"


def _not_ours(backup: Backup, info: ArtifactInfo) -> str | None:
    """Why an artifact recorded for ``backup`` must not be deleted (None: it is ours).

    It must carry stackback's marker naming this backup. (Whether a marked image
    really is stackback's snapshot, not a user's copy with inherited markers, is
    decided before it is ever recorded: by the runner that made it, or by
    reconcile's provenance checks.)
    """
    meta = info.metadata
    if meta.get(MARKER_CREATED_BY) != CREATED_BY_VALUE or meta.get(MARKER_BACKUP) != backup.id:
        return "it does not carry this backup's stackback marker"
    return None
