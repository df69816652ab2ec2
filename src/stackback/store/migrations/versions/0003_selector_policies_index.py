"""A partial index of the policies that have a selector.

Before each tick the scheduler resolves the selectors of the due selector
policies, outside any lock; the index keeps that query to those few policies
instead of a scan of every policy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

WHERE = sa.text("selector_key IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_policies_with_selector",
        "policies",
        ["id"],
        sqlite_where=WHERE,
        postgresql_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_policies_with_selector", table_name="policies")
