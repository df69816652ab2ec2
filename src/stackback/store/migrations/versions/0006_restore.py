"""Restores: what a restore needs, recorded with each backup, and recorded restore jobs.

``backups.restore_source`` holds the source server's flavor, networks, security
groups, key pair, zone, metadata and volumes at backup time (JSON; NULL for
backups taken before, which restore with what the cloud still knows).
``restores`` holds restore jobs like ``runs`` holds runs: state, plan, the
journal of steps, what it created, and a lease fenced by ``attempt``. A partial
index on the backups of active restores lets retention skip them cheaply.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackback.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIVE_RESTORES_SQL = "state IN ('pending', 'running', 'cleaning')"


def upgrade() -> None:
    op.add_column("backups", sa.Column("restore_source", sa.JSON(), nullable=True))
    op.create_table(
        "restores",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("backup_id", sa.String(36), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cloud", sa.String(255), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("server_id", sa.String(255), nullable=True),
        sa.Column("created", sa.JSON(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_id", sa.String(32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("deadline_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["backup_id"],
            ["backups.id"],
            name="fk_restores_backup_id_backups",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_restores"),
    )
    op.create_index("ix_restores_backup_id", "restores", ["backup_id"])
    op.create_index("ix_restores_claimable", "restores", ["state", "not_before"])
    op.create_index(
        "ix_restores_active_backup",
        "restores",
        ["backup_id"],
        sqlite_where=sa.text(ACTIVE_RESTORES_SQL),
        postgresql_where=sa.text(ACTIVE_RESTORES_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_restores_active_backup", table_name="restores")
    op.drop_index("ix_restores_claimable", table_name="restores")
    op.drop_index("ix_restores_backup_id", table_name="restores")
    op.drop_table("restores")
    op.drop_column("backups", "restore_source")
