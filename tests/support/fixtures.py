"""pytest fixtures for a real PostgreSQL server.

Register with ``pytest_plugins = ["tests.support.fixtures"]`` in ``tests/conftest.py``.

* ``pg_cluster`` (session): one private server for the whole run (see
  :class:`tests.support.pgcluster.PgCluster`), or the server named by
  ``STACKBACK_TEST_PG_URL``.
* ``postgres_url`` (function): a fresh, empty database per test, as a SQLAlchemy URL
  (``postgresql+psycopg://...``); dropped after the test.

If PostgreSQL cannot be started the tests that need it *fail*: a missing database must
not silently turn into a green run.  Set ``STACKBACK_SKIP_POSTGRES=1`` to skip them
deliberately instead.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator

import pytest

from tests.support.pgcluster import PgCluster

SKIP_ENV = "STACKBACK_SKIP_POSTGRES"

_counter = itertools.count(1)


def _skip_requested() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if _skip_requested():
        pytest.skip(f"PostgreSQL tests disabled by {SKIP_ENV}=1")
    cluster = PgCluster()
    error: str | None = None
    try:
        cluster.start()
    except Exception as exc:
        cluster.stop()
        error = f"{type(exc).__name__}: {exc}"
    if error is not None:
        # Outside the except block, so the report is just this message.
        pytest.fail(
            f"could not start PostgreSQL for the tests: {error}\n"
            f"(set {SKIP_ENV}=1 to skip PostgreSQL tests instead)",
            pytrace=False,
        )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new empty database, unique to this test."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40].strip("_")
    name = f"t_{stem}_{os.getpid()}_{next(_counter)}"[:63]
    url = pg_cluster.create_database(name)
    try:
        yield url
    finally:
        pg_cluster.drop_database(name)
