"""Counts for metrics: runs by policy and state, backups kept and protected, the queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from stackback.policy import BackupStatus, RunState
from stackback.store.models import ArtifactRow, BackupRow, PolicyRow, RunRow
from stackback.store.sql.base import SqlBase


class StatsStore(SqlBase):
    """Aggregates read in one query each (a scrape must stay cheap at 100,000 runs)."""

    def run_counts(self) -> list[tuple[str | None, str, int]]:
        """(policy name, run state, how many runs) over the whole catalogue."""
        with self._session() as session:
            rows = session.execute(
                select(RunRow.policy_name, RunRow.state, func.count()).group_by(
                    RunRow.policy_name, RunRow.state
                )
            )
            return [(policy, state, int(count)) for policy, state, count in rows]

    def backup_counts(self) -> list[tuple[str | None, bool, int]]:
        """(policy name, protected, how many good backups)."""
        with self._session() as session:
            rows = session.execute(
                select(PolicyRow.name, BackupRow.protected, func.count())
                .select_from(BackupRow)
                .outerjoin(PolicyRow, PolicyRow.id == BackupRow.policy_id)
                .where(BackupRow.status == BackupStatus.AVAILABLE.value)
                .group_by(PolicyRow.name, BackupRow.protected)
            )
            return [(policy, bool(protected), int(count)) for policy, protected, count in rows]

    def backup_bytes(self) -> list[tuple[str | None, int]]:
        """(policy name, bytes of the good backups' artifacts whose size the cloud reports)."""
        with self._session() as session:
            rows = session.execute(
                select(PolicyRow.name, func.sum(ArtifactRow.size))
                .select_from(ArtifactRow)
                .join(BackupRow, BackupRow.id == ArtifactRow.backup_id)
                .outerjoin(PolicyRow, PolicyRow.id == BackupRow.policy_id)
                .where(
                    BackupRow.status == BackupStatus.AVAILABLE.value,
                    ArtifactRow.size.is_not(None),
                )
                .group_by(PolicyRow.name)
            )
            return [(policy, int(total or 0)) for policy, total in rows]

    def queue_depth(self, now: datetime) -> tuple[int, datetime | None]:
        """Pending runs already due, and the oldest one's due time (the queue's lag)."""
        with self._session() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(RunRow.due_at)).where(
                    RunRow.state == RunState.PENDING.value, RunRow.due_at <= now
                )
            ).one()
            return int(count), oldest
