"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, insert, select

from stackback.errors import Conflict, NotMigrated, SchemaTooNew
from stackback.store.database import (
    create_db_engine,
    current_revision,
    downgrade,
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


def test_schema_newer_than_this_code_is_refused_not_migrated(db_url: str) -> None:
    """A revision unknown here was written by a newer stackback: upgrading stackback helps."""
    engine = create_db_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
        newer = f"revision 0099, newer than .* knows up to {head_revision()}: upgrade stackback$"
        with pytest.raises(SchemaTooNew, match=newer):
            ensure_migrated(engine)
        with pytest.raises(SchemaTooNew, match=newer):
            upgrade(engine)
        with pytest.raises(SchemaTooNew, match=newer):
            downgrade(engine, "0001")
        assert current_revision(engine) == "0099"
    finally:
        engine.dispose()


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


TABLES = ("policies", "schedules", "runs", "run_steps", "backups", "artifacts")


def test_migrating_a_populated_database_keeps_every_row(db_url: str) -> None:
    """Up from 0001 and back: no row of any table is lost (SQLite rebuilds cascade deletes)."""
    engine = create_db_engine(db_url)
    try:
        upgrade(engine, "0001")
        now = datetime(2026, 3, 1, tzinfo=UTC)
        tables = {name: Table(name, MetaData(), autoload_with=engine) for name in TABLES}
        with engine.begin() as connection:
            connection.execute(
                insert(tables["policies"]),
                [
                    {
                        "id": "p1",
                        "name": "nightly",
                        "kind": "server-image",
                        "targets": ["srv"],
                        "timezone": "UTC",
                        "window_minutes": 30,
                        "retention": {"last": 3},
                        "enabled": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
            connection.execute(
                insert(tables["schedules"]),
                [{"policy_id": "p1", "position": 0, "cron": "0 1 * * *", "next_fire_at": now}],
            )
            connection.execute(
                insert(tables["runs"]),
                [
                    {
                        "id": "r1",
                        "policy_id": "p1",
                        "target": "srv",
                        "scheduled_for": now,
                        "due_at": now,
                        "state": "succeeded",
                        "attempt": 1,
                        "trigger": "schedule",
                        "created_at": now,
                    }
                ],
            )
            connection.execute(
                insert(tables["run_steps"]),
                [
                    {
                        "run_id": "r1",
                        "name": "snapshot",
                        "attempt": 1,
                        "started_at": now,
                        "outcome": "ok",
                        "detail": "",
                    }
                ],
            )
            connection.execute(
                insert(tables["backups"]),
                [
                    {
                        "id": f"b{n}",
                        "policy_id": "p1",
                        "run_id": "r1" if n == 1 else None,
                        "target": "srv",
                        "kind": "server-image",
                        "status": "deleting" if n == 2 else "available",
                        "protected": False,
                        "reasons": [],
                        "created_at": now,
                        "completed_at": now,
                    }
                    for n in (1, 2)
                ],
            )
            connection.execute(
                insert(tables["artifacts"]),
                [
                    {
                        "id": f"a{n}",
                        "backup_id": f"b{n}",
                        "kind": "image",
                        "cloud_id": f"img-{n}",
                        "status": "available",
                        "delete_attempts": 0,
                        "created_at": now,
                    }
                    for n in (1, 2)
                ],
            )
        counts = {name: _count(engine, name) for name in TABLES}
        assert counts == {"policies": 1, "schedules": 1, "runs": 1, "run_steps": 1} | {
            "backups": 2,
            "artifacts": 2,
        }

        upgrade(engine)
        assert {name: _count(engine, name) for name in TABLES} == counts
        with engine.connect() as connection:
            guarded = connection.exec_driver_sql(
                "SELECT id FROM backups WHERE deletion_guarded ORDER BY id"
            ).scalars()
            assert list(guarded) == ["b2"]  # the deletion in flight must spare the last good one
        with engine.begin() as connection:  # an occurrence waiting for its selector (0004)
            connection.exec_driver_sql(
                "UPDATE schedules SET deferred_fire_at = next_fire_at, next_fire_at = NULL"
            )

        downgrade(engine, "0003")
        with engine.connect() as connection:  # without deferrals it is simply due again
            due = connection.execute(select(tables["schedules"].c.next_fire_at)).scalar_one()
            assert due is not None
            assert (due.astimezone(UTC) if due.tzinfo else due.replace(tzinfo=UTC)) == now
        downgrade(engine, "0001")
        assert {name: _count(engine, name) for name in TABLES} == counts
        upgrade(engine)
        assert {name: _count(engine, name) for name in TABLES} == counts
    finally:
        engine.dispose()


def test_runs_in_flight_at_the_upgrade_to_0005_hold_their_server(db_url: str) -> None:
    """A new run of a server a run is backing up during the upgrade must wait for it."""
    engine = create_db_engine(db_url)
    try:
        upgrade(engine, "0004")
        now = datetime(2026, 3, 1, tzinfo=UTC)
        later = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
        tables = {name: Table(name, MetaData(), autoload_with=engine) for name in TABLES}
        run = {
            "policy_id": None,
            "scheduled_for": now,
            "due_at": now,
            "attempt": 1,
            "trigger": "manual",
            "created_at": now,
        }
        with engine.begin() as connection:
            connection.execute(
                insert(tables["runs"]),
                [
                    {**run, "id": "r1", "target": "web", "state": "waiting", "started_at": now},
                    # a second run of that server, started later (possible before 0005)
                    {
                        **run,
                        "id": "r2",
                        "target": "web2",
                        "state": "waiting",
                        "started_at": later,
                    },
                    {**run, "id": "r3", "target": "db", "state": "succeeded", "started_at": now},
                ],
            )
            connection.execute(
                insert(tables["backups"]),
                [
                    {
                        "id": f"b-{run_id}",
                        "run_id": run_id,
                        "target": "srv-id",
                        "kind": "server-image",
                        "status": "creating" if run_id != "r3" else "available",
                        "protected": False,
                        "reasons": [],
                        "created_at": now,
                    }
                    for run_id in ("r1", "r2", "r3")
                ],
            )
        upgrade(engine)
        with engine.connect() as connection:
            runs = Table("runs", MetaData(), autoload_with=engine)
            server_ids = dict(connection.execute(select(runs.c.id, runs.c.server_id)).all())
        assert server_ids == {"r1": "srv-id", "r2": None, "r3": None}
        store = SqlStore(engine)
        new = store.create_manual_run(target="srv-id", now=now, label="m", retention=None)
        claimed_all = store.claim_runs(now, "w", lease_seconds=60, limit=10)
        [claimed] = [r for r in claimed_all if r.id == new.id]
        with pytest.raises(Conflict):
            store.update_run(new.id, claimed.attempt, state="snapshotting", server_id="srv-id")
    finally:
        engine.dispose()
