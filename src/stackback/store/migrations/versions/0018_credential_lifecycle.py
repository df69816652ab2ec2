"""Credentials retire before they are revoked: a deleted policy's credential is kept while
its backups still need it (to be rotated, deleted or restored), and revoked with the last.

``credentials.retired_at`` records when its last policy went; ``ix_backups_cloud`` finds the
backups a credential's cloud (``credential:<id>``) still names.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackback.store.types import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("retired_at", UTCDateTime(), nullable=True))
    op.create_index("ix_backups_cloud", "backups", ["cloud"])


def downgrade() -> None:
    """A retired credential becomes active again (as it was before: kept for its backups)."""
    op.drop_index("ix_backups_cloud", table_name="backups")
    op.execute("UPDATE credentials SET state = 'active' WHERE state = 'retired'")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("retired_at")
