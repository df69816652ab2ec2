"""Verification: a policy's verify schedule, each backup's last verification, and the
verdict of a verify job.

``policies.verify_*`` hold the verify cron, the flavor and network of the throwaway
server, which backup an occurrence picks, and when the cron next fires
(``verify_next_at``, NULL: no verify schedule or the policy is disabled).
``backups.verify_*`` / ``verified_at`` hold the last verification's verdict, reason and
time to ACTIVE; ``restores.verify_*`` / ``active_seconds`` the same for one job.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackback.store.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("policies", sa.Column("verify_cron", sa.String(255), nullable=True))
    op.add_column("policies", sa.Column("verify_flavor", sa.String(255), nullable=True))
    op.add_column("policies", sa.Column("verify_network", sa.String(255), nullable=True))
    op.add_column("policies", sa.Column("verify_pick", sa.String(32), nullable=True))
    op.add_column("policies", sa.Column("verify_next_at", UTCDateTime(), nullable=True))
    op.create_index("ix_policies_verify_next_at", "policies", ["verify_next_at"])
    op.add_column("backups", sa.Column("verify_result", sa.String(16), nullable=True))
    op.add_column("backups", sa.Column("verify_reason", sa.Text(), nullable=True))
    op.add_column("backups", sa.Column("verified_at", UTCDateTime(), nullable=True))
    op.add_column("backups", sa.Column("verify_active_seconds", sa.Float(), nullable=True))
    op.add_column("backups", sa.Column("verify_restore_id", sa.String(36), nullable=True))
    op.add_column("restores", sa.Column("verify_result", sa.String(16), nullable=True))
    op.add_column("restores", sa.Column("verify_reason", sa.Text(), nullable=True))
    op.add_column("restores", sa.Column("active_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("restores", "active_seconds")
    op.drop_column("restores", "verify_reason")
    op.drop_column("restores", "verify_result")
    op.drop_column("backups", "verify_restore_id")
    op.drop_column("backups", "verify_active_seconds")
    op.drop_column("backups", "verified_at")
    op.drop_column("backups", "verify_reason")
    op.drop_column("backups", "verify_result")
    op.drop_index("ix_policies_verify_next_at", table_name="policies")
    op.drop_column("policies", "verify_next_at")
    op.drop_column("policies", "verify_pick")
    op.drop_column("policies", "verify_network")
    op.drop_column("policies", "verify_flavor")
    op.drop_column("policies", "verify_cron")
