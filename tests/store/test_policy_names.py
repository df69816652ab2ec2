"""Policy names are unique within a project; lookups by name or id prefix are scoped by it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from stackback.errors import Conflict, InvalidInput, NotFound
from stackback.policy import Backup, BackupKind, BackupStatus, Policy
from stackback.retention import RetentionPolicy
from stackback.store.sql import SqlStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _policy(name: str, project: str | None) -> Policy:
    return Policy(
        id=str(uuid.uuid4()),
        name=name,
        kind=BackupKind.SERVER_IMAGE,
        schedules=("0 * * * *",),
        timezone="UTC",
        retention=RetentionPolicy(last=3),
        targets=("srv-1",),
        project=project,
    )


def test_two_projects_have_a_policy_of_the_same_name(store: SqlStore) -> None:
    alpha = store.create_policy(_policy("nightly", "alpha"), [None], now=NOW)
    beta = store.create_policy(_policy("nightly", "beta"), [None], now=NOW)
    assert store.get_policy("nightly", project="alpha").id == alpha.id
    assert store.get_policy("nightly", project="beta").id == beta.id
    assert store.get_policy(beta.id).id == beta.id
    with pytest.raises(NotFound):  # another project's policy, even by its id
        store.get_policy(beta.id, project="alpha")
    with pytest.raises(NotFound):
        store.get_policy("nightly", project="gamma")
    with pytest.raises(InvalidInput, match="give the policy's id") as ambiguous:
        store.get_policy("nightly")  # no project given: which one?
    assert alpha.id in str(ambiguous.value) and beta.id in str(ambiguous.value)

    with pytest.raises(Conflict):  # still unique within a project
        store.create_policy(_policy("nightly", "alpha"), [None], now=NOW)
    weekly = store.create_policy(_policy("weekly", "alpha"), [None], now=NOW)
    with pytest.raises(Conflict):
        store.update_policy(_policy_named(weekly, "nightly"), None, now=NOW)
    other = store.create_policy(_policy("weekly", "beta"), [None], now=NOW)
    assert store.update_policy(_policy_named(other, "renamed"), None, now=NOW).name == "renamed"


def _policy_named(policy: Policy, name: str) -> Policy:
    return replace(policy, name=name)


def test_policies_of_no_project_keep_one_name_each(store: SqlStore) -> None:
    store.create_policy(_policy("nightly", None), [None], now=NOW)
    store.create_policy(_policy("nightly", "alpha"), [None], now=NOW)
    with pytest.raises(Conflict):
        store.create_policy(_policy("nightly", None), [None], now=NOW)


@pytest.mark.parametrize("project", ["alpha", None])
def test_the_database_holds_names_unique_within_a_project(
    store: SqlStore, project: str | None
) -> None:
    """The unique indexes, not only the store's check (two writers could race past it)."""
    store.create_policy(_policy("nightly", project), [None], now=NOW)
    insert = text(
        "INSERT INTO policies (id, name, kind, project, targets, timezone, window_minutes,"
        " retention, enabled, created_at, updated_at) VALUES (:id, 'nightly', 'server-image',"
        " :project, '[]', 'UTC', 0, '{}', :enabled, :at, :at)"
    )
    values = {"id": str(uuid.uuid4()), "project": project, "enabled": True, "at": NOW}
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(insert, values)
    with store.engine.begin() as connection:  # another project's is fine
        connection.execute(insert, {**values, "project": "beta"})


def test_every_projects_policies_page_through_repeated_names(store: SqlStore) -> None:
    made = [
        store.create_policy(_policy(name, project), [None], now=NOW)
        for name, project in (("b", "alpha"), ("a", "beta"), ("a", "alpha"), ("a", "gamma"))
    ]
    everything = store.list_policies()
    assert [p.name for p in everything] == ["a", "a", "a", "b"]
    pages, marker = [], None
    while page := store.list_policies(limit=1, marker=marker):
        pages.append(page[0].id)
        marker = page[0].id
    assert pages == [p.id for p in everything]
    assert {p.id for p in everything} == {p.id for p in made}


def _backup(backup_id: str, project: str) -> Backup:
    return Backup(
        id=backup_id,
        target="srv",
        kind=BackupKind.SERVER_IMAGE,
        status=BackupStatus.AVAILABLE,
        created_at=NOW,
        project=project,
    )


def test_an_id_prefix_is_looked_up_within_the_project(store: SqlStore) -> None:
    mine = store.ensure_backup(_backup("abcdef01-0000-4000-8000-000000000001", "alpha"))
    theirs = store.ensure_backup(_backup("abcdef02-0000-4000-8000-000000000002", "beta"))
    assert store.get_backup("abcdef", project="alpha").id == mine.id
    assert store.get_backup("abcdef", project="beta").id == theirs.id
    with pytest.raises(InvalidInput):  # unscoped (the CLI's): ambiguous, as before
        store.get_backup("abcdef")
    with pytest.raises(NotFound):
        store.get_backup(theirs.id, project="alpha")
    with pytest.raises(NotFound):
        store.get_backup("abcdef02", project="alpha")


def test_a_run_id_prefix_is_looked_up_within_the_project(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["fedcba01-0000-4000-8000-000000000001", "fedcba02-0000-4000-8000-000000000002"])
    monkeypatch.setattr("stackback.store.sql.runs.new_id", lambda: next(ids))
    alpha = store.create_policy(_policy("a", "alpha"), [None], now=NOW)
    beta = store.create_policy(_policy("b", "beta"), [None], now=NOW)
    mine = store.create_manual_run(target="x", now=NOW, label=None, retention=None, policy=alpha)
    theirs = store.create_manual_run(target="y", now=NOW, label=None, retention=None, policy=beta)
    assert store.get_run("fedcba", project="alpha").id == mine.id
    assert store.get_run("fedcba", project="beta").id == theirs.id
    with pytest.raises(InvalidInput):
        store.get_run("fedcba")
    with pytest.raises(NotFound):
        store.get_run(theirs.id, project="alpha")
