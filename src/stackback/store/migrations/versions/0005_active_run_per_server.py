"""One active run per server, whatever name or id each run's target was given as.

A policy may name a server (``--server web``) while another, a selector or a
``backup now <id>``, reaches the same server by its id. The start step now
records the server id it resolved in ``runs.server_id``, and a partial unique
index on it refuses a second active run of that server, as
``uq_runs_one_active_per_target`` does for equal target strings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACTIVE_STATES_SQL = "state IN ('snapshotting', 'waiting', 'rotating')"


def upgrade() -> None:
    op.add_column("runs", sa.Column("server_id", sa.String(255), nullable=True))
    op.create_index(
        "uq_runs_one_active_per_server",
        "runs",
        ["server_id"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_STATES_SQL),
        postgresql_where=sa.text(ACTIVE_STATES_SQL),
    )


def downgrade() -> None:
    op.drop_index("uq_runs_one_active_per_server", table_name="runs")
    op.drop_column("runs", "server_id")
