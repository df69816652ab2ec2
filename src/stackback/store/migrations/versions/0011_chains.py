"""Backup chains: ``backups.parent_id``, the backup an incremental backup builds on.

Cinder and Trove incremental backups depend on their parent; retention must keep a
kept backup's ancestors and forget a chain newest first. NULL for full backups and
for kinds without chains (every existing backup).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("backups", sa.Column("parent_id", sa.String(36), nullable=True))
    op.create_index("ix_backups_parent_id", "backups", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_backups_parent_id", table_name="backups")
    op.drop_column("backups", "parent_id")
