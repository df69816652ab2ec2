"""Deferred occurrences: a selector the cloud could not answer is asked again.

When resolving a policy's selector fails with a transient cloud error (5xx,
timeout), the scheduler keeps the occurrence in ``schedules.deferred_fire_at``
and moves ``next_fire_at`` to the time it asks again, with backoff, until the
start window closes. The due and idle queries stay on the ``next_fire_at``
index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackback.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("deferred_fire_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    schedules = sa.table(
        "schedules",
        sa.column("next_fire_at", UTCDateTime()),
        sa.column("deferred_fire_at", UTCDateTime()),
    )
    # The older schema has no deferral: the occurrence becomes due again as it was.
    op.execute(
        schedules.update()
        .where(schedules.c.deferred_fire_at.is_not(None))
        .values(next_fire_at=schedules.c.deferred_fire_at)
    )
    op.drop_column("schedules", "deferred_fire_at")
