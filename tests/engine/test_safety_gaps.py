"""Safety rules under races, stale workers and resumes (both databases, the simulator).

- A manual delete racing a rotation never leaves a target without a good backup:
  deletion requests check atomically that another good backup remains, and the
  collector checks again at the point of no return.
- A worker whose lease was taken over mid-step writes no backup or artifact record.
- The deletion budget holds across a crash between the rotation decision and its
  journal entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine

import stackback.engine.runner as runner_module
from stackback.engine.collector import Collector
from stackback.engine.loop import Engine
from stackback.engine.runner import Runner
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudUnavailable, Conflict, LeaseLost
from stackback.policy import (
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    Policy,
    Run,
    RunState,
)
from stackback.ports import ArtifactRef
from stackback.records import Decision, TargetBackups
from stackback.retention import RetentionPolicy
from stackback.safety import (
    DeletionRequest,
    DeletionVerdict,
    RotationPlan,
    RotationRequest,
    RotationScope,
    judge_deletion,
    plan_rotation,
)
from stackback.services.backups import BackupService
from stackback.services.policies import PolicySpec
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import BackupFilter, SqlStore
from tests.engine.conftest import Rig
from tests.engine.test_runs import DAY, daily, live_images, runs

LEASE = EngineSettings().lease
D = TypeVar("D", bound=Decision)


def good(rig: Rig, target: str) -> list[Backup]:
    return rig.store.list_backups(BackupFilter(target=target, statuses=(BackupStatus.AVAILABLE,)))


def image_backup(
    backup_id: str, status: BackupStatus, created_at: Any, run_id: str | None = None
) -> Backup:
    """A server-image backup of target ``srv``, as the store-level tests record them."""
    return Backup(
        id=backup_id,
        target="srv",
        kind=BackupKind.SERVER_IMAGE,
        status=status,
        created_at=created_at,
        run_id=run_id,
    )


def rotation(
    rules: RetentionPolicy, run_id: str, now: datetime
) -> Callable[[TargetBackups], RotationPlan]:
    """A manual run's rotation of target ``srv``'s manual backups, as the runner decides it."""
    request = RotationRequest(
        rules=rules, scope=RotationScope(label=None), now=now, run_id=run_id, budget=10
    )
    return partial(plan_rotation, request)


def image_of(backup: Backup) -> str:
    (image,) = [a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.IMAGE]
    return image


# -- 1. manual delete vs rotation --------------------------------------------------------


class _RotationRacesTheOperator:
    """A store through which an operator's whole ``backup delete`` runs inside a rotation's
    window: after the runner has read its own backup, before the rotation is decided."""

    def __init__(self, store: SqlStore, operator: BackupService, victim: str) -> None:
        self._store = store
        self._operator = operator
        self._victim = victim
        self.armed = False
        self.operator_result: Backup | Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def decide_for_target(
        self, target: str, decide: Callable[[TargetBackups], D], **options: Any
    ) -> D:
        if self.armed and options.get("fence") is not None:
            self.armed = False  # the rotation's decision
            try:
                self.operator_result = self._operator.delete(self._victim)
            except Conflict as refused:
                self.operator_result = refused
        return self._store.decide_for_target(target, decide, **options)


def test_a_manual_delete_inside_a_rotation_never_leaves_the_target_without_a_good_backup(
    rig: Rig,
) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    assert len(good(rig, server.id)) == 1
    # day 2: the run takes its backup and rotates; the rotation will forget the older one
    rig.clock.advance_to(rig.clock.now() + DAY - timedelta(hours=1))
    rig.engine.scheduler.tick(rig.clock.now())
    [run] = rig.store.claim_runs(rig.clock.now(), "w1", lease_seconds=LEASE.total_seconds())
    rig.engine.runner.advance(run)  # snapshot requested, the run waits
    rig.clock.advance(600)
    newest = rig.store.backup_for_run(run.id)
    assert newest is not None
    operator = BackupService(rig.store, lambda _n: rig.sim, rig.clock)
    racing = _RotationRacesTheOperator(rig.store, operator, newest.id)
    runner = Runner(racing, lambda _n: rig.sim, rig.clock)
    [run] = rig.store.claim_runs(rig.clock.now(), "w1", lease_seconds=LEASE.total_seconds())
    racing.armed = True
    runner.poll([run])  # the backup is available: rotate, and the operator deletes it meanwhile

    assert racing.operator_result is not None, "the race did not happen"
    assert rig.store.get_run(run.id).state is RunState.SUCCEEDED
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))  # the collector finishes any request
    left = good(rig, server.id)
    assert len(left) == 1, "the target has no good backup left"
    assert image_of(left[0]) in live_images(rig)


def test_the_collector_refuses_to_delete_the_last_good_backup_at_the_point_of_no_return(
    rig: Rig,
) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=5)
    rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=2))
    newer, older = good(rig, server.id)
    # what a race of two unforced requests left: both deleting, each counted on the other
    for backup in (newer, older):
        rig.store.update_backup(
            backup.id,
            status=BackupStatus.DELETING,
            reasons=("deleted by the operator",),
            deletion_guarded=True,
        )
    Collector(rig.store, lambda _n: rig.sim, rig.clock).collect_pending()

    (kept,) = good(rig, server.id)
    assert image_of(kept) in live_images(rig)
    assert kept.error is not None and "last good backup" in kept.error
    statuses = sorted(
        b.status.value for b in (rig.store.get_backup(newer.id), rig.store.get_backup(older.id))
    )
    assert statuses == ["available", "deleted"]


def two_daily_backups(rig: Rig) -> tuple[Backup, Backup, BackupService]:
    """A server's two good daily backups (newer, older) and the operator's service."""
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=5)
    rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=2))
    newer, older = good(rig, server.id)
    return newer, older, BackupService(rig.store, lambda _n: rig.sim, rig.clock)


def test_a_delete_is_refused_while_the_other_good_backup_is_being_deleted(rig: Rig) -> None:
    newer, older, operator = two_daily_backups(rig)
    rig.sim.fail_next("delete_artifact", CloudUnavailable, count=1)
    assert operator.delete(older.id).status is BackupStatus.DELETING  # not finished yet
    with pytest.raises(Conflict, match="last good backup"):
        operator.delete(newer.id)
    # --force is the operator's explicit override, also at the collector
    assert operator.delete(newer.id, force=True).status is BackupStatus.DELETED


def test_a_backup_whose_image_left_the_cloud_does_not_count_as_the_other_good_one(
    rig: Rig,
) -> None:
    newer, older, operator = two_daily_backups(rig)
    rig.sim.delete_artifact(ArtifactRef(ArtifactKind.IMAGE, image_of(newer)))  # behind our back
    with pytest.raises(Conflict, match="last good backup"):
        operator.delete(older.id)
    assert image_of(older) in live_images(rig)
    broken = rig.store.get_backup(newer.id)
    assert broken.status is BackupStatus.FAILED
    assert broken.error is not None and image_of(newer) in broken.error
    assert operator.delete(older.id, force=True).status is BackupStatus.DELETED


def test_a_delete_that_cannot_ask_the_cloud_about_the_other_backups_is_refused(
    rig: Rig,
) -> None:
    _newer, older, operator = two_daily_backups(rig)
    rig.sim.fail_next("artifact_statuses", CloudUnavailable, count=1)
    with pytest.raises(Conflict, match="cannot check"):
        operator.delete(older.id)
    assert rig.store.get_backup(older.id).status is BackupStatus.AVAILABLE
    assert operator.delete(older.id).status is BackupStatus.DELETED


def test_two_concurrent_deletion_requests_cannot_both_pass_the_last_good_check(
    store: SqlStore, clock: Any
) -> None:
    ids = []
    for n in range(2):
        backup = store.ensure_backup(
            Backup(
                id=f"b-{n}",
                target="srv",
                kind=BackupKind.SERVER_IMAGE,
                status=BackupStatus.AVAILABLE,
                created_at=clock.now() + timedelta(days=n),
            )
        )
        ids.append(backup.id)
    checked, go_on = threading.Event(), threading.Event()

    def slow_judge(backups: TargetBackups, backup_id: str) -> DeletionVerdict:
        verdict = judge_deletion(DeletionRequest(backup_id), backups)
        if threading.current_thread().name == "first":
            checked.set()  # decided, not committed yet
            go_on.wait(10)
        return verdict

    outcomes: dict[str, str] = {}

    def request(backup_id: str) -> None:
        verdict = store.decide_for_target(
            "srv", partial(slow_judge, backup_id=backup_id), include=(backup_id,)
        )
        outcomes[backup_id] = "deleting" if verdict.allowed else "refused"

    first = threading.Thread(target=request, args=(ids[0],), name="first")
    second = threading.Thread(target=request, args=(ids[1],), name="second")
    first.start()
    assert checked.wait(10)
    second.start()
    second.join(1.0)  # it must wait for the first request's transaction
    go_on.set()
    first.join(10)
    second.join(10)
    assert sorted(outcomes.values()) == ["deleting", "refused"]
    statuses = sorted(store.get_backup(i).status.value for i in ids)
    assert statuses == ["available", "deleting"]


# -- 2. fencing of backup and artifact writes --------------------------------------------


def _take_over(rig: Rig, stale: Run) -> Run:
    """The stale worker's lease expires and another worker claims the run."""
    rig.clock.advance(LEASE.total_seconds() + 1)
    [taken] = rig.store.claim_runs(rig.clock.now(), "survivor", lease_seconds=60)
    assert taken.id == stale.id and taken.attempt > stale.attempt
    return taken


def _first_run(rig: Rig, server_id: str, *, last: int = 3) -> Run:
    daily(rig, server_id, last=last)
    rig.clock.advance_to(rig.clock.now() + timedelta(hours=1, minutes=1))
    rig.engine.scheduler.tick(rig.clock.now())
    [run] = rig.store.claim_runs(rig.clock.now(), "stale", lease_seconds=LEASE.total_seconds())
    return run


def test_a_stale_worker_records_no_backup_and_starts_no_image(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    run = _first_run(rig, server.id)
    stale = rig.store.update_run(run.id, run.attempt, state=RunState.SNAPSHOTTING)
    _take_over(rig, stale)
    rig.engine.runner.advance(stale)  # resumes in snapshotting with its old attempt
    assert rig.store.backup_for_run(run.id) is None
    assert rig.sim.api_calls().get("start_server_image", 0) == 0


def test_a_stale_worker_polling_writes_nothing(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    run = _first_run(rig, server.id)
    rig.engine.runner.advance(run)  # snapshot requested; the run waits, unleased
    rig.clock.advance(600)  # the image is available by now
    [stale] = rig.store.claim_runs(rig.clock.now(), "stale", lease_seconds=60)
    _take_over(rig, stale)
    rig.engine.runner.poll([stale])
    backup = rig.store.backup_for_run(run.id)
    assert backup is not None and backup.status is BackupStatus.CREATING
    assert [a.status for a in backup.artifacts] == [ArtifactStatus.PENDING]
    assert rig.store.get_run(run.id).state is RunState.WAITING


def test_a_stale_worker_rotating_forgets_nothing(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (older,) = good(rig, server.id)
    rig.clock.advance_to(rig.clock.now() + DAY - timedelta(hours=1))
    rig.engine.scheduler.tick(rig.clock.now())
    [run] = rig.store.claim_runs(rig.clock.now(), "stale", lease_seconds=LEASE.total_seconds())
    paused: list[Run] = []
    stale_runner = Runner(rig.store, lambda _n: rig.sim, rig.clock)
    stale_runner._rotate = paused.append  # type: ignore[method-assign,assignment]
    stale_runner.advance(run)
    rig.clock.advance(600)
    [run] = rig.store.claim_runs(rig.clock.now(), "stale", lease_seconds=LEASE.total_seconds())
    stale_runner.poll([run])  # backup available, run rotating... and the worker stalls
    (stale,) = paused
    assert stale.state is RunState.ROTATING
    _take_over(rig, stale)
    del stale_runner._rotate
    stale_runner.advance(stale)  # the stalled worker wakes up and rotates
    assert rig.store.get_backup(older.id).status is BackupStatus.AVAILABLE
    assert image_of(older) in live_images(rig)
    # the worker that holds the run rotates, once its own lease runs out here
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    assert rig.store.get_run(run.id).state is RunState.SUCCEEDED
    assert rig.store.get_backup(older.id).status is BackupStatus.DELETED


class _WriteLog:
    """The store, noting the fence each backup or artifact write names."""

    WRITES = frozenset(
        {"ensure_backup", "add_artifact", "update_artifact", "update_backup", "decide_for_target"}
    )

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.fences: list[tuple[str, tuple[str, int] | None]] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.store, name)
        if name not in self.WRITES:
            return found

        def noted(*args: Any, **kwargs: Any) -> Any:
            self.fences.append((name, kwargs.get("fence")))
            return found(*args, **kwargs)

        return noted


def test_every_backup_and_artifact_write_of_a_run_names_the_runs_attempt(rig: Rig) -> None:
    """Runs of every path (children discovered, a failed image, rotation forgetting) write
    their records only under their fence; the collector's deletions are its own, checked
    against the backup's ``deleting`` state, and are not a run's writes."""
    log = _WriteLog(rig.store)
    engine = Engine(log, lambda _n: rig.sim, rig.clock, worker_name="w-log")  # type: ignore[arg-type]
    engine.runner.collector = engine.collector = Collector(rig.store, lambda _n: rig.sim, rig.clock)
    web = rig.sim.create_server("web")
    db = rig.sim.create_server("db", volume_backed=True)
    daily(rig, web.id, db.id, last=1)
    engine.drain(rig.clock.now() + DAY + timedelta(hours=2))
    rig.sim.kill_next_image(web.id)
    engine.drain(rig.clock.now() + DAY)
    states = [r.state for r in runs(rig)]
    assert states.count(RunState.SUCCEEDED) >= 3 and states.count(RunState.FAILED) == 1
    assert {name for name, _ in log.fences} == _WriteLog.WRITES
    run_ids = {r.id for r in runs(rig)}
    unfenced = [name for name, fence in log.fences if fence is None or fence[0] not in run_ids]
    assert unfenced == []


def test_fenced_backup_and_artifact_writes_raise_lease_lost_and_write_nothing(
    store: SqlStore, clock: Any
) -> None:
    run = store.create_manual_run(target="srv", now=clock.now(), label="manual", retention=None)
    [old] = store.claim_runs(clock.now(), "w1", lease_seconds=1)
    [new] = store.claim_runs(clock.now() + timedelta(seconds=2), "w2", lease_seconds=60)
    stale, fresh = (run.id, old.attempt), (run.id, new.attempt)
    record = image_backup("b-1", BackupStatus.CREATING, clock.now(), run.id)
    with pytest.raises(LeaseLost):
        store.ensure_backup(record, fence=stale)
    assert store.backup_for_run(run.id) is None
    store.ensure_backup(record, fence=fresh)
    with pytest.raises(LeaseLost):
        store.add_artifact(
            "b-1",
            ArtifactKind.IMAGE,
            "img",
            status=ArtifactStatus.PENDING,
            now=clock.now(),
            fence=stale,
        )
    assert store.get_backup("b-1").artifacts == ()
    artifact = store.add_artifact(
        "b-1",
        ArtifactKind.IMAGE,
        "img",
        status=ArtifactStatus.PENDING,
        now=clock.now(),
        fence=fresh,
    )
    with pytest.raises(LeaseLost):
        store.update_artifact(artifact.id, status=ArtifactStatus.AVAILABLE, fence=stale)
    with pytest.raises(LeaseLost):
        store.update_backup("b-1", status=BackupStatus.AVAILABLE, fence=stale)
    with pytest.raises(LeaseLost):
        store.decide_for_target(
            "srv", rotation(RetentionPolicy(last=1), run.id, clock.now()), fence=stale
        )
    unchanged = store.get_backup("b-1")
    assert unchanged.status is BackupStatus.CREATING
    assert [a.status for a in unchanged.artifacts] == [ArtifactStatus.PENDING]


def test_the_store_forgets_nothing_before_the_runs_own_backup_is_good(
    store: SqlStore, clock: Any
) -> None:
    """Defence in depth: the runner's order of steps is not the only guard; the rule
    holds in the decision the store runs with the target's backups locked."""
    run = store.create_manual_run(target="srv", now=clock.now(), label="manual", retention=None)
    [claimed] = store.claim_runs(clock.now(), "w1", lease_seconds=60)
    fence = (run.id, claimed.attempt)
    older = image_backup("b-old", BackupStatus.AVAILABLE, clock.now() - timedelta(days=2))
    other = image_backup("b-other", BackupStatus.AVAILABLE, clock.now() - timedelta(days=1))
    store.ensure_backup(older)
    store.ensure_backup(other)
    keep_two = rotation(RetentionPolicy(last=2), run.id, clock.now())
    assert store.decide_for_target("srv", keep_two, fence=fence).forgotten == ()
    new = image_backup("b-new", BackupStatus.CREATING, clock.now(), run.id)
    store.ensure_backup(new, fence=fence)
    assert store.decide_for_target("srv", keep_two, fence=fence).forgotten == ()
    assert store.get_backup("b-old").status is BackupStatus.AVAILABLE
    store.update_backup("b-new", status=BackupStatus.AVAILABLE, fence=fence)
    [forgotten] = store.decide_for_target("srv", keep_two, fence=fence).forgotten
    assert forgotten.id == "b-old"
    assert store.get_backup("b-old").status is BackupStatus.DELETING
    assert store.get_backup("b-new").status is BackupStatus.AVAILABLE  # never its own


# -- 3. the deletion budget across a resume ----------------------------------------------


class Crash(BaseException):
    """The worker dies here: nothing after this point runs, nothing is recorded."""


@pytest.fixture
def crash_once_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    armed: list[str] = []

    def failpoint(name: str) -> None:
        if name in armed:
            armed.remove(name)
            raise Crash(name)

    monkeypatch.setattr(runner_module, "failpoint", failpoint)
    yield armed


def test_the_deletion_budget_holds_across_a_crash_after_the_rotation_decision(
    rig: Rig, crash_once_at: list[str]
) -> None:
    server = rig.sim.create_server("web")
    policy = daily(rig, server.id, last=10)
    rig.engine.drain(rig.clock.now() + 5 * DAY + timedelta(hours=2))
    assert len(live_images(rig)) == 6
    rig.policies.update(policy.id, PolicySpec(retention=RetentionPolicy(last=1)))
    budget2 = EngineSettings(deletion_budget=2)
    crash_once_at.append("after-rotation-decided")
    doomed = Engine(rig.store, lambda _n: rig.sim, rig.clock, budget2, worker_name="doomed")
    with pytest.raises(Crash):
        doomed.drain(rig.clock.now() + DAY)
    crashed = runs(rig)[-1]
    assert crashed.state is RunState.ROTATING and crashed.lease_owner == "doomed"
    marked = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.DELETING,)))
    assert len(marked) == 2

    survivor = Engine(rig.store, lambda _n: rig.sim, rig.clock, budget2, worker_name="survivor")
    survivor.drain(rig.clock.now() + timedelta(hours=1))
    done = rig.store.get_run(crashed.id)
    assert done.state is RunState.SUCCEEDED and done.attempt > crashed.attempt
    assert len(live_images(rig)) == 7 - 2
    deleted = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.DELETED,)))
    assert {b.id for b in deleted} == {b.id for b in marked}
    (rotate,) = [s for s in done.steps if s.name == "rotate"]
    assert "forgetting 2" in rotate.detail
    # the next run has a budget of its own again
    survivor.drain(rig.clock.now() + DAY)
    assert len(live_images(rig)) == 8 - 4


# -- 4. lock order: deleting a policy vs a deletion request --------------------------------


@pytest.mark.postgres
def test_deleting_a_policy_waits_for_a_deletion_request_instead_of_deadlocking(
    postgres_url: str, clock: Any
) -> None:
    """Both lock the policy's backups in id order, so neither can hold what the other needs.

    Deleting a policy sets its backups' ``policy_id`` to NULL; PostgreSQL's foreign key
    action alone touches them in table order. A deletion request locks a target's backups
    in id order. With the backup inserted first having the larger id, the two orders cross.
    """
    engine = create_db_engine(postgres_url)
    upgrade(engine)
    store = SqlStore(engine)
    other = create_engine(postgres_url)
    try:
        policy = store.create_policy(
            Policy(
                id="p-1",
                name="nightly",
                kind=BackupKind.SERVER_IMAGE,
                schedules=("0 1 * * *",),
                timezone="UTC",
                retention=RetentionPolicy(last=3),
                targets=("srv",),
            ),
            [None],
            now=clock.now(),
        )
        for backup_id in ("b-9", "b-1"):  # table order b-9, b-1; id order b-1, b-9
            store.ensure_backup(
                replace(
                    image_backup(backup_id, BackupStatus.AVAILABLE, clock.now()),
                    policy_id=policy.id,
                )
            )
        failures: list[Exception] = []

        def delete_policy() -> None:
            try:
                store.delete_policy(policy.id, now=clock.now())
            except Exception as error:  # a deadlock victim
                failures.append(error)

        with other.connect() as request:
            request.exec_driver_sql("SET lock_timeout = '10s'")
            request.exec_driver_sql("SELECT id FROM backups WHERE id = 'b-1' FOR UPDATE")
            deleting = threading.Thread(target=delete_policy)
            deleting.start()
            with other.connect() as probe:  # until the policy delete waits for a lock
                for _ in range(100):
                    waiting = probe.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    ).scalar_one()
                    if waiting:
                        break
                    time.sleep(0.05)
                assert waiting, "the policy delete never waited for the locked backup"
            try:
                request.exec_driver_sql("SELECT id FROM backups WHERE id = 'b-9' FOR UPDATE")
                request.commit()
            except Exception as error:  # the deadlock victim may be this side
                failures.append(error)
                request.rollback()
            deleting.join(15)
        assert failures == []
        assert [b.policy_id for b in store.list_backups(BackupFilter(target="srv"))] == [None] * 2
    finally:
        other.dispose()
        store.dispose()
