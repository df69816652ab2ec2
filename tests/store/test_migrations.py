"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from stackback.errors import NotMigrated
from stackback.store.database import (
    create_db_engine,
    current_revision,
    ensure_migrated,
    head_revision,
    upgrade,
)
from stackback.store.models import Base
from stackback.store.sql import SqlStore


def test_upgrade_head_matches_models(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        before, after = upgrade(engine)
        assert (before, after) == (None, head_revision())
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        upgrade(engine)
        assert upgrade(engine) == (head_revision(), head_revision())
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_store_refuses_unmigrated_database(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        with pytest.raises(NotMigrated, match="stackback db upgrade"):
            ensure_migrated(engine)
        with pytest.raises(NotMigrated):
            SqlStore(engine)
    finally:
        engine.dispose()
