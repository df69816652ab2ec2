"""Smoke test: the private PostgreSQL fixture gives a working, empty database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


def test_postgres_url_roundtrip_and_skip_locked(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            # A fresh database: no tables of ours yet.
            assert sa.inspect(conn).get_table_names() == []
            conn.exec_driver_sql("CREATE TABLE jobs (id integer PRIMARY KEY, state text NOT NULL)")
            conn.execute(
                sa.text("INSERT INTO jobs (id, state) VALUES (:id, 'queued')"),
                [{"id": i} for i in (1, 2, 3)],
            )

        claim = sa.text(
            "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        with engine.connect() as first, engine.connect() as second:
            tx1 = first.begin()
            tx2 = second.begin()
            got1 = first.execute(claim).scalar_one()
            # The row locked by the first session is skipped, not waited for.
            got2 = second.execute(claim).scalar_one()
            assert (got1, got2) == (1, 2)
            first.execute(sa.text("UPDATE jobs SET state = 'running' WHERE id = :id"), {"id": got1})
            tx1.commit()
            tx2.rollback()

        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, state FROM jobs ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(1, "running"), (2, "queued"), (3, "queued")]
            version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
            assert int(version) >= 130000  # DROP DATABASE ... WITH (FORCE) needs 13+
    finally:
        engine.dispose()
