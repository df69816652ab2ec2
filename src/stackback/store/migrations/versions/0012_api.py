"""The API's project isolation and keyset pages.

``runs.project``: the project of the run's policy (set when the run is created, backfilled
here from the policy, or from the run's backup for a run whose policy is gone). Indexes for
the lists the API pages through with ``limit`` and ``marker``: runs by (scheduled_for, id),
backups by (created_at, id), restores by (created_at, id), policies by (project, name), each
also within a project.

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

_INDEXES = (
    ("ix_runs_page", "runs", ["scheduled_for", "id"]),
    ("ix_runs_project_page", "runs", ["project", "scheduled_for", "id"]),
    ("ix_backups_page", "backups", ["created_at", "id"]),
    ("ix_backups_project_page", "backups", ["project", "created_at", "id"]),
    ("ix_restores_page", "restores", ["created_at", "id"]),
    ("ix_policies_project_name", "policies", ["project", "name"]),
)


def upgrade() -> None:
    op.add_column("runs", sa.Column("project", sa.String(255), nullable=True))
    op.execute(
        "UPDATE runs SET project = (SELECT policies.project FROM policies "
        "WHERE policies.id = runs.policy_id) WHERE policy_id IS NOT NULL"
    )
    op.execute(
        "UPDATE runs SET project = (SELECT backups.project FROM backups "
        "WHERE backups.run_id = runs.id) WHERE project IS NULL"
    )
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_column("runs", "project")
