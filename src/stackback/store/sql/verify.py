"""Verification: each backup's last verdict, and the policies' verify schedules.

A verify occurrence is claimed like a schedule's: the due policy rows are locked
and their ``verify_next_at`` moved past ``now`` in one transaction, so one
scheduler replica fires each occurrence (after downtime, only the latest missed
one fires: a verification is a sample, not a debt).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stackback.errors import NotFound
from stackback.policy import Policy
from stackback.schedule import CronSchedule
from stackback.store.convert import policy_from_row, verification_from_row
from stackback.store.models import BackupRow, PolicyRow, ScheduleRow
from stackback.store.sql.base import SqlBase
from stackback.verification import TargetVerification, Verification, VerifyResult


def set_verify_next(row: PolicyRow, now: datetime) -> None:
    """When the policy's verify cron next fires after ``now`` (None: none, or disabled)."""
    if row.verify_cron and row.enabled:
        row.verify_next_at = CronSchedule(row.verify_cron, row.timezone).next_after(now)
    else:
        row.verify_next_at = None


def write_verification(row: BackupRow, verification: Verification) -> None:
    row.verify_result = verification.result.value
    row.verify_reason = verification.reason
    row.verified_at = verification.at
    row.verify_active_seconds = verification.active_seconds
    row.verify_restore_id = verification.restore_id


class VerifyStore(SqlBase):
    """Verdicts on backups and the verify schedules of policies."""

    def record_verification(self, backup_id: str, verification: Verification) -> None:
        """Record a verification that never became a job (it could not even be planned)."""
        with self._session() as session:
            row = session.get(BackupRow, backup_id)
            if row is None:
                raise NotFound(f"no backup {backup_id!r}")
            write_verification(row, verification)

    def claim_due_verifications(
        self, now: datetime, *, limit: int = 100
    ) -> list[tuple[Policy, datetime]]:
        """Policies whose verify cron is due, each with the occurrence it fires for;
        their next occurrence is moved past ``now`` as they are claimed."""
        with self._session() as session:
            query = (
                select(PolicyRow)
                .where(PolicyRow.verify_next_at.is_not(None), PolicyRow.verify_next_at <= now)
                .order_by(PolicyRow.verify_next_at, PolicyRow.id)
                .limit(limit)
            )
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            due: list[tuple[Policy, datetime]] = []
            for row in session.scalars(query).all():
                occurrence = row.verify_next_at
                set_verify_next(row, now)
                if occurrence is not None and row.enabled:
                    due.append((policy_from_row(row, _crons(session, row.id)), occurrence))
            return due

    def next_verify_time(self) -> datetime | None:
        """The earliest verify occurrence of any policy."""
        with self._session() as session:
            found: datetime | None = session.scalar(select(func.min(PolicyRow.verify_next_at)))
            return found

    def verify_next_at(self, policy_id: str) -> datetime | None:
        with self._session() as session:
            found: datetime | None = session.scalar(
                select(PolicyRow.verify_next_at).where(PolicyRow.id == policy_id)
            )
            return found

    def last_policy_verification(self, policy_id: str) -> tuple[str, Verification] | None:
        """The policy's most recent verification: (backup id, verdict)."""
        with self._session() as session:
            row = session.scalars(
                select(BackupRow)
                .where(BackupRow.policy_id == policy_id, BackupRow.verified_at.is_not(None))
                .order_by(BackupRow.verified_at.desc(), BackupRow.id)
                .limit(1)
            ).first()
            if row is None:
                return None
            verification = verification_from_row(row)
            return (row.id, verification) if verification else None

    def newest_verifications(self) -> list[TargetVerification]:
        """The newest verification of each target of each policy.

        Forgotten backups count: a backup that failed verification and was then rotated
        away still says the target's newest verification failed, until a later one passes.
        Backups of no policy (manual ones, a deleted policy's) are not watched."""
        with self._session() as session:
            rows = session.execute(
                select(
                    BackupRow.id,
                    BackupRow.target,
                    BackupRow.target_name,
                    BackupRow.policy_id,
                    BackupRow.verify_result,
                    BackupRow.verify_reason,
                    BackupRow.verified_at,
                    BackupRow.verify_active_seconds,
                    BackupRow.verify_restore_id,
                )
                .where(
                    BackupRow.verified_at.is_not(None),
                    BackupRow.verify_result.is_not(None),
                    BackupRow.policy_id.is_not(None),
                )
                .order_by(BackupRow.verified_at.desc(), BackupRow.id)
            ).all()
        newest: dict[tuple[str, str], TargetVerification] = {}
        for row in rows:
            key = (row.policy_id, row.target)
            if key in newest:
                continue
            newest[key] = TargetVerification(
                backup_id=row.id,
                target=row.target,
                target_name=row.target_name,
                policy_id=row.policy_id,
                verification=Verification(
                    result=VerifyResult(row.verify_result),
                    at=row.verified_at,
                    reason=row.verify_reason,
                    active_seconds=row.verify_active_seconds,
                    restore_id=row.verify_restore_id,
                ),
            )
        return list(newest.values())


def _crons(session: Session, policy_id: str) -> list[str]:
    return list(
        session.scalars(
            select(ScheduleRow.cron)
            .where(ScheduleRow.policy_id == policy_id)
            .order_by(ScheduleRow.position)
        )
    )
