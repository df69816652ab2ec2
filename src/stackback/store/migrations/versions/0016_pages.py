"""An index for the pages of one policy's runs: (policy_id, scheduled_for, id).

The run list filtered by policy had only ``ix_runs_policy_id``: PostgreSQL read and sorted
every run of the policy for each page. (The keyset predicate itself changed in the store:
``scheduled_for <= marker`` bounds the index scan, so a page deep into any list reads only
its own rows and the ties of its first time.)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_policy_page", "runs", ["policy_id", "scheduled_for", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_policy_page", table_name="runs")
