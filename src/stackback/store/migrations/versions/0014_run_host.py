"""The compute host of a run's server (``runs.host``), for a per-host snapshot limit.

Learnt when the run first tries to start (Nova's ``hostId``, or the host name
where the credentials are an admin's). A partial index over the runs whose
snapshot is in progress keeps counting a host's snapshots cheap in the claim.
NULL for every existing run.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SNAPSHOT_STATES_SQL = "state IN ('snapshotting', 'waiting')"


def upgrade() -> None:
    op.add_column("runs", sa.Column("host", sa.String(255), nullable=True))
    op.create_index(
        "ix_runs_snapshotting_host",
        "runs",
        ["host"],
        sqlite_where=sa.text(SNAPSHOT_STATES_SQL),
        postgresql_where=sa.text(SNAPSHOT_STATES_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_snapshotting_host", table_name="runs")
    op.drop_column("runs", "host")
