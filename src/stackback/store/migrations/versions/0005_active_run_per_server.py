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


ACTIVE_STATES = ("snapshotting", "waiting", "rotating")


def upgrade() -> None:
    op.add_column("runs", sa.Column("server_id", sa.String(255), nullable=True))
    _fill_in_runs_in_flight()
    op.create_index(
        "uq_runs_one_active_per_server",
        "runs",
        ["server_id"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_STATES_SQL),
        postgresql_where=sa.text(ACTIVE_STATES_SQL),
    )


def _fill_in_runs_in_flight() -> None:
    """Runs active during the upgrade get the server their backup record names, so that a new
    run of that server waits for them (the earliest started first, should there be two)."""
    runs = sa.table(
        "runs", sa.column("id"), sa.column("state"), sa.column("server_id"), sa.column("started_at")
    )
    backups = sa.table("backups", sa.column("run_id"), sa.column("target"))
    connection = op.get_bind()
    in_flight = connection.execute(
        sa.select(runs.c.id, backups.c.target)
        .join(backups, backups.c.run_id == runs.c.id)
        .where(runs.c.state.in_(ACTIVE_STATES))
        .order_by(runs.c.started_at, runs.c.id)
    ).all()
    taken: set[str] = set()
    for run_id, server_id in in_flight:
        if server_id not in taken:
            taken.add(server_id)
            connection.execute(runs.update().where(runs.c.id == run_id).values(server_id=server_id))


def downgrade() -> None:
    op.drop_index("uq_runs_one_active_per_server", table_name="runs")
    op.drop_column("runs", "server_id")
