"""Recorded hosts say their kind: ``host:NAME`` or ``hostid:HASH`` (``ports.host_key``).

Runs recorded before kept Nova's bare value: the admin's host name, or the tenant's
``hostId``. A ``hostId`` is a SHA-224 hex digest (56 hex digits); anything else was a
name. Rewritten so that a run started before the upgrade still counts against its
host's limit after it. Values already prefixed are left as they are.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_HOST_ID = re.compile(r"[0-9a-f]{56}")
_PREFIXES = ("host:", "hostid:")


def upgrade() -> None:
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("host", sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(runs.c.id, runs.c.host).where(runs.c.host.is_not(None)))
    for run_id, host in list(rows):
        if host.startswith(_PREFIXES):
            continue
        keyed = ("hostid:" if _HOST_ID.fullmatch(host) else "host:") + host
        connection.execute(sa.update(runs).where(runs.c.id == run_id).values(host=keyed[:255]))


def downgrade() -> None:
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("host", sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(runs.c.id, runs.c.host).where(runs.c.host.is_not(None)))
    for run_id, host in list(rows):
        for prefix in _PREFIXES:
            if host.startswith(prefix):
                bare = host[len(prefix) :]
                connection.execute(sa.update(runs).where(runs.c.id == run_id).values(host=bare))
                break
