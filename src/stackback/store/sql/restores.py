"""Restore jobs: created against an available backup, claimed with a lease like runs.

Every worker write names the attempt it holds (fencing): a worker whose lease was
taken over writes nothing and gets ``LeaseLost``. While a job is active, its
backup is held: retention skips it and a deletion request is refused
(:func:`restore_in_progress`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from stackback.errors import Conflict, InvalidInput, LeaseLost, NotFound
from stackback.policy import BackupStatus
from stackback.ports import DatabaseSpec
from stackback.records import ServerSpec
from stackback.restoreplan import (
    ACTIVE_RESTORE_STATES,
    CreatedResource,
    RestoreJob,
    RestoreMode,
    RestorePlan,
    RestoreState,
    RestoreStep,
)
from stackback.store.models import BackupRow, RestoreRow
from stackback.store.sql.base import (
    SqlBase,
    by_id_or_prefix,
    keyset_after,
    new_id,
)
from stackback.store.sql.verify import write_verification
from stackback.verification import Verification

_ACTIVE = tuple(state.value for state in ACTIVE_RESTORE_STATES)


def restore_in_progress(session: Session, backup_id: str) -> bool:
    """Whether an active restore job reads this backup (retention must leave it alone)."""
    query = select(exists().where(RestoreRow.backup_id == backup_id, RestoreRow.state.in_(_ACTIVE)))
    return bool(session.scalar(query))


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def restore_from_row(row: RestoreRow) -> RestoreJob:
    return RestoreJob(
        id=row.id,
        backup_id=row.backup_id,
        mode=RestoreMode(row.mode),
        state=RestoreState(row.state),
        plan=RestorePlan.from_dict(row.plan),
        created_at=row.created_at,
        deadline_at=row.deadline_at,
        cloud=row.cloud,
        project=row.project,
        server_id=row.server_id,
        created=tuple(
            CreatedResource(str(c["kind"]), str(c["id"]), str(c["item"])) for c in row.created
        ),
        steps=tuple(
            RestoreStep(
                name=str(s["name"]),
                started_at=_time(s["started_at"]) or row.created_at,
                finished_at=_time(s.get("finished_at")),
                outcome=str(s["outcome"]),
                detail=str(s.get("detail", "")),
                attempt=int(s.get("attempt", 0)),
            )
            for s in row.steps
        ),
        error=row.error,
        error_id=row.error_id,
        attempt=row.attempt,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        not_before=row.not_before,
        cancel_requested=row.cancel_requested,
        started_at=row.started_at,
        finished_at=row.finished_at,
        verify_result=row.verify_result,
        verify_reason=row.verify_reason,
        active_seconds=row.active_seconds,
    )


def _step_dict(step: RestoreStep, attempt: int) -> dict[str, Any]:
    return {
        "name": step.name,
        "started_at": step.started_at.isoformat(),
        "finished_at": step.finished_at.isoformat() if step.finished_at else None,
        "outcome": step.outcome,
        "detail": step.detail,
        "attempt": attempt,
    }


class RestoreStore(SqlBase):
    """Restore jobs and the restore source recorded with each backup."""

    def restore_source(self, backup_id: str) -> ServerSpec | None:
        """What was recorded of the backup's server at backup time (None: nothing)."""
        with self._session() as session:
            row = by_id_or_prefix(session, BackupRow, backup_id, "backup")
            if not row.restore_source or "database" in row.restore_source:
                return None
            return ServerSpec.from_dict(row.restore_source)

    def database_source(self, backup_id: str) -> DatabaseSpec | None:
        """What was recorded of a database backup's Trove instance (None: nothing)."""
        with self._session() as session:
            row = by_id_or_prefix(session, BackupRow, backup_id, "backup")
            return DatabaseSpec.from_dict(row.restore_source)

    def create_restore(
        self,
        *,
        backup_id: str,
        plan: RestorePlan,
        cloud: str | None,
        now: datetime,
        deadline_at: datetime,
    ) -> RestoreJob:
        """Record a restore job of an available backup (locked, so no deletion slips in)."""
        with self._session() as session:
            backup = session.get(BackupRow, backup_id, with_for_update=True)
            if backup is None:
                raise NotFound(f"no backup {backup_id!r}")
            if backup.status != BackupStatus.AVAILABLE.value:
                raise InvalidInput(
                    f"backup {backup.id} is {backup.status}: only an available backup can be "
                    "restored",
                    field="backup",
                )
            row = RestoreRow(
                id=new_id(),
                backup_id=backup.id,
                mode=plan.mode.value,
                state=RestoreState.PENDING.value,
                cloud=cloud,
                project=backup.project,
                plan=plan.to_dict(),
                created=[],
                steps=[],
                attempt=0,
                cancel_requested=False,
                deadline_at=deadline_at,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return restore_from_row(row)

    def claim_restores(
        self,
        now: datetime,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        job_id: str | None = None,
    ) -> list[RestoreJob]:
        """Lease active jobs whose lease is free or expired (attempt + 1 on each)."""
        with self._session() as session:
            query = (
                select(RestoreRow)
                .where(
                    RestoreRow.state.in_(_ACTIVE),
                    or_(RestoreRow.not_before.is_(None), RestoreRow.not_before <= now),
                    or_(RestoreRow.lease_expires_at.is_(None), RestoreRow.lease_expires_at <= now),
                )
                .order_by(RestoreRow.created_at, RestoreRow.id)
                .limit(limit)
            )
            if job_id is not None:
                query = query.where(RestoreRow.id == job_id)
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = session.scalars(query).all()
            for row in rows:
                row.lease_owner = owner
                row.lease_expires_at = now + timedelta(seconds=lease_seconds)
                row.attempt += 1
                if row.started_at is None:
                    row.started_at = now
            session.flush()
            return [restore_from_row(row) for row in rows]

    def update_restore(
        self,
        job_id: str,
        attempt: int,
        *,
        step: RestoreStep | None = None,
        created: CreatedResource | None = None,
        verification: Verification | None = None,
        **values: Any,
    ) -> RestoreJob:
        """Write job fields, append a step or a created resource; fenced by ``attempt``.

        ``verification``: a verify job's verdict, written on the job and on its backup
        in the same transaction."""
        if isinstance(values.get("state"), RestoreState):
            values["state"] = values["state"].value
        with self._session() as session:
            row = session.get(RestoreRow, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no restore {job_id}")
            if row.attempt != attempt:
                raise LeaseLost(
                    f"restore {job_id} was taken over (attempt {row.attempt}, this holds {attempt})"
                )
            for key, value in values.items():
                setattr(row, key, value)
            if step is not None:
                row.steps = [*row.steps, _step_dict(step, attempt)]
            if verification is not None:
                row.verify_result = verification.result.value
                row.verify_reason = verification.reason
                backup = session.get(BackupRow, row.backup_id)
                if backup is not None:
                    write_verification(backup, verification)
            if created is not None and created.id not in {c["id"] for c in row.created}:
                row.created = [
                    *row.created,
                    {"kind": created.kind, "id": created.id, "item": created.item},
                ]
            session.flush()
            return restore_from_row(row)

    def next_restore_wakeup(self) -> datetime | None:
        """When the earliest active job can next be claimed."""
        with self._session() as session:
            rows = session.execute(
                select(
                    RestoreRow.not_before, RestoreRow.lease_expires_at, RestoreRow.created_at
                ).where(RestoreRow.state.in_(_ACTIVE))
            ).all()
        times = [max(t for t in row if t is not None) for row in rows]
        return min(times) if times else None

    def get_restore(self, ref: str, *, project: str | None = None) -> RestoreJob:
        """A job by id or unique id prefix (only among ``project``'s jobs, if given: another
        project's is not found and makes no prefix ambiguous)."""
        with self._session() as session:
            return restore_from_row(
                by_id_or_prefix(session, RestoreRow, ref, "restore", project=project)
            )

    def list_restores(
        self,
        *,
        state: RestoreState | None = None,
        limit: int = 200,
        project: str | None = None,
        marker: str | None = None,
    ) -> list[RestoreJob]:
        """Newest first; only ``project``'s if given; after ``marker`` (the last job of the
        previous page) if given."""
        with self._session() as session:
            query = select(RestoreRow).order_by(RestoreRow.created_at.desc(), RestoreRow.id)
            if state is not None:
                query = query.where(RestoreRow.state == state.value)
            if project is not None:
                query = query.where(RestoreRow.project == project)
            if marker is not None:
                last = session.get(RestoreRow, marker)
                if last is None or (project is not None and last.project != project):
                    raise InvalidInput(
                        f"marker {marker!r} is not a restore of this list", field="marker"
                    )
                query = query.where(
                    keyset_after(RestoreRow.created_at, RestoreRow.id, last.created_at, last.id)
                )
            return [restore_from_row(row) for row in session.scalars(query.limit(limit))]

    def request_restore_cancel(self, ref: str, *, project: str | None = None) -> RestoreJob:
        """Ask the job's worker to stop and remove what it created; a finished job: Conflict.
        Only among ``project``'s jobs, if given."""
        with self._session() as session:
            row = by_id_or_prefix(session, RestoreRow, ref, "restore", project=project)
            if RestoreState(row.state).is_terminal:
                raise Conflict(f"restore {row.id} is already {row.state}")
            row.cancel_requested = True
            return restore_from_row(row)


def spec_column(spec: ServerSpec | None) -> Mapping[str, Any] | None:
    return spec.to_dict() if spec is not None else None
