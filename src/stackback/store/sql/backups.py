"""Backups and artifacts, and the locked decisions of the deletion rules (``stackback.safety``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from stackback.errors import Conflict, InvalidInput, NotFound
from stackback.policy import (
    Artifact,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupStatus,
)
from stackback.records import BackupFilter, Decision, TargetBackups
from stackback.store.convert import artifact_from_row, backup_from_row
from stackback.store.models import ArtifactRow, BackupRow, PolicyRow
from stackback.store.sql.base import BACKUPS, SqlBase, by_id_or_prefix, keyset_after, new_id
from stackback.store.sql.restores import restore_in_progress

_IN_CHUNK = 10_000
"""Values bound in one ``IN (...)``: PostgreSQL takes at most 65,535 parameters a query."""

D = TypeVar("D", bound=Decision)


def _column_value(value: object) -> object:
    """A ``BackupChange`` value as its column holds it (enums by value, tuples as lists)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


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
                consistency=backup.consistency,
                consistency_detail=backup.consistency_detail,
                parent_id=backup.parent_id,
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

    def decide_for_target(
        self,
        target: str,
        decide: Callable[[TargetBackups], D],
        *,
        include: Sequence[str] = (),
        fence: tuple[str, int] | None = None,
    ) -> D:
        """Run ``decide`` with the target's backups locked, and write the changes it returns.

        The store holds no rule: it locks the target's live backups (available or
        being deleted), its failed incrementals (the cloud counts them against their
        parents), those named in ``include`` and the own backup of the fenced
        run, in id order (``FOR UPDATE``; on SQLite ``BEGIN IMMEDIATE`` serialises
        the transactions), re-reads them, and hands them to ``decide`` (one of the
        pure functions of ``stackback.safety``) with what the fenced run asked to
        delete before. Two decisions on one target therefore never both count on
        each other's backup. The target is matched by its key only: Nova names are
        not unique, so a backup of another server with the same name never counts.
        ``fence=(run id, attempt)`` makes the whole decision a worker's fenced
        write (``LeaseLost``, nothing written, when the run was taken over).
        """
        with self._session() as session:
            run_id = fence[0] if fence is not None else None
            if fence is not None:
                self._fenced_run(session, *fence)
            live = (BackupStatus.AVAILABLE.value, BackupStatus.DELETING.value)
            failed_increment = and_(
                BackupRow.status == BackupStatus.FAILED.value, BackupRow.parent_id.is_not(None)
            )
            seen = or_(
                BackupRow.status.in_(live), failed_increment, BackupRow.id.in_(list(include))
            )
            if run_id is not None:
                seen = or_(seen, BackupRow.run_id == run_id)
            rows = session.scalars(
                select(BackupRow)
                .where(BackupRow.target == target, seen)
                .order_by(BackupRow.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all()
            forgotten: Sequence[BackupRow] = ()
            if run_id is not None:
                forgotten = session.scalars(
                    select(BackupRow)
                    .where(BackupRow.deletion_run_id == run_id)
                    .order_by(BackupRow.created_at, BackupRow.id)
                ).all()
            backups = sorted(
                self._with_artifacts(session, rows), key=lambda b: b.created_at, reverse=True
            )
            decision = decide(
                TargetBackups(
                    target=target,
                    backups=tuple(backups),
                    run_id=run_id,
                    forgotten_by_run=tuple(backup_from_row(r) for r in forgotten),
                    being_restored=frozenset(
                        row.id for row in rows if restore_in_progress(session, row.id)
                    ),
                )
            )
            locked = {row.id: row for row in rows}
            for change in decision.changes:
                row = locked.get(change.backup_id)
                if row is None:
                    raise ValueError(f"the decision changes {change.backup_id}, not locked for it")
                for key, value in change.values().items():
                    setattr(row, key, _column_value(value))
            return decision

    def record_source(self, target: str, *, now: datetime, exists: bool) -> int:
        """Record on the target's backups that its server exists now, or was found gone.

        Seen: ``source_last_seen_at`` is ``now`` and ``source_gone_at`` cleared. Gone:
        ``source_gone_at`` is set to ``now`` where it was not already (the first
        time it was found gone is kept). Returns how many backups changed.
        """
        with self._session() as session:
            query = update(BackupRow).where(BackupRow.target == target)
            if exists:
                query = query.values(source_last_seen_at=now, source_gone_at=None)
            else:
                query = query.where(BackupRow.source_gone_at.is_(None)).values(source_gone_at=now)
            result = session.execute(query.execution_options(synchronize_session=False))
            return int(getattr(result, "rowcount", 0) or 0)

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

    def _backup_row(self, session: Session, ref: str, project: str | None = None) -> BackupRow:
        return by_id_or_prefix(session, BackupRow, ref, "backup", project=project)

    def _backup(self, session: Session, row: BackupRow) -> Backup:
        artifacts = session.scalars(
            select(ArtifactRow)
            .where(ArtifactRow.backup_id == row.id)
            .order_by(ArtifactRow.created_at, ArtifactRow.id)
        ).all()
        return backup_from_row(row, list(artifacts))

    def get_backup(self, ref: str, *, project: str | None = None) -> Backup:
        with self._session() as session:
            return self._backup(session, self._backup_row(session, ref, project))

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
            if filter.project is not None:
                query = query.where(BackupRow.project == filter.project)
            if filter.since is not None:
                query = query.where(BackupRow.created_at >= filter.since)
            if filter.until is not None:
                query = query.where(BackupRow.created_at < filter.until)
            if filter.marker is not None:
                marker = session.get(BackupRow, filter.marker)
                if marker is None or (
                    filter.project is not None and marker.project != filter.project
                ):
                    raise InvalidInput(
                        f"marker {filter.marker!r} is not a backup of this list", field="marker"
                    )
                query = query.where(
                    keyset_after(BackupRow.created_at, BackupRow.id, marker.created_at, marker.id)
                )
            query = query.order_by(BackupRow.created_at.desc(), BackupRow.id).limit(filter.limit)
            return self._with_artifacts(session, session.scalars(query).all())

    def _with_artifacts(self, session: Session, rows: Sequence[BackupRow]) -> list[Backup]:
        """``rows`` as backups with their artifacts, read in a few queries."""
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

        The lock orders this against a rotation, a deletion request and the
        collector (their ``decide_for_target`` locks the row too; on SQLite ``BEGIN
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
