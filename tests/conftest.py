"""Fixtures shared by the whole suite: databases (SQLite and a real PostgreSQL) and stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackback.clock import VirtualClock
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import SqlStore

pytest_plugins = ["tests.support.fixtures"]

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's real state directory or database."""
    state = tmp_path / "state"
    monkeypatch.setenv("STACKBACK_STATE_DIR", str(state))
    monkeypatch.delenv("STACKBACK_DB", raising=False)
    monkeypatch.delenv("OS_CLOUD", raising=False)
    monkeypatch.delenv("STACKBACK_CLOUD", raising=False)
    return state


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite file, or a database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stackback.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    """A migrated store on each backend."""
    engine = create_db_engine(db_url)
    upgrade(engine)
    sql_store = SqlStore(engine)
    try:
        yield sql_store
    finally:
        sql_store.dispose()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)
