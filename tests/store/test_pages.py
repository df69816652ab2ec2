"""Keyset pages and project filters of the store's lists (what the API's lists are)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from stackback.engine.scheduler import Scheduler
from stackback.errors import InvalidInput
from stackback.policy import Backup, BackupKind, BackupStatus, Policy, Run
from stackback.ports import Cloud
from stackback.records import BackupFilter, RunFilter
from stackback.retention import RetentionPolicy
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import SqlStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _policy(name: str, project: str | None, target: str = "srv-1") -> Policy:
    return Policy(
        id=str(uuid.uuid4()),
        name=name,
        kind=BackupKind.SERVER_IMAGE,
        schedules=("0 * * * *",),
        timezone="UTC",
        retention=RetentionPolicy(last=3),
        targets=(target,),
        project=project,
    )


def _pages_of_runs(store: SqlStore, size: int, **criteria: object) -> list[list[Run]]:
    pages, marker = [], None
    while True:
        page = store.list_runs(RunFilter(limit=size, marker=marker, **criteria))  # type: ignore[arg-type]
        if not page:
            return pages
        pages.append(page)
        marker = page[-1].id


def test_run_pages_are_stable_through_equal_times_and_scoped_by_project(store: SqlStore) -> None:
    alpha = store.create_policy(_policy("a", "alpha"), [None], now=NOW)
    beta = store.create_policy(_policy("b", "beta", "srv-2"), [None], now=NOW)
    made = []
    for index in range(7):  # pairs of runs share their scheduled time
        at = NOW + timedelta(minutes=index // 2)
        made.append(
            store.create_manual_run(
                target=f"t{index}", now=at, label=None, retention=None, policy=alpha
            )
        )
    other = store.create_manual_run(target="x", now=NOW, label=None, retention=None, policy=beta)
    assert {run.project for run in made} == {"alpha"} and other.project == "beta"

    everything = store.list_runs(RunFilter(project="alpha"))
    assert [r.id for r in everything] == [
        r.id for r in sorted(made, key=lambda r: (-r.scheduled_for.timestamp(), r.id))
    ]
    pages = _pages_of_runs(store, 3, project="alpha")
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [r.id for p in pages for r in p] == [r.id for r in everything]
    assert other.id in {r.id for r in store.list_runs(RunFilter())}

    in_window = store.list_runs(
        RunFilter(
            project="alpha", since=NOW + timedelta(minutes=1), until=NOW + timedelta(minutes=3)
        )
    )
    assert {r.scheduled_for for r in in_window} == {NOW + timedelta(minutes=m) for m in (1, 2)}
    with pytest.raises(InvalidInput):  # another project's run is no marker of alpha's list
        store.list_runs(RunFilter(project="alpha", marker=other.id))
    with pytest.raises(InvalidInput):
        store.list_runs(RunFilter(marker="nope"))


def test_backup_pages_and_projects(store: SqlStore) -> None:
    made = []
    for index in range(5):
        made.append(
            store.ensure_backup(
                Backup(
                    id=str(uuid.uuid4()),
                    target="srv",
                    kind=BackupKind.SERVER_IMAGE,
                    status=BackupStatus.AVAILABLE,
                    created_at=NOW + timedelta(minutes=index // 2),
                    project="alpha" if index != 4 else "beta",
                )
            )
        )
    alpha = store.list_backups(BackupFilter(project="alpha"))
    assert {b.id for b in alpha} == {b.id for b in made[:4]}
    first = store.list_backups(BackupFilter(project="alpha", limit=3))
    rest = store.list_backups(BackupFilter(project="alpha", limit=3, marker=first[-1].id))
    assert [b.id for b in first + rest] == [b.id for b in alpha]
    assert store.list_backups(BackupFilter(since=NOW + timedelta(minutes=2))) == [made[4]]
    with pytest.raises(InvalidInput):
        store.list_backups(BackupFilter(project="alpha", marker=made[4].id))


def test_policy_pages_by_name_within_a_project(store: SqlStore) -> None:
    for name in ("d", "b", "a", "c"):
        store.create_policy(_policy(name, "alpha", f"srv-{name}"), [None], now=NOW)
    store.create_policy(_policy("aa", "beta", "srv-x"), [None], now=NOW)
    first = store.list_policies(project="alpha", limit=3)
    assert [p.name for p in first] == ["a", "b", "c"]
    assert [p.schedules for p in first] == [("0 * * * *",)] * 3
    rest = store.list_policies(project="alpha", limit=3, marker=first[-1].id)
    assert [p.name for p in rest] == ["d"]
    assert [p.name for p in store.list_policies()] == ["a", "aa", "b", "c", "d"]


def _no_cloud(cloud: str | None) -> Cloud:
    raise AssertionError("no selector here")


def test_scheduled_runs_carry_their_policys_project(store: SqlStore) -> None:
    policy = store.create_policy(_policy("a", "alpha"), [NOW], now=NOW - timedelta(days=1))
    assert Scheduler(store, _no_cloud).tick(NOW).runs == 1
    (run,) = store.list_runs(RunFilter(policy_id=policy.id))
    assert run.project == "alpha"


def test_migration_backfills_the_project_of_existing_runs(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_db_engine(url)
    upgrade(engine, "0011")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO policies (id, name, kind, project, targets, timezone, window_minutes,"
                " retention, enabled, created_at, updated_at) VALUES ('p1', 'a', 'server-image',"
                " 'alpha', '[]', 'UTC', 0, '{}', 1, '2026-01-01', '2026-01-01')"
            )
        )
        for run_id, policy in (("r1", "'p1'"), ("r2", "NULL")):
            connection.execute(
                text(
                    "INSERT INTO runs (id, policy_id, target, scheduled_for, due_at, state,"
                    ' attempt, "trigger", created_at) VALUES'
                    f" ('{run_id}', {policy}, 's', '2026-01-01', '2026-01-01', 'succeeded', 1,"
                    " 'manual', '2026-01-01')"
                )
            )
        connection.execute(
            text(
                "INSERT INTO backups (id, run_id, target, kind, status, protected, project,"
                " reasons, created_at) VALUES ('b2', 'r2', 's', 'server-image', 'available',"
                " 0, 'beta', '[]', '2026-01-01')"
            )
        )
    upgrade(engine)
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, project FROM runs")).all())
    engine.dispose()
    assert rows == {"r1": "alpha", "r2": "beta"}
