"""Trove database backups on the simulator: markers in the description, full and incremental
chains with the parent named by stackback, a resumed run that finds its own backup, foreign
backups never touched, and no parent deleted under a backup built on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from stackback.chains import FOREIGN_CHILD
from stackback.databases import read_markers
from stackback.engine import databases as databases_module
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudBusy, InvalidInput
from stackback.policy import ArtifactKind, Backup, BackupStatus, Policy, Run, RunState
from stackback.ports import MARKER_BACKUP, MARKER_POLICY, MARKER_RUN, ArtifactRef
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from stackback.services.reconcile import Reconciler
from stackback.store.sql import BackupFilter, RunFilter
from tests.engine.conftest import Rig
from tests.engine.test_reconcile_markers import lose_the_database

DAY = timedelta(days=1)


def db_policy(rig: Rig, target: str, **asked: object) -> Policy:
    return rig.policies.create(
        PolicySpec(
            name=f"db{len(rig.policies.list_policies())}",
            targets=(target,),
            kind="database-backup",
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=30),
            **asked,  # type: ignore[arg-type]
        )
    )


def runs(rig: Rig) -> list[Run]:
    return sorted(rig.store.list_runs(RunFilter(limit=1000)), key=lambda r: r.scheduled_for)


def backups(rig: Rig) -> list[Backup]:
    found = rig.store.list_backups(BackupFilter(limit=None))
    return sorted(found, key=lambda b: b.created_at)


def trove_id(backup: Backup) -> str:
    (artifact,) = backup.artifacts
    assert artifact.kind is ArtifactKind.DATABASE_BACKUP
    return artifact.cloud_id


def test_a_database_backup_carries_its_markers_in_its_description(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    policy = db_policy(rig, "orders")
    rig.engine.drain(rig.clock.now() + DAY)
    (run,) = runs(rig)
    assert run.state is RunState.SUCCEEDED, run.error
    (backup,) = backups(rig)
    assert backup.kind.value == "database-backup" and backup.target == db.id
    assert backup.status is BackupStatus.AVAILABLE and backup.parent_id is None
    (info,) = rig.sim.database_backups(db.id)
    assert info.raw_status == "COMPLETED"
    assert info.metadata[MARKER_BACKUP] == backup.id
    assert info.metadata[MARKER_RUN] == run.id
    assert info.metadata[MARKER_POLICY] == policy.id
    steps = [s.name for s in rig.store.get_run(run.id).steps]
    assert steps.index("stamp") < steps.index("snapshot")


def test_incrementals_name_the_chain_tip_and_every_nth_is_full(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    db_policy(rig, db.id, full_every=3)
    rig.engine.drain(rig.clock.now() + 5 * DAY)
    made = backups(rig)
    assert len(made) == 5 and all(b.status is BackupStatus.AVAILABLE for b in made)
    assert [b.parent_id for b in made] == [None, made[0].id, made[1].id, None, made[3].id]
    infos = {i.ref.id: i for i in rig.sim.database_backups(db.id)}
    for backup in made:  # Trove's parent_id is the parent's Trove backup, as recorded
        parent = infos[trove_id(backup)].parent
        expected = (
            None if backup.parent_id is None else trove_id(rig.store.get_backup(backup.parent_id))
        )
        assert (parent.id if parent else None) == expected


def test_the_full_cron_makes_a_weekly_full_and_daily_incrementals(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    db_policy(rig, db.id, full_cron="30 0 * * 0")  # Sundays 00:30
    rig.engine.drain(rig.clock.now() + 14 * DAY)
    fulls = [b for b in backups(rig) if b.parent_id is None]
    weekdays = {b.created_at.weekday() for b in fulls[1:]}
    assert len(fulls) in (2, 3) and weekdays == {6}  # the first, then each Sunday


def test_a_failed_full_makes_the_next_backup_full_again(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    db_policy(rig, db.id, full_every=2)
    rig.engine.drain(rig.clock.now() + 2 * DAY)  # a full, an incremental
    rig.sim.kill_next_database_backup(db.id)
    rig.engine.drain(rig.clock.now() + DAY)  # the full is due: it fails
    failed = backups(rig)[-1]
    assert failed.status is BackupStatus.FAILED and failed.parent_id is None
    rig.engine.drain(rig.clock.now() + DAY)
    again = backups(rig)[-1]
    assert again.status is BackupStatus.AVAILABLE and again.parent_id is None


class Crash(BaseException):
    """The worker dies here: nothing after this point runs, nothing is recorded."""


@pytest.fixture
def crash_after_create(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    armed = ["after-create-database-backup"]

    def failpoint(name: str) -> None:
        if name in armed:
            armed.remove(name)
            raise Crash(name)

    monkeypatch.setattr(databases_module, "failpoint", failpoint)
    yield armed


def test_a_run_resumed_after_the_create_request_finds_its_backup(
    rig: Rig, crash_after_create: list[str]
) -> None:
    db = rig.sim.create_database("orders")
    db_policy(rig, db.id)
    doomed = Engine(rig.store, lambda _n: rig.sim, rig.clock, EngineSettings(), worker_name="x")
    with pytest.raises(Crash):
        doomed.drain(rig.clock.now() + DAY)
    assert len(rig.sim.database_backups(db.id)) == 1
    (crashed,) = runs(rig)
    assert crashed.state is RunState.SNAPSHOTTING
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    done = rig.store.get_run(crashed.id)
    assert done.state is RunState.SUCCEEDED, done.error
    (info,) = rig.sim.database_backups(db.id)
    (backup,) = backups(rig)
    assert trove_id(backup) == info.ref.id and info.metadata[MARKER_BACKUP] == backup.id


def test_a_foreign_backup_is_never_counted_nor_deleted(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    db_policy(rig, db.id, full_every=2)
    rig.engine.drain(rig.clock.now() + DAY)
    (first,) = backups(rig)
    rig.clock.advance(300)
    fake = "stackback backup full backup=not-a-uuid run=x policy=y"
    users = rig.sim.add_foreign_database_backup(db.id, "user's", description=fake)
    assert read_markers(fake) == {}
    rig.clock.advance(3600)
    rig.engine.drain(rig.clock.now() + DAY)
    second = backups(rig)[1]
    assert second.parent_id == first.id  # the chain's tip, not the user's newer backup
    assert users in {i.ref.id for i in rig.sim.database_backups(db.id)}
    assert users not in {a.cloud_id for b in backups(rig) for a in b.artifacts}


def test_a_parent_is_not_deleted_under_a_backup_built_on_it(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    db_policy(rig, db.id, full_every=5)
    rig.engine.drain(rig.clock.now() + DAY)
    (full,) = backups(rig)
    rig.clock.advance(3600)
    users = rig.sim.add_foreign_database_backup(db.id, "user incr", parent_id=trove_id(full))
    rig.clock.advance(3600)
    rig.store.update_backup(full.id, status=BackupStatus.DELETING, deletion_guarded=False)
    rig.engine.collector.collect([rig.store.get_backup(full.id)])
    alive = {i.ref.id for i in rig.sim.database_backups(db.id)}
    assert {trove_id(full), users} <= alive
    held = rig.store.get_backup(full.id)  # given back, held: not retried at every poll
    assert held.status is BackupStatus.AVAILABLE
    assert FOREIGN_CHILD in (held.error or "") and users in (held.error or "")


def test_deleting_a_trove_backup_deletes_its_descendants(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    full = rig.sim.add_foreign_database_backup(db.id, "full")
    rig.clock.advance(3600)
    child = rig.sim.add_foreign_database_backup(db.id, "incr", parent_id=full)
    rig.clock.advance(3600)
    with pytest.raises(CloudBusy):  # a backup is refused while the instance takes another
        rig.sim.start_database_backup(db.id, name="a", description="a", parent_id=None)
        rig.sim.start_database_backup(db.id, name="b", description="b", parent_id=None)
    rig.clock.advance(3600)
    grandchild = rig.sim.add_foreign_database_backup(db.id, "incr2", parent_id=child)
    rig.clock.advance(3600)
    rig.sim.delete_artifact(ArtifactRef(ArtifactKind.DATABASE_BACKUP, child))
    left = {i.ref.id for i in rig.sim.database_backups(db.id)}
    assert full in left and child not in left and grandchild not in left


def test_a_database_selector_takes_instances_by_datastore_and_name(rig: Rig) -> None:
    rig.sim.create_database("orders", datastore="mysql", version="8.0")
    rig.sim.create_database("events", datastore="postgresql", version="13")
    rig.sim.create_database("orders-test", datastore="postgresql", version="13")
    rig.policies.create(
        PolicySpec(
            name="pg",
            selector="datastore=postgresql",
            kind="database-backup",
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=3),
        )
    )
    rig.policies.create(
        PolicySpec(
            name="orders",
            selector="name=orders*",
            kind="database-backup",
            schedules=("0 2 * * *",),
            retention=RetentionPolicy(last=3),
        )
    )
    rig.engine.drain(rig.clock.now() + DAY)
    taken = {(r.policy_name, r.target_name) for r in runs(rig)}
    assert taken == {
        ("pg", "events"),
        ("pg", "orders-test"),
        ("orders", "orders"),
        ("orders", "orders-test"),
    }
    assert all(r.state is RunState.SUCCEEDED for r in runs(rig))


def test_a_database_selector_names_what_it_can_select(rig: Rig) -> None:
    with pytest.raises(InvalidInput, match="datastore"):
        rig.policies.create(
            PolicySpec(
                name="bad",
                selector="backup=nightly",
                kind="database-backup",
                schedules=("0 1 * * *",),
                retention=RetentionPolicy(last=3),
            )
        )
    with pytest.raises(InvalidInput, match="full-every"):
        rig.policies.create(
            PolicySpec(
                name="bad",
                targets=("web",),
                schedules=("0 1 * * *",),
                retention=RetentionPolicy(last=3),
                full_every=3,
            )
        )


def test_reconcile_brings_back_database_backups_with_their_chain(rig: Rig, tmp_path: Path) -> None:
    db = rig.sim.create_database("orders")
    rig.sim.add_foreign_database_backup(db.id, "user's", description="nightly by hand")
    rig.clock.advance(3600)
    db_policy(rig, db.id, full_every=3)
    rig.engine.drain(rig.clock.now() + 3 * DAY)
    made = {b.id: b for b in backups(rig)}
    fresh = lose_the_database(rig, tmp_path)
    try:
        report = Reconciler(fresh, rig.sim, rig.clock, cloud_name=None).run(apply=True)
        assert set(report.imported) == set(made)  # never the user's backup
        for backup_id, backup in made.items():
            back = fresh.get_backup(backup_id)
            assert back.kind.value == "database-backup"
            assert back.parent_id == backup.parent_id
    finally:
        fresh.dispose()
