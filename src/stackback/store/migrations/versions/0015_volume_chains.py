"""Volume policies' chains: ``policies.full_every`` and ``policies.full_cron``.

A ``volume-backup`` policy takes incremental Cinder backups between full ones: a full
every N backups, or whenever its own cron fires. NULL for both (every existing policy):
every backup is a full one.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("policies", sa.Column("full_every", sa.Integer(), nullable=True))
    op.add_column("policies", sa.Column("full_cron", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("policies", "full_cron")
    op.drop_column("policies", "full_every")
