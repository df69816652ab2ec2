"""Whole-server backups: each policy's consistency level, and the level each backup obtained.

``policies.consistency`` (crash, paused, quiesced), ``consistency_fallback`` (crash,
fail) and ``max_pause_seconds``; ``backups.consistency`` and ``consistency_detail``
(NULL for backups that are not whole-server backups, and for those taken before).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "policies", sa.Column("consistency", sa.String(16), nullable=False, server_default="crash")
    )
    op.add_column(
        "policies",
        sa.Column("consistency_fallback", sa.String(16), nullable=False, server_default="crash"),
    )
    op.add_column(
        "policies",
        sa.Column("max_pause_seconds", sa.Integer(), nullable=False, server_default="60"),
    )
    op.add_column("backups", sa.Column("consistency", sa.String(16), nullable=True))
    op.add_column("backups", sa.Column("consistency_detail", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("backups", "consistency_detail")
    op.drop_column("backups", "consistency")
    op.drop_column("policies", "max_pause_seconds")
    op.drop_column("policies", "consistency_fallback")
    op.drop_column("policies", "consistency")
