"""Restore jobs carry their backup's project; lists and id (prefix) lookups are scoped by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from stackback.errors import InvalidInput, NotFound
from stackback.policy import Backup, BackupKind, BackupStatus
from stackback.restoreplan import RestoreJob, RestoreMode, RestorePlan
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import SqlStore
from stackback.store.sql.base import new_id

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINE = "abcdef01-0000-4000-8000-000000000001"
THEIRS = "abcdef02-0000-4000-8000-000000000002"


def _restore(
    store: SqlStore, project: str | None, backup_id: str, *, minutes: int = 0
) -> RestoreJob:
    store.ensure_backup(
        Backup(
            id=backup_id,
            target="srv",
            kind=BackupKind.SERVER_IMAGE,
            status=BackupStatus.AVAILABLE,
            created_at=NOW,
            project=project,
        )
    )
    at = NOW + timedelta(minutes=minutes)
    plan = RestorePlan(mode=RestoreMode.AS_NEW, name="srv-restore", flavor="m1.small")
    return store.create_restore(
        backup_id=backup_id, plan=plan, cloud=None, now=at, deadline_at=at + timedelta(hours=1)
    )


@pytest.fixture
def two_projects(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> tuple[RestoreJob, RestoreJob]:
    """alpha's and beta's restores, whose ids share their first six characters."""
    ids = iter([MINE, THEIRS])
    monkeypatch.setattr("stackback.store.sql.restores.new_id", lambda: next(ids, None) or new_id())
    mine = _restore(store, "alpha", "b-alpha")
    theirs = _restore(store, "beta", "b-beta", minutes=1)
    return mine, theirs


def test_a_restore_carries_its_backups_project(
    store: SqlStore, two_projects: tuple[RestoreJob, RestoreJob]
) -> None:
    mine, theirs = two_projects
    assert (mine.project, theirs.project) == ("alpha", "beta")
    assert store.get_restore(mine.id).project == "alpha"
    assert _restore(store, None, "b-none", minutes=2).project is None


def test_a_restore_id_prefix_is_looked_up_within_the_project(
    store: SqlStore, two_projects: tuple[RestoreJob, RestoreJob]
) -> None:
    mine, theirs = two_projects
    assert store.get_restore("abcdef", project="alpha").id == mine.id
    assert store.get_restore("abcdef", project="beta").id == theirs.id
    with pytest.raises(InvalidInput, match="several restore ids"):  # unscoped: ambiguous
        store.get_restore("abcdef")
    for ref in (theirs.id, "abcdef02", "abcdef02-0000"):
        with pytest.raises(NotFound) as hidden:
            store.get_restore(ref, project="alpha")
        with pytest.raises(NotFound) as missing:  # told exactly as one that does not exist
            store.get_restore(ref.replace("abcdef02", "abcdef09"), project="alpha")
        assert str(hidden.value) == str(missing.value).replace("abcdef09", "abcdef02")
    with pytest.raises(NotFound):
        store.get_restore(mine.id, project="gamma")


def test_a_restore_is_cancelled_only_within_the_project(
    store: SqlStore, two_projects: tuple[RestoreJob, RestoreJob]
) -> None:
    mine, theirs = two_projects
    with pytest.raises(NotFound):
        store.request_restore_cancel("abcdef02", project="alpha")
    assert not store.get_restore(theirs.id).cancel_requested
    assert store.request_restore_cancel("abcdef", project="alpha").id == mine.id
    assert store.get_restore(mine.id).cancel_requested


def test_restore_lists_and_pages_are_scoped_by_project(
    store: SqlStore, two_projects: tuple[RestoreJob, RestoreJob]
) -> None:
    mine, theirs = two_projects
    more = _restore(store, "alpha", "b-alpha-2", minutes=2)
    assert [j.id for j in store.list_restores(project="alpha")] == [more.id, mine.id]
    assert [j.id for j in store.list_restores(project="beta")] == [theirs.id]
    assert len(store.list_restores()) == 3
    first = store.list_restores(project="alpha", limit=1)
    assert [j.id for j in store.list_restores(project="alpha", marker=first[0].id)] == [mine.id]
    with pytest.raises(InvalidInput):  # another project's job is no marker of alpha's list
        store.list_restores(project="alpha", marker=theirs.id)


def test_migration_backfills_the_project_of_existing_restores(tmp_path: object) -> None:
    """From the backup's project only (who saw a restore until now), never its run's or its
    policy's, which could widen who sees it."""
    engine = create_db_engine(f"sqlite:///{tmp_path}/old.db")
    upgrade(engine, "0018")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO policies (id, name, kind, project, targets, timezone, window_minutes,"
                " retention, enabled, created_at, updated_at) VALUES ('p1', 'a', 'server-image',"
                " 'gamma', '[]', 'UTC', 0, '{}', 1, '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO runs (id, policy_id, target, scheduled_for, due_at, state, attempt,"
                " \"trigger\", created_at, project) VALUES ('r2', NULL, 's', '2026-01-01',"
                " '2026-01-01', 'succeeded', 1, 'manual', '2026-01-01', 'beta')"
            )
        )
        for backup, run, policy, project in (
            ("b1", "NULL", "NULL", "'alpha'"),
            ("b2", "'r2'", "NULL", "NULL"),
            ("b3", "NULL", "'p1'", "NULL"),
            ("b4", "NULL", "NULL", "NULL"),
        ):
            connection.execute(
                text(
                    "INSERT INTO backups (id, run_id, policy_id, target, kind, status, protected,"
                    f" project, reasons, created_at) VALUES ('{backup}', {run}, {policy}, 's',"
                    f" 'server-image', 'available', 0, {project}, '[]', '2026-01-01')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO restores (id, backup_id, mode, state, plan, created, steps,"
                    " attempt, cancel_requested, deadline_at, created_at) VALUES"
                    f" ('j-{backup}', '{backup}', 'as-new', 'succeeded', '{{}}', '[]', '[]', 1,"
                    " 0, '2026-01-01', '2026-01-01')"
                )
            )
    upgrade(engine)
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, project FROM restores")).all())
    engine.dispose()
    assert rows == {"j-b1": "alpha", "j-b2": None, "j-b3": None, "j-b4": None}
