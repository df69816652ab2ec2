"""Restore jobs carry their project, as runs and backups do.

``restores.project``: the project of the restored backup, set when the job is created, so
that lists and id (or id prefix) lookups of restores are scoped without a join. Backfilled
here from the backup's project, else its run's, else its policy's; a job none of them
names stays of no project (seen only by whoever sees every project).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_BACKFILL = (
    "SELECT backups.project FROM backups WHERE backups.id = restores.backup_id",
    "SELECT runs.project FROM runs JOIN backups ON backups.run_id = runs.id"
    " WHERE backups.id = restores.backup_id",
    "SELECT policies.project FROM policies JOIN backups ON backups.policy_id = policies.id"
    " WHERE backups.id = restores.backup_id",
)


def upgrade() -> None:
    op.add_column("restores", sa.Column("project", sa.String(255), nullable=True))
    for source in _BACKFILL:
        op.execute(f"UPDATE restores SET project = ({source}) WHERE project IS NULL")
    op.create_index("ix_restores_project_page", "restores", ["project", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_restores_project_page", table_name="restores")
    op.drop_column("restores", "project")
