"""One contract for the SQL store, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
import warnings
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from stackback.clock import VirtualClock
from stackback.errors import Conflict, InvalidInput, LeaseLost, NotFound
from stackback.policy import (
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    Policy,
    RunState,
)
from stackback.records import BackupChange, TargetBackups
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.store.sql import (
    BackupFilter,
    DueSchedule,
    NewRun,
    RunFilter,
    SqlStore,
    StepNote,
    TickPlan,
)

T0 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)


def make_policy(name: str = "nightly", targets: tuple[str, ...] = ("srv-1",)) -> Policy:
    return Policy(
        id=str(uuid.uuid4()),
        name=name,
        kind=BackupKind.SERVER_IMAGE,
        schedules=("0 1 * * *", "0 13 * * *"),
        timezone="Europe/Amsterdam",
        retention=RetentionPolicy(daily=7, weekly=4),
        targets=targets,
    )


def test_policy_round_trip(store: SqlStore) -> None:
    policy = make_policy()
    created = store.create_policy(policy, [T0, T0 + timedelta(hours=12)], now=T0)
    assert created.created_at == T0
    by_name, by_id = store.get_policy("nightly"), store.get_policy(policy.id)
    assert by_name == by_id
    assert by_name.schedules == ("0 1 * * *", "0 13 * * *")
    assert by_name.retention == RetentionPolicy(daily=7, weekly=4)
    assert by_name.targets == ("srv-1",)
    assert by_name.created_at is not None and by_name.created_at.tzinfo is not None
    states = store.schedules(policy.id)
    assert [s.next_fire_at for s in states] == [T0, T0 + timedelta(hours=12)]
    assert all(s.next_fire_at and s.next_fire_at.utcoffset() == timedelta(0) for s in states)


def test_aware_timestamps_in_other_zones_are_stored_as_the_same_instant(store: SqlStore) -> None:
    local = datetime(2026, 3, 1, 2, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    policy = make_policy()
    store.create_policy(policy, [local, None], now=T0)
    assert store.schedules(policy.id)[0].next_fire_at == T0


def test_duplicate_policy_name_conflicts(store: SqlStore) -> None:
    store.create_policy(make_policy(), [T0, T0], now=T0)
    with pytest.raises(Conflict):
        store.create_policy(make_policy(), [T0, T0], now=T0)
    assert len(store.list_policies()) == 1


def test_unknown_policy_is_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFound):
        store.get_policy("missing")
    with pytest.raises(NotFound):
        store.delete_policy("missing", now=T0)


def test_update_replaces_schedules_and_keeps_untouched_state(store: SqlStore) -> None:
    policy = make_policy()
    store.create_policy(policy, [T0, T0 + timedelta(hours=12)], now=T0)
    changed = Policy(**{**policy.__dict__, "schedules": ("0 13 * * *", "30 6 * * 1")})
    store.update_policy(changed, [T0 + timedelta(hours=1), T0 + timedelta(days=2)], now=T0)
    assert store.get_policy(policy.id).schedules == ("0 13 * * *", "30 6 * * 1")
    assert [s.cron for s in store.schedules(policy.id)] == ["0 13 * * *", "30 6 * * 1"]
    renamed = Policy(**{**changed.__dict__, "name": "renamed"})
    store.update_policy(renamed, None, now=T0)
    assert store.get_policy("renamed").id == policy.id
    assert store.schedules(policy.id)[1].next_fire_at == T0 + timedelta(days=2)


def _planner(targets: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def plan(due: DueSchedule) -> TickPlan:
        fire = due.schedule.next_fire_at
        assert fire is not None
        return TickPlan(
            runs=[NewRun(target=t, scheduled_for=fire, due_at=fire) for t in targets],
            next_fire_at=fire + timedelta(days=1),
            fired_at=fire,
        )

    return plan


def test_tick_inserts_each_occurrence_once(store: SqlStore) -> None:
    policy = make_policy(targets=("a", "b"))
    store.create_policy(policy, [T0, None], now=T0)
    assert store.process_due_schedules(T0, _planner(("a", "b"))) == (1, 2)
    assert store.process_due_schedules(T0, _planner(("a", "b"))) == (0, 0)
    # a replica that planned the same occurrence again inserts nothing
    store.update_policy(policy, [T0, None], now=T0)
    assert store.process_due_schedules(T0, _planner(("a", "b"))) == (1, 0)
    # some new, some existing: only the new one counts (executemany's rowcount)
    store.update_policy(policy, [T0, None], now=T0)
    assert store.process_due_schedules(T0, _planner(("a", "c", "b"))) == (1, 1)
    runs = store.list_runs(RunFilter(policy_id=policy.id))
    assert sorted(r.target for r in runs) == ["a", "b", "c"]
    assert all(r.state is RunState.PENDING and r.scheduled_for == T0 for r in runs)
    assert store.schedules(policy.id)[0].next_fire_at == T0 + timedelta(days=1)


@pytest.mark.parametrize("micro", [0, 250_000])
def test_tick_writes_timestamps_the_orm_can_match(store: SqlStore, micro: int) -> None:
    """The tick binds times at driver level: they must equal what SQLAlchemy's type writes."""
    from sqlalchemy import func, select

    from stackback.store.models import RunRow, ScheduleRow

    at = T0.replace(microsecond=micro)
    later = datetime(2026, 3, 2, 1, 0, 0, micro, tzinfo=ZoneInfo("Europe/Amsterdam"))
    policy = make_policy(targets=("a",))
    store.create_policy(policy, [at, None], now=at)

    def plan(due: DueSchedule) -> TickPlan:
        return TickPlan(
            runs=[NewRun(target="a", scheduled_for=at, due_at=later)],
            next_fire_at=later,
            fired_at=at,
        )

    assert store.process_due_schedules(at, plan) == (1, 1)
    with store.engine.connect() as connection:
        runs = select(func.count()).select_from(RunRow)
        assert connection.scalar(runs.where(RunRow.scheduled_for == at)) == 1
        assert connection.scalar(runs.where(RunRow.due_at == later)) == 1
        assert connection.scalar(runs.where(RunRow.created_at == at)) == 1
        schedule = select(func.count()).select_from(ScheduleRow)
        assert connection.scalar(schedule.where(ScheduleRow.next_fire_at == later)) == 1
        assert connection.scalar(schedule.where(ScheduleRow.last_fired_at == at)) == 1


def test_tick_ignores_schedules_not_yet_due_and_disabled(store: SqlStore) -> None:
    store.create_policy(make_policy(), [T0 + timedelta(minutes=1), None], now=T0)
    assert store.process_due_schedules(T0, _planner(("x",))) == (0, 0)
    assert store.next_fire_time() == T0 + timedelta(minutes=1)


def _one_run(store: SqlStore, target: str = "srv-1", at: datetime = T0) -> str:
    policy = make_policy(name=f"p-{uuid.uuid4().hex[:6]}", targets=(target,))
    store.create_policy(policy, [at, None], now=at)
    store.process_due_schedules(at, _planner((target,)))
    return store.list_runs(RunFilter(policy_id=policy.id))[0].id


def test_claim_leases_and_fences(store: SqlStore) -> None:
    run_id = _one_run(store)
    [claimed] = store.claim_runs(T0, "w1", lease_seconds=60)
    assert (claimed.id, claimed.attempt, claimed.lease_owner) == (run_id, 1, "w1")
    assert store.claim_runs(T0 + timedelta(seconds=30), "w2", lease_seconds=60) == []
    [taken] = store.claim_runs(T0 + timedelta(seconds=61), "w2", lease_seconds=60)
    assert (taken.attempt, taken.lease_owner) == (2, "w2")
    with pytest.raises(LeaseLost):
        store.update_run(run_id, 1, state=RunState.SNAPSHOTTING)
    with pytest.raises(LeaseLost):
        store.update_run(run_id, 1, step=StepNote("snapshot", T0, T0, "ok"))
    store.update_run(run_id, 2, state=RunState.SNAPSHOTTING)
    store.update_run(run_id, 2, step=StepNote("snapshot", T0, T0, "ok"))
    run = store.get_run(run_id)
    assert run.state is RunState.SNAPSHOTTING
    assert [(s.name, s.attempt) for s in run.steps] == [("snapshot", 2)]


def test_release_with_not_before_delays_the_next_claim(store: SqlStore) -> None:
    run_id = _one_run(store)
    [run] = store.claim_runs(T0, "w1", lease_seconds=60)
    store.release_run(run_id, run.attempt, not_before=T0 + timedelta(minutes=5))
    assert store.claim_runs(T0 + timedelta(minutes=4), "w1", lease_seconds=60) == []
    assert len(store.claim_runs(T0 + timedelta(minutes=5), "w1", lease_seconds=60)) == 1


def test_one_active_run_per_target(store: SqlStore) -> None:
    first = _one_run(store, "shared")
    second = _one_run(store, "shared")
    claimed = store.claim_runs(T0, "w1", lease_seconds=60, limit=10)
    assert {r.id for r in claimed} == {first, second}
    attempts = {r.id: r.attempt for r in claimed}
    store.update_run(first, attempts[first], state=RunState.SNAPSHOTTING)
    with pytest.raises(Conflict):
        store.update_run(second, attempts[second], state=RunState.SNAPSHOTTING)
    assert store.get_run(second).state is RunState.PENDING
    store.release_run(second, attempts[second], not_before=None)
    # while the target is busy, its pending run is not claimable
    later = store.claim_runs(T0 + timedelta(hours=2), "w3", lease_seconds=60, limit=10)
    assert second not in {r.id for r in later}


def test_terminal_runs_are_not_claimed_and_only_they_can_be_deleted(store: SqlStore) -> None:
    run_id = _one_run(store)
    [run] = store.claim_runs(T0, "w1", lease_seconds=60)
    with pytest.raises(Conflict):
        store.delete_run(run_id)
    store.update_run(run_id, run.attempt, state=RunState.SUCCEEDED, finished_at=T0)
    assert store.claim_runs(T0 + timedelta(hours=1), "w1", lease_seconds=60) == []
    assert store.delete_run(run_id).id == run_id
    with pytest.raises(NotFound):
        store.get_run(run_id)


def _backup(run_id: str | None = None, target: str = "srv-1", at: datetime = T0) -> Backup:
    return Backup(
        id=str(uuid.uuid4()),
        target=target,
        kind=BackupKind.SERVER_IMAGE,
        status=BackupStatus.CREATING,
        created_at=at,
        run_id=run_id,
    )


def test_backup_per_run_is_created_once_and_artifacts_are_idempotent(store: SqlStore) -> None:
    run_id = _one_run(store)
    first = store.ensure_backup(_backup(run_id))
    again = store.ensure_backup(_backup(run_id))
    assert again.id == first.id
    image = store.add_artifact(
        first.id, ArtifactKind.IMAGE, "img-1", status=ArtifactStatus.PENDING, now=T0
    )
    same = store.add_artifact(
        first.id, ArtifactKind.IMAGE, "img-1", status=ArtifactStatus.PENDING, now=T0
    )
    assert same.id == image.id
    other = store.ensure_backup(_backup(None))
    with pytest.raises(Conflict):
        store.add_artifact(
            other.id, ArtifactKind.IMAGE, "img-1", status=ArtifactStatus.PENDING, now=T0
        )
    store.update_artifact(image.id, status=ArtifactStatus.AVAILABLE, size=10 * 2**30)
    loaded = store.get_backup(first.id)
    assert [(a.cloud_id, a.status, a.size) for a in loaded.artifacts] == [
        ("img-1", ArtifactStatus.AVAILABLE, 10 * 2**30)
    ]
    assert store.backup_for_run(run_id) == loaded


def test_finish_deletion_only_records_a_backup_still_being_deleted(store: SqlStore) -> None:
    backup = store.ensure_backup(_backup(None))
    store.update_backup(backup.id, status=BackupStatus.DELETING)
    store.update_backup(backup.id, status=BackupStatus.AVAILABLE)  # restored meanwhile
    assert store.finish_deletion(backup.id, now=T0) is False
    assert store.get_backup(backup.id).status is BackupStatus.AVAILABLE
    store.update_backup(backup.id, status=BackupStatus.DELETING)
    assert store.finish_deletion(backup.id, now=T0) is True
    done = store.get_backup(backup.id)
    assert (done.status, done.deleted_at) == (BackupStatus.DELETED, T0)


def _recorded(
    store: SqlStore, status: BackupStatus, at: datetime, target: str = "srv-1", **values: object
) -> str:
    backup = store.ensure_backup(replace(_backup(None, target, at), status=status))
    if values:
        store.update_backup(backup.id, **values)
    return backup.id


@dataclass(frozen=True)
class _Writes:
    """A decision that asks for the given writes, whatever it sees."""

    changes: tuple[BackupChange, ...]


def test_a_decision_sees_its_targets_backups_locked_and_its_changes_are_written(
    store: SqlStore,
) -> None:
    run_id = _one_run(store)
    [run] = store.claim_runs(T0, "w1", lease_seconds=60)
    fence = (run_id, run.attempt)
    good = _recorded(store, BackupStatus.AVAILABLE, T0)
    failed = _recorded(store, BackupStatus.FAILED, T0 + timedelta(minutes=30))
    deleting = _recorded(store, BackupStatus.DELETING, T0 + timedelta(hours=1))
    own = store.ensure_backup(_backup(run_id, at=T0 + timedelta(hours=2)), fence=fence).id
    earlier = _recorded(store, BackupStatus.DELETED, T0 - timedelta(days=1), deletion_run_id=run_id)
    elsewhere = _recorded(store, BackupStatus.AVAILABLE, T0, target="srv-2")
    seen: list[TargetBackups] = []
    mark = BackupChange(
        good,
        status=BackupStatus.DELETING,
        reasons=("forgotten",),
        deletion_guarded=True,
        deletion_run_id=run_id,
    )

    def decide(backups: TargetBackups) -> _Writes:
        seen.append(backups)
        return _Writes((mark,))

    assert store.decide_for_target("srv-1", decide, include=(failed,), fence=fence).changes
    [snapshot] = seen
    # live backups, the one asked for and the run's own, newest first; not another target's
    assert [b.id for b in snapshot.backups] == [own, deleting, failed, good]
    assert (snapshot.target, snapshot.run_id) == ("srv-1", run_id)
    assert [b.id for b in snapshot.forgotten_by_run] == [earlier]
    written = store.get_backup(good)
    assert (written.status, written.reasons) == (BackupStatus.DELETING, ("forgotten",))
    assert (written.deletion_run_id, written.deletion_guarded) == (run_id, True)

    # a decision may change only what it was given: nothing at all is written otherwise
    restore = BackupChange(deleting, status=BackupStatus.AVAILABLE, error="restored")
    stray = BackupChange(elsewhere, status=BackupStatus.DELETING)
    with pytest.raises(ValueError, match=elsewhere):
        store.decide_for_target("srv-1", lambda _b: _Writes((restore, stray)))
    assert store.get_backup(deleting).status is BackupStatus.DELETING
    assert store.get_backup(elsewhere).status is BackupStatus.AVAILABLE

    # a worker whose run was taken over decides nothing
    store.claim_runs(T0 + timedelta(seconds=61), "w2", lease_seconds=60)
    with pytest.raises(LeaseLost):
        store.decide_for_target("srv-1", decide, fence=fence)
    assert len(seen) == 1


def test_backup_listing_filters_and_protection(store: SqlStore) -> None:
    older = store.ensure_backup(_backup(at=T0))
    newer = store.ensure_backup(_backup(at=T0 + timedelta(days=1)))
    elsewhere = store.ensure_backup(_backup(target="srv-2"))
    assert [b.id for b in store.list_backups(BackupFilter(target="srv-1"))] == [newer.id, older.id]
    store.update_backup(older.id, status=BackupStatus.DELETED, deleted_at=T0)
    assert [b.id for b in store.list_backups(BackupFilter(target="srv-1"))] == [newer.id]
    assert len(store.list_backups(BackupFilter(include_deleted=True))) == 3
    assert store.set_protected(newer.id[:8], True).protected is True
    with pytest.raises(Conflict):
        store.set_protected(older.id, True)
    store.update_backup(elsewhere.id, status=BackupStatus.DELETING, reasons=("forget",))
    assert [b.id for b in store.backups_to_collect()] == [elsewhere.id]
    assert store.get_backup(elsewhere.id).reasons == ("forget",)


def test_deleting_a_policy_keeps_its_runs_and_backups(store: SqlStore) -> None:
    run_id = _one_run(store)
    run = store.get_run(run_id)
    assert run.policy_id is not None
    backup = store.ensure_backup(_backup(run_id))
    store.delete_policy(run.policy_id, now=T0)
    kept = store.get_run(run_id)
    assert kept.policy_id is None and kept.state is RunState.CANCELLED
    assert kept.policy_name == run.policy_name
    assert store.get_backup(backup.id).id == backup.id


def test_a_backup_being_deleted_cannot_be_protected(store: SqlStore) -> None:
    backup = store.ensure_backup(_backup())
    store.update_backup(backup.id, status=BackupStatus.DELETING)
    with pytest.raises(Conflict):
        store.set_protected(backup.id, True)
    assert store.get_backup(backup.id).protected is False


def test_deleting_a_policy_fences_a_worker_holding_its_pending_run(store: SqlStore) -> None:
    run_id = _one_run(store)
    [claimed] = store.claim_runs(T0, "w1", lease_seconds=60)
    store.delete_policy(store.get_run(run_id).policy_name or "", now=T0)
    with pytest.raises(LeaseLost):
        store.update_run(run_id, claimed.attempt, state=RunState.SNAPSHOTTING)
    assert store.get_run(run_id).state is RunState.CANCELLED


def test_next_wakeup_waits_for_a_live_lease(store: SqlStore) -> None:
    run_id = _one_run(store)
    assert store.next_wakeup() == T0
    [claimed] = store.claim_runs(T0, "w1", lease_seconds=60)
    assert store.next_wakeup() == T0 + timedelta(seconds=60)
    store.release_run(run_id, claimed.attempt, not_before=T0 + timedelta(seconds=5))
    assert store.next_wakeup() == T0 + timedelta(seconds=5)


def test_next_wakeup_leaves_out_a_run_queued_behind_its_busy_target(store: SqlStore) -> None:
    first = store.create_manual_run(target="web-1", now=T0, label=None, retention=None)
    [claimed] = store.claim_runs(T0, "w1", lease_seconds=3600)
    store.update_run(first.id, claimed.attempt, state=RunState.WAITING)
    store.create_manual_run(target="web-1", now=T0, label=None, retention=None)

    assert store.claim_runs(T0, "w2", lease_seconds=60) == []
    assert store.next_wakeup() == T0 + timedelta(hours=1)  # the active run's lease, no sooner


def _runs_with_ids(store: SqlStore, *ids: str) -> None:
    from sqlalchemy import update

    from stackback.store.models import RunRow

    for wanted in ids:
        run = store.create_manual_run(target=f"srv-{wanted}", now=T0, label=None, retention=None)
        with store.engine.begin() as connection:
            connection.execute(update(RunRow).where(RunRow.id == run.id).values(id=wanted))


def test_ids_are_found_whole_or_by_an_unambiguous_prefix_never_by_a_pattern(
    store: SqlStore,
) -> None:
    first, second = "abcdef01-0000-4000-8000-000000000001", "abcdef02-0000-4000-8000-000000000002"
    _runs_with_ids(store, first, second)
    backup = store.ensure_backup(_backup())

    assert store.get_run(first).id == first
    assert store.get_run("abcdef02").id == second
    assert store.get_backup(backup.id[:8]).id == backup.id
    with pytest.raises(InvalidInput, match="several run ids"):
        store.get_run("abcdef0")
    for pattern in ("", "%", "%%%%%%", "______", "abc", "abcdef%"):
        with pytest.raises(NotFound):
            store.get_run(pattern)
        with pytest.raises(NotFound):
            store.get_backup(pattern)


def test_listing_backups_reads_their_artifacts_in_chunks(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL binds at most 65,535 values: a long list asks for artifacts in chunks."""
    from stackback.store.sql import backups as backups_module

    monkeypatch.setattr(backups_module, "_IN_CHUNK", 2)
    made = {}
    for hour in range(5):
        backup = store.ensure_backup(_backup(at=T0 + timedelta(hours=hour)))
        store.add_artifact(
            backup.id, ArtifactKind.IMAGE, f"img-{hour}", status=ArtifactStatus.AVAILABLE, now=T0
        )
        made[backup.id] = f"img-{hour}"

    listed = store.list_backups(BackupFilter(limit=None))

    assert {b.id: [a.cloud_id for a in b.artifacts] for b in listed} == {
        backup_id: [image] for backup_id, image in made.items()
    }


def test_a_policy_change_landing_between_read_and_write_is_not_overwritten(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`policy set --label` racing `policy disable`: both land, and enabled agrees with the
    schedule (before, the label's write restored enabled=yes over a disabled schedule)."""
    clock = VirtualClock(T0)
    policies = PolicyService(store, clock)
    created = policies.create(
        PolicySpec(
            name="p", targets=("a",), schedules=("* * * * *",), timezone="UTC", keep_all=True
        )
    )
    other_process = PolicyService(SqlStore(store.engine), clock)
    reads = 0
    read = store.get_policy

    def read_then_someone_disables(ref: str, *, project: str | None = None) -> Policy:
        nonlocal reads
        reads += 1
        policy = read(ref, project=project)
        if reads == 1:
            other_process.set_enabled(created.id, False)
        return policy

    monkeypatch.setattr(store, "get_policy", read_then_someone_disables)
    labelled = policies.update(created.id, PolicySpec(label="L"))
    assert reads == 2  # recomputed from the disabled policy
    assert (labelled.enabled, labelled.label) == (False, "L")
    [schedule] = store.schedules(created.id)
    assert schedule.next_fire_at is None


def _delete_twice_at_once(store: SqlStore, policy_id: str) -> list[str]:
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def delete() -> None:
        start.wait()
        try:
            store.delete_policy(policy_id, now=T0)
            outcomes.append("deleted")
        except NotFound:
            outcomes.append("not found")

    threads = [threading.Thread(target=delete) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SQLAlchemy's "expected to delete 1 row" warning
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sorted(outcomes)


def test_a_policy_deleted_twice_at_once_is_deleted_once(store: SqlStore) -> None:
    """Two `policy delete` at once: one deletes, the other finds no policy (no half-work)."""
    policies = PolicyService(store, VirtualClock(T0))
    for round_ in range(10):
        created = policies.create(
            PolicySpec(name=f"p{round_}", targets=("a",), schedules=("0 1 * * *",), keep_all=True)
        )
        assert _delete_twice_at_once(store, created.id) == ["deleted", "not found"]
