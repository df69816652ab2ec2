"""Retention over Trove backup chains, through ``safety.plan_rotation`` and the engine on the
simulator: a kept incremental keeps its ancestors ("for the chain"), a parent is never deleted
under a kept child, and a user's incremental on a stackback backup holds its chain (and says
so, with the user's backup id) without the collector waking at every poll."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest

from stackback.chains import FOR_THE_CHAIN, FOREIGN_CHILD, ancestors
from stackback.errors import Conflict
from stackback.policy import (
    Artifact,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    Policy,
)
from stackback.records import TargetBackups
from stackback.retention import Duration, RetentionPolicy
from stackback.safety import RotationRequest, RotationScope, plan_rotation
from stackback.services.backups import BackupService
from stackback.services.policies import PolicySpec
from stackback.store.sql import BackupFilter
from tests.engine.conftest import Rig
from tests.engine.test_databases import DAY, backups, runs, trove_id

T0 = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)


def keep_last_one(rig: Rig, target: str, full_every: int) -> Policy:
    return rig.policies.create(
        PolicySpec(
            name="orders",
            targets=(target,),
            kind="database-backup",
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=1),
            full_every=full_every,
        )
    )


def dbackup(backup_id: str, day: int, parent: str | None = None) -> Backup:
    artifact = Artifact(
        id=f"a-{backup_id}",
        backup_id=backup_id,
        kind=ArtifactKind.DATABASE_BACKUP,
        cloud_id=f"trove-{backup_id}",
        status=ArtifactStatus.AVAILABLE,
    )
    return Backup(
        id=backup_id,
        target="db-1",
        kind=BackupKind.DATABASE_BACKUP,
        status=BackupStatus.AVAILABLE,
        created_at=T0 + timedelta(days=day),
        policy_id="p1",
        policy_name="orders",
        artifacts=(artifact,),
        parent_id=parent,
    )


def plan(rules: RetentionPolicy, *chain: Backup) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    ordered = tuple(sorted(chain, key=lambda b: b.created_at, reverse=True))
    request = RotationRequest(
        rules=rules, now=T0 + timedelta(days=3), scope=RotationScope(policy_id="p1")
    )
    made = plan_rotation(request, TargetBackups("db-1", ordered))
    return {b.id: reasons for b, reasons in made.keep}, [b.id for b in made.forget]


def test_keep_last_one_keeps_the_whole_chain_of_the_newest() -> None:
    full, inc1, inc2 = dbackup("F", 0), dbackup("I1", 1, "F"), dbackup("I2", 2, "I1")
    kept, forgotten = plan(RetentionPolicy(last=1), full, inc1, inc2)
    assert forgotten == []
    assert kept == {"I2": ("last",), "I1": (FOR_THE_CHAIN,), "F": (FOR_THE_CHAIN,)}


def test_a_rule_that_keeps_only_the_newest_increment_never_forgets_its_parents() -> None:
    full, inc1, inc2 = dbackup("F", 0), dbackup("I1", 1, "F"), dbackup("I2", 2, "I1")
    older = dbackup("old", -30)
    for rules in (
        RetentionPolicy(within=Duration.parse("12h")),
        RetentionPolicy(daily=1),
        RetentionPolicy(last=1),
    ):
        kept, forgotten = plan(rules, older, full, inc1, inc2)
        assert forgotten == ["old"], rules
        assert kept["F"] == kept["I1"] == (FOR_THE_CHAIN,), rules


def test_a_failed_increment_is_forgotten_just_before_its_parent() -> None:
    full, newer = dbackup("F", 0), dbackup("F2", 2)
    failed = replace(dbackup("I", 1, "F"), status=BackupStatus.FAILED)
    request = RotationRequest(
        rules=RetentionPolicy(last=1), now=T0 + timedelta(days=3), scope=RotationScope("p1")
    )
    made = plan_rotation(request, TargetBackups("db-1", (newer, failed, full)))
    assert [b.id for b in made.forget] == ["I", "F"]
    marked = {c.backup_id: c for c in made.changes}
    assert marked["I"].status is BackupStatus.DELETING
    assert "failed incremental of F" in marked["I"].reasons[0]
    assert marked["F"].status is BackupStatus.DELETING


def test_a_protected_failed_increment_holds_its_parent() -> None:
    full, newer = dbackup("F", 0), dbackup("F2", 2)
    failed = replace(dbackup("I", 1, "F"), status=BackupStatus.FAILED, protected=True)
    request = RotationRequest(
        rules=RetentionPolicy(last=1), now=T0 + timedelta(days=3), scope=RotationScope("p1")
    )
    made = plan_rotation(request, TargetBackups("db-1", (newer, failed, full)))
    assert made.forget == ()
    assert [(b.id, "depending on it" in why) for b, why in made.held] == [("F", True)]


def test_on_the_simulator_keep_last_one_keeps_full_and_increments(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    keep_last_one(rig, db.id, 7)
    rig.engine.drain(rig.clock.now() + 3 * DAY)
    assert all(r.error is None for r in runs(rig))
    full, inc1, inc2 = backups(rig)
    assert (inc1.parent_id, inc2.parent_id) == (full.id, inc1.id)
    assert {b.status for b in (full, inc1, inc2)} == {BackupStatus.AVAILABLE}
    assert full.reasons == inc1.reasons == (FOR_THE_CHAIN,)
    assert "last" in inc2.reasons
    alive = {i.ref.id for i in rig.sim.database_backups(db.id)}
    assert {trove_id(b) for b in (full, inc1, inc2)} <= alive


def test_a_parent_is_never_deleted_under_a_kept_child(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    keep_last_one(rig, db.id, 3)
    rig.engine.drain(rig.clock.now() + 8 * DAY)  # F I I F I I F I: the last chain is kept
    everything = rig.store.list_backups(BackupFilter(include_deleted=True, limit=None))
    alive = [b for b in everything if b.status is BackupStatus.AVAILABLE]
    gone = [b for b in everything if b.status is BackupStatus.DELETED]
    assert len(alive) == 2 and len(gone) == 6, [(b.status, b.parent_id) for b in everything]
    in_trove = {i.ref.id for i in rig.sim.database_backups(db.id)}
    for kept in alive:
        assert trove_id(kept) in in_trove
        for parent in ancestors(kept, everything):
            assert parent.status is BackupStatus.AVAILABLE, "a kept backup lost its parent"
            assert parent.reasons == (FOR_THE_CHAIN,)
            assert trove_id(parent) in in_trove
    (parent,) = [b for b in alive if b.parent_id is None]
    service = BackupService(rig.store, lambda _name: rig.sim, rig.clock)
    with pytest.raises(Conflict, match="incremental backups depending on it"):
        service.delete(parent.id, force=True)  # not even the operator's --force
    assert trove_id(parent) in {i.ref.id for i in rig.sim.database_backups(db.id)}


def test_a_users_incremental_holds_the_chain_and_says_so(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    policy = keep_last_one(rig, db.id, 3)
    rig.engine.drain(rig.clock.now() + 3 * DAY)  # F, I1, I2
    full, inc1, inc2 = backups(rig)
    rig.clock.advance(3600)
    users = rig.sim.add_foreign_database_backup(db.id, "user incr", parent_id=trove_id(inc2))
    rig.engine.drain(rig.clock.now() + 2 * DAY)  # a new full: the old chain is forgotten
    chain = [rig.store.get_backup(b.id) for b in (full, inc1, inc2)]
    assert [b.status for b in chain] == [BackupStatus.AVAILABLE] * 3
    held = chain[-1].error
    assert held is not None and FOREIGN_CHILD in held and users in held
    in_trove = {i.ref.id for i in rig.sim.database_backups(db.id)}
    assert users in in_trove and {trove_id(b) for b in chain} <= in_trove
    assert rig.store.backups_to_collect(limit=10) == [], "a held chain is not retried each poll"
    rows = BackupService(rig.store, lambda _name: rig.sim, rig.clock).preview(policy.id)
    reasons = {r.backup.id: r.reasons for r in rows if r.action == "keep"}
    assert {b.id for b in chain} <= set(reasons)
    assert reasons[inc2.id] == (FOREIGN_CHILD,)
    assert reasons[inc1.id] == reasons[full.id] == (FOR_THE_CHAIN,)


def test_a_failed_trove_incremental_goes_before_its_parent_when_the_chain_goes(rig: Rig) -> None:
    """Trove lists a FAILED incremental among its parent's dependents (and would delete it
    with the parent): stackback deletes its own failed child first, then the parent, with no
    failure surfacing and nothing left to retry."""
    db = rig.sim.create_database("orders")
    keep_last_one(rig, db.id, 2)
    rig.engine.drain(rig.clock.now() + DAY)  # F
    (full,) = backups(rig)
    rig.sim.kill_next_database_backup(db.id)
    rig.engine.drain(rig.clock.now() + DAY)  # its incremental fails in Trove
    failed = backups(rig)[-1]
    assert failed.status is BackupStatus.FAILED and failed.parent_id == full.id
    dependents = {i.ref.id: i.dependents for i in rig.sim.database_backups(db.id)}
    assert [d.id for d in dependents[trove_id(full)]] == [trove_id(failed)]
    with patch("stackback.engine.collector.log") as collector_log:
        rig.engine.drain(rig.clock.now() + 3 * DAY)  # a new chain: the first goes
    assert rig.store.get_backup(full.id).status is BackupStatus.DELETED
    gone = rig.store.get_backup(failed.id)
    assert gone.status is BackupStatus.DELETED and "failed incremental" in gone.reasons[0]
    in_trove = {i.ref.id for i in rig.sim.database_backups(db.id)}
    assert not {trove_id(full), trove_id(failed)} & in_trove
    alive = [b for b in backups(rig) if b.status is not BackupStatus.DELETED]
    assert alive and all(b.status is BackupStatus.AVAILABLE and b.error is None for b in alive)
    assert rig.store.backups_to_collect(limit=10) == []
    assert [c for c in collector_log.warning.call_args_list] == []


def test_the_preview_shows_a_failed_incremental_going_with_its_parent(rig: Rig) -> None:
    db = rig.sim.create_database("orders")
    policy = rig.policies.create(
        PolicySpec(
            name="orders",
            targets=(db.id,),
            kind="database-backup",
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=5),
            full_every=2,
        )
    )
    rig.engine.drain(rig.clock.now() + DAY)  # F
    rig.sim.kill_next_database_backup(db.id)
    rig.engine.drain(rig.clock.now() + 3 * DAY)  # I fails, I2 on F, then a new full
    full, failed, inc, newer = backups(rig)
    assert failed.status is BackupStatus.FAILED and failed.parent_id == full.id
    assert inc.parent_id == full.id and newer.parent_id is None
    rig.store.update_policy(
        replace(policy, retention=RetentionPolicy(last=1)), None, now=rig.clock.now()
    )
    rows = BackupService(rig.store, lambda _name: rig.sim, rig.clock).preview(policy.id)
    assert {r.backup.id for r in rows if r.action == "forget"} == {full.id, failed.id, inc.id}
