"""Credentials: the Keystone trusts and application credentials policies act through.

A policy created through the API names one in its ``cloud`` (``credential:<id>``); an
application credential's secret is stored sealed (Fernet), never in clear.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackback.store.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("keystone_id", sa.String(64), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_credentials"),
    )
    op.create_index("ix_credentials_project_id", "credentials", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_credentials_project_id", table_name="credentials")
    op.drop_table("credentials")
