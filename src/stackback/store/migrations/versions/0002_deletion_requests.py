"""Deletion requests: which run asked for a deletion, and whether it must spare the last good one.

``deletion_run_id`` names the run whose retention marked a backup ``deleting``,
so a run resumed after a crash counts what it already forgot against its
deletion budget. ``deletion_guarded`` says the deletion must leave the target
another good backup; the collector re-checks it just before deleting.
Deletions already in progress on backups that had completed become guarded
(including a forced one still in flight: the collector may then refuse it and
restore the backup, the safe side).

Columns are added with plain ``ALTER TABLE`` (no batch table rebuild): on
SQLite a rebuild drops ``backups``, and with foreign keys on that cascades to
every artifact row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("backups", sa.Column("deletion_run_id", sa.String(36), nullable=True))
    op.add_column(
        "backups",
        sa.Column("deletion_guarded", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_backups_deletion_run_id", "backups", ["deletion_run_id"])
    backups = sa.table(
        "backups",
        sa.column("status", sa.String),
        sa.column("completed_at", sa.String),
        sa.column("deletion_guarded", sa.Boolean),
    )
    op.execute(
        backups.update()
        .where(backups.c.status == "deleting", backups.c.completed_at.is_not(None))
        .values(deletion_guarded=True)
    )


def downgrade() -> None:
    op.drop_index("ix_backups_deletion_run_id", table_name="backups")
    op.drop_column("backups", "deletion_guarded")
    op.drop_column("backups", "deletion_run_id")
