"""Alerts: what was last told per (subject, condition), and every delivery with its status.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackback.store.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("subject", sa.String(600), nullable=False),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("target_name", sa.String(255), nullable=True),
        sa.Column("policy_id", sa.String(36), nullable=True),
        sa.Column("policy", sa.String(255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "condition", name="pk_alert_states"),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(600), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
    )
    op.create_index("ix_alert_deliveries_at", "alert_deliveries", ["at"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_at", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_states")
