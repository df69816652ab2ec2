"""Restore jobs carry their project, as runs and backups do.

``restores.project``: the project of the restored backup, set when the job is created, so
that lists and id (or id prefix) lookups of restores are scoped without a join. Backfilled
here from the backup's project, which decided who saw a restore until now; a job whose
backup has none stays of no project (seen only by whoever sees every project).

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

#: Only from the backup: until now a restore was seen by its backup's project (a join), and
#: a new job takes its backup's project; a run's or policy's would widen who sees it.
_BACKFILL = "SELECT backups.project FROM backups WHERE backups.id = restores.backup_id"


def upgrade() -> None:
    op.add_column("restores", sa.Column("project", sa.String(255), nullable=True))
    op.execute(f"UPDATE restores SET project = ({_BACKFILL})")
    op.create_index("ix_restores_project_page", "restores", ["project", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_restores_project_page", table_name="restores")
    op.drop_column("restores", "project")
