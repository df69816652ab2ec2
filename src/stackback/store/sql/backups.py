"""Backups and artifacts, and the deletion rules (protection, the last good backup)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from stackback.errors import Conflict, NotFound
from stackback.policy import Artifact, ArtifactKind, ArtifactStatus, Backup, BackupStatus
from stackback.records import BackupFilter
from stackback.store.convert import artifact_from_row, backup_from_row
from stackback.store.models import ArtifactRow, BackupRow, PolicyRow
from stackback.store.sql.base import BACKUPS, SqlBase, by_id_or_prefix, new_id
from stackback.store.sql.restores import restore_in_progress

_IN_CHUNK = 10_000
"""Values bound in one ``IN (...)``: PostgreSQL takes at most 65,535 parameters a query."""


class BackupStore(SqlBase):
    """Backup records, their artifacts, and deletion requests."""

    def _fence(self, session: Session, fence: tuple[str, int] | None) -> None:
        """Fence a worker's write by its run's attempt: ``fence`` is ``(run id, attempt)``.

        The check runs in the write's own transaction (``_fenced_run``: the run row
        locked ``FOR UPDATE``), so a worker whose lease was taken over writes nothing
        and gets ``LeaseLost``.
        """
        if fence is not None:
            self._fenced_run(session, *fence)

    def ensure_backup(
        self,
        backup: Backup,
        *,
        fence: tuple[str, int] | None = None,
        restore_source: Mapping[str, Any] | None = None,
    ) -> Backup:
        """Create the backup record of a run, or return the one it already has.

        ``restore_source``: what a restore needs of the server, recorded with the new record.
        """
        with self._session() as session:
            self._fence(session, fence)
            if backup.run_id:
                existing = session.scalars(
                    select(BackupRow).where(BackupRow.run_id == backup.run_id)
                ).first()
                if existing is not None:
                    return self._backup(session, existing)
            policy_id = backup.policy_id
            if policy_id is not None and session.get(PolicyRow, policy_id) is None:
                policy_id = None  # deleted while its run was under way: its name stays
            row = BackupRow(
                id=backup.id,
                policy_id=policy_id,
                policy_name=backup.policy_name,
                run_id=backup.run_id,
                target=backup.target,
                target_name=backup.target_name,
                kind=backup.kind.value,
                label=backup.label,
                status=backup.status.value,
                protected=backup.protected,
                cloud=backup.cloud,
                project=backup.project,
                reasons=list(backup.reasons),
                error=backup.error,
                created_at=backup.created_at,
                restore_source=dict(restore_source) if restore_source is not None else None,
            )
            session.add(row)
            session.flush()
            return self._backup(session, row)

    def add_artifact(
        self,
        backup_id: str,
        kind: ArtifactKind,
        cloud_id: str,
        *,
        status: ArtifactStatus,
        now: datetime,
        size: int | None = None,
        fence: tuple[str, int] | None = None,
    ) -> Artifact:
        """Record a cloud object as part of a backup (idempotent on the cloud object)."""
        with self._session() as session:
            self._fence(session, fence)
            row = session.scalars(
                select(ArtifactRow).where(
                    ArtifactRow.kind == kind.value, ArtifactRow.cloud_id == cloud_id
                )
            ).first()
            if row is None:
                row = ArtifactRow(
                    id=new_id(),
                    backup_id=backup_id,
                    kind=kind.value,
                    cloud_id=cloud_id,
                    status=status.value,
                    size=size,
                    delete_attempts=0,
                    created_at=now,
                )
                session.add(row)
                session.flush()
            elif row.backup_id != backup_id:
                raise Conflict(f"{kind.value} {cloud_id} already belongs to backup {row.backup_id}")
            return artifact_from_row(row)

    def update_artifact(
        self, artifact_id: str, *, fence: tuple[str, int] | None = None, **values: Any
    ) -> Artifact:
        """Write artifact fields (status, size, error...); ``fence`` as for ``update_backup``."""
        for key in ("status", "kind"):
            if key in values and hasattr(values[key], "value"):
                values[key] = values[key].value
        with self._session() as session:
            self._fence(session, fence)
            row = session.get(ArtifactRow, artifact_id)
            if row is None:
                raise NotFound(f"no artifact {artifact_id}")
            for key, value in values.items():
                setattr(row, key, value)
            return artifact_from_row(row)

    def update_backup(
        self, backup_id: str, *, fence: tuple[str, int] | None = None, **values: Any
    ) -> None:
        """Write backup fields (status, reasons, protection, error...).

        A worker passes ``fence=(run id, attempt)``: the write happens only if it
        still holds that attempt of the run, else ``LeaseLost`` and nothing is written.
        """
        if "status" in values and hasattr(values["status"], "value"):
            values["status"] = values["status"].value
        if "reasons" in values:
            values["reasons"] = list(values["reasons"])
        with self._session() as session:
            self._fence(session, fence)
            row = session.get(BackupRow, backup_id)
            if row is None:
                raise NotFound(f"no backup {backup_id!r}")
            for key, value in values.items():
                setattr(row, key, value)

    def _target_backups(self, session: Session, row: BackupRow) -> list[BackupRow]:
        """The live backups of ``row``'s target (and ``row``), locked in id order and re-read.

        Deletion requests and the collector's last check take these locks before
        deciding whether another good backup remains, so two of them cannot each
        count on the other's backup (on SQLite, ``BEGIN IMMEDIATE`` serialises them).
        The target is matched by its key only: Nova names are not unique, so a
        backup of another server with the same name must not count as good.
        """
        live = (BackupStatus.AVAILABLE.value, BackupStatus.DELETING.value)
        query = (
            select(BackupRow)
            .where(
                BackupRow.target == row.target,
                or_(BackupRow.status.in_(live), BackupRow.id == row.id),
            )
            .order_by(BackupRow.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return list(session.scalars(query))

    @staticmethod
    def _another_good(group: Sequence[BackupRow], row: BackupRow) -> bool:
        """Whether a backup of ``group`` other than ``row`` is good (available, not deleting)."""
        return any(r.id != row.id and r.status == BackupStatus.AVAILABLE.value for r in group)

    def request_deletion(self, ref: str, *, reasons: Sequence[str], force: bool = False) -> Backup:
        """Mark a backup ``deleting`` for the operator, atomically with the safety rules.

        Without ``force`` a protected backup is refused, and so is the last good
        (available) backup of its target: another one must remain, checked with the
        target's backups locked, so that a concurrent request or a run's rotation
        cannot pass the same check at the same time. Such a deletion is *guarded*:
        the collector checks again, just before deleting anything, that another good
        backup remains. ``force`` unprotects the backup and waives both rules. A
        backup already deleted, or being deleted, is returned as it is (``force``
        then still waives the guard).
        """
        with self._session() as session:
            row = self._backup_row(session, ref)
            group = self._target_backups(session, row)
            if row.status == BackupStatus.DELETED.value:
                return self._backup(session, row)
            if row.status == BackupStatus.DELETING.value:
                if force:
                    row.deletion_guarded = False
                return self._backup(session, row)
            if row.protected and not force:
                raise Conflict(f"backup {row.id} is protected: unprotect it or use --force")
            if restore_in_progress(session, row.id):
                raise Conflict(f"backup {row.id} is being restored: `restore cancel` it first")
            guarded = row.status == BackupStatus.AVAILABLE.value and not force
            if guarded and not self._another_good(group, row):
                raise Conflict(
                    f"backup {row.id} is the last good backup of {row.target}: use --force"
                )
            row.protected = False
            row.status = BackupStatus.DELETING.value
            row.reasons = list(reasons)
            row.deletion_guarded = guarded
            row.deletion_run_id = None
            return self._backup(session, row)

    def forget_backups(
        self,
        backup_ids: Sequence[str],
        *,
        reasons: Sequence[str],
        fence: tuple[str, int],
        budget: int,
    ) -> list[Backup]:
        """Mark the backups a run's retention forgets ``deleting``: one transaction, fenced.

        Each is recorded as forgotten by the run (``deletion_run_id``), and the
        budget holds across the run's attempts: what an earlier attempt marked
        counts against it, so a run resumed after a crash between its decision and
        its journal entry forgets at most ``budget`` backups in all. In the given
        order, a backup is marked only if it is still available and unprotected, is not
        the run's own, and another good backup of its target remains; each deletion is
        guarded.
        Marks nothing unless the run's own backup is available (the operator may
        have deleted it meanwhile): nothing is forgotten before the new backup is good.
        Returns the backups the run has marked in all its attempts that are still
        being deleted or deleted (not those the collector refused), oldest first.
        """
        run_id = fence[0]
        mine = (
            select(BackupRow)
            .where(BackupRow.deletion_run_id == run_id)
            .order_by(BackupRow.created_at, BackupRow.id)
        )
        with self._session() as session:
            self._fenced_run(session, *fence)
            own = session.scalar(select(BackupRow.status).where(BackupRow.run_id == run_id))
            left = budget - len(session.scalars(mine).all())
            if own != BackupStatus.AVAILABLE.value:
                left = 0
            groups: dict[str, list[BackupRow]] = {}
            for backup_id in backup_ids:
                if left <= 0:
                    break
                row = session.get(BackupRow, backup_id)
                if row is None:
                    continue
                if row.target not in groups:
                    groups[row.target] = self._target_backups(session, row)
                if (
                    row.status != BackupStatus.AVAILABLE.value
                    or row.run_id == run_id
                    or row.protected
                    or not self._another_good(groups[row.target], row)
                    or restore_in_progress(session, row.id)
                ):
                    continue
                row.status = BackupStatus.DELETING.value
                row.reasons = list(reasons)
                row.deletion_guarded = True
                row.deletion_run_id = run_id
                left -= 1
            session.flush()
            gone = (BackupStatus.DELETING.value, BackupStatus.DELETED.value)
            return [self._backup(session, r) for r in session.scalars(mine) if r.status in gone]

    def finish_deletion(self, backup_id: str, *, now: datetime) -> bool:
        """Record a backup ``deleted`` once its artifacts are gone, if it is still ``deleting``.

        Conditional, so that it cannot overwrite a decision taken meanwhile (another
        collector's check restoring the backup). Returns whether it was recorded.
        """
        with self.engine.begin() as connection:
            done = connection.execute(
                update(BACKUPS)
                .where(BACKUPS.c.id == backup_id, BACKUPS.c.status == BackupStatus.DELETING.value)
                .values(status=BackupStatus.DELETED.value, deleted_at=now)
            )
            return done.rowcount == 1

    def check_deletion(self, backup_id: str) -> str | None:
        """The collector's last check before it deletes a backup's artifacts.

        Returns None when the backup is ``deleting`` and may go. Otherwise returns
        why not; when the deletion is refused — the backup is protected, or its
        deletion is guarded and no other good backup of its target remains — the
        backup is restored (available if its artifacts are intact, else failed)
        with the reason as its error. Decided with the target's backups locked.
        """
        with self._session() as session:
            row = self._backup_row(session, backup_id)
            group = self._target_backups(session, row)
            if row.status != BackupStatus.DELETING.value:
                return f"backup {row.id} is {row.status}, not being deleted"
            if row.protected:
                why = "deletion refused: the backup is protected"
            elif row.deletion_guarded and not self._another_good(group, row):
                why = (
                    f"deletion refused: it is the last good backup of {row.target} "
                    "(`backup delete --force` deletes it anyway)"
                )
                row.reasons = ["last good backup of its target"]
            else:
                return None
            artifacts = session.scalars(
                select(ArtifactRow.status).where(ArtifactRow.backup_id == row.id)
            ).all()
            intact = all(status == ArtifactStatus.AVAILABLE.value for status in artifacts)
            row.status = (BackupStatus.AVAILABLE if intact else BackupStatus.FAILED).value
            row.error = why
            row.deletion_guarded = False
            return why

    def _backup_row(self, session: Session, ref: str) -> BackupRow:
        return by_id_or_prefix(session, BackupRow, ref, "backup")

    def _backup(self, session: Session, row: BackupRow) -> Backup:
        artifacts = session.scalars(
            select(ArtifactRow)
            .where(ArtifactRow.backup_id == row.id)
            .order_by(ArtifactRow.created_at, ArtifactRow.id)
        ).all()
        return backup_from_row(row, list(artifacts))

    def get_backup(self, ref: str) -> Backup:
        with self._session() as session:
            return self._backup(session, self._backup_row(session, ref))

    def backup_for_run(self, run_id: str) -> Backup | None:
        with self._session() as session:
            row = session.scalars(select(BackupRow).where(BackupRow.run_id == run_id)).first()
            return self._backup(session, row) if row is not None else None

    def list_backups(self, criteria: BackupFilter | None = None) -> list[Backup]:
        filter = criteria or BackupFilter()
        with self._session() as session:
            query = select(BackupRow)
            if filter.target:
                query = query.where(
                    or_(BackupRow.target == filter.target, BackupRow.target_name == filter.target)
                )
            if filter.policy_id:
                query = query.where(BackupRow.policy_id == filter.policy_id)
            if filter.label is not None:
                query = query.where(BackupRow.label == filter.label)
            if filter.statuses:
                query = query.where(BackupRow.status.in_([s.value for s in filter.statuses]))
            elif not filter.include_deleted:
                query = query.where(BackupRow.status != BackupStatus.DELETED.value)
            query = query.order_by(BackupRow.created_at.desc(), BackupRow.id).limit(filter.limit)
            rows = session.scalars(query).all()
            by_backup: dict[str, list[ArtifactRow]] = {r.id: [] for r in rows}
            ids = list(by_backup)
            for first in range(0, len(ids), _IN_CHUNK):  # PostgreSQL binds at most 65,535
                for a in session.scalars(
                    select(ArtifactRow)
                    .where(ArtifactRow.backup_id.in_(ids[first : first + _IN_CHUNK]))
                    .order_by(ArtifactRow.created_at, ArtifactRow.id)
                ):
                    by_backup[a.backup_id].append(a)
            return [backup_from_row(r, by_backup[r.id]) for r in rows]

    def set_protected(self, ref: str, protected: bool) -> Backup:
        """Protect or unprotect a backup, decided with its row locked and re-read.

        The lock orders this against a rotation's ``forget_backups``, a deletion
        request and the collector (they lock the row too; on SQLite ``BEGIN
        IMMEDIATE`` serialises them): protecting a backup that is being deleted, or
        was, is refused with ``Conflict`` instead of reporting a protection that
        nothing honours. Unprotecting always succeeds: a backup being deleted or
        deleted is already unprotected (deletion clears the flag), so the state the
        operator asks for holds (a stale flag left by an older version is cleared).
        """
        with self._session() as session:
            found = self._backup_row(session, ref)
            row = session.scalars(
                select(BackupRow)
                .where(BackupRow.id == found.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one()
            if protected and row.status == BackupStatus.DELETING.value:
                raise Conflict(f"backup {row.id} is being deleted: it cannot be protected")
            if protected and row.status == BackupStatus.DELETED.value:
                raise Conflict(f"backup {row.id} was deleted: it cannot be protected")
            row.protected = protected
            return self._backup(session, row)

    def backups_to_collect(self, *, limit: int = 100) -> list[Backup]:
        """Backups whose deletion was requested and not finished (the GC's queue)."""
        return self.list_backups(BackupFilter(statuses=(BackupStatus.DELETING,), limit=limit))
