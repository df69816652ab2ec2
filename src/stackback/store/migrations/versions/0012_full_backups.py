"""When a chain kind's backup is full: ``policies.full_every`` and ``policies.full_cron``.

Database (Trove) and volume (Cinder) backups can be incremental; a policy takes a
full backup every N backups or on a cron of its own, incrementals between. NULL
for every existing policy (every backup full, as before).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("policies", sa.Column("full_every", sa.Integer(), nullable=True))
    op.add_column("policies", sa.Column("full_cron", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("policies", "full_cron")
    op.drop_column("policies", "full_every")
