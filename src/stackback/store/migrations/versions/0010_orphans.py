"""When the source is gone: each policy's orphan rule, and when each backup's server was seen.

``policies.orphans`` (``keep``, ``expire-after DURATION``, ``keep-last N``; existing
policies keep everything); ``backups.source_last_seen_at`` (when the server was last
seen to exist) and ``source_gone_at`` (when it was first found gone: the backup is
orphaned), both NULL until stackback checks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackback.store.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "policies", sa.Column("orphans", sa.String(64), nullable=False, server_default="keep")
    )
    op.add_column("backups", sa.Column("source_last_seen_at", UTCDateTime(), nullable=True))
    op.add_column("backups", sa.Column("source_gone_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("backups", "source_gone_at")
    op.drop_column("backups", "source_last_seen_at")
    op.drop_column("policies", "orphans")
