"""The scheduler tick on a real store: batching, the policy view, the next-fire memo."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import update

from stackback import schedule as schedule_module
from stackback.engine import scheduler as scheduler_module
from stackback.engine.scheduler import Scheduler
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudError, CloudRejected, CloudUnavailable
from stackback.policy import BackupKind, Policy, RunState, Selector
from stackback.ports import Cloud, ServerInfo
from stackback.retention import RetentionPolicy
from stackback.schedule import CronSchedule
from stackback.store.models import PolicyRow
from stackback.store.sql import (
    DuePolicy,
    DueSchedule,
    RunFilter,
    ScheduleState,
    SqlStore,
    TickPlan,
)

NOW = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
NO_JITTER = EngineSettings(retry_jitter=0.0)
"""The retry strategy's plain backoff, for tests that check exact retry times."""


def _policy(
    cron: str = "0 9 * * *",
    *,
    timezone: str = "UTC",
    targets: tuple[str, ...] = ("srv-1",),
    selector: Selector | None = None,
    enabled: bool = True,
    window: int = 30,
    label: str | None = None,
) -> Policy:
    return Policy(
        id=str(uuid.uuid4()),
        name=f"p-{uuid.uuid4().hex[:8]}",
        kind=BackupKind.SERVER_IMAGE,
        schedules=(cron,),
        timezone=timezone,
        retention=RetentionPolicy(last=3),
        targets=() if selector is not None else targets,
        selector=selector,
        window_minutes=window,
        enabled=enabled,
        cloud="c1",
        label=label,
    )


def _add(store: SqlStore, policy: Policy, next_fire: datetime = NOW) -> Policy:
    return store.create_policy(policy, [next_fire], now=NOW - timedelta(days=1))


def _no_cloud(cloud: str | None) -> Cloud:
    raise AssertionError(f"no selector policy here (cloud {cloud!r})")


class _Selecting:
    """A cloud whose ``find_servers`` returns fixed servers (or fails), counting calls."""

    def __init__(self, servers: list[ServerInfo] | None, error: CloudError | None = None) -> None:
        self.servers = servers
        self.error = error or CloudUnavailable("nova is down")
        self.calls: list[Selector] = []

    def find_servers(self, selector: Selector) -> list[ServerInfo]:
        self.calls.append(selector)
        if self.servers is None:
            raise self.error
        return self.servers


def _count_batches(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    done: list[int] = []
    original = store.process_due_schedules

    def counting(*args: Any, **kwargs: Any) -> tuple[int, int]:
        result = original(*args, **kwargs)
        done.append(result[0])
        return result

    monkeypatch.setattr(store, "process_due_schedules", counting)
    return done


def test_an_idle_tick_only_reads_the_next_fire_time(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(store, _policy(), NOW + timedelta(minutes=1))
    batches = _count_batches(store, monkeypatch)
    selectors: list[datetime] = []
    original = store.due_selector_policies
    monkeypatch.setattr(
        store, "due_selector_policies", lambda now: selectors.append(now) or original(now)
    )
    scheduler = Scheduler(store, _no_cloud)
    assert scheduler.tick(NOW) == scheduler_module.TickResult(0, 0)
    assert (batches, selectors) == ([], [])
    assert scheduler.tick(NOW + timedelta(minutes=1)).runs == 1
    assert batches and selectors == [NOW + timedelta(minutes=1)]


def test_tick_batches_and_stops_after_a_short_batch(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(7):
        _add(store, _policy(targets=(f"srv-{index}",)))
    _add(store, _policy(), NOW + timedelta(minutes=1))  # not due
    batches = _count_batches(store, monkeypatch)
    result = Scheduler(store, _no_cloud, EngineSettings(tick_batch=3)).tick(NOW)
    assert (result.schedules, result.runs) == (7, 7)
    assert batches == [3, 3, 1]  # no empty trailing transaction after the short batch
    assert Scheduler(store, _no_cloud, EngineSettings(tick_batch=3)).tick(NOW).schedules == 0
    assert store.next_fire_time() == NOW + timedelta(minutes=1)


def test_tick_with_a_full_last_batch_checks_once_more(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(4):
        _add(store, _policy(targets=(f"srv-{index}",)))
    batches = _count_batches(store, monkeypatch)
    assert Scheduler(store, _no_cloud, EngineSettings(tick_batch=2)).tick(NOW).runs == 4
    assert batches == [2, 2, 0]


def test_tick_catches_up_beyond_max_fires_in_the_same_tick(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _add(store, _policy("* * * * *", window=0), NOW - timedelta(minutes=10))
    batches = _count_batches(store, monkeypatch)
    settings = EngineSettings(tick_batch=50, max_fires_per_tick=4)
    result = Scheduler(store, _no_cloud, settings).tick(NOW)
    # 11 occurrences (09:50 .. 09:00 inclusive) in 3 passes of at most 4 fires each
    assert (result.schedules, result.runs) == (3, 11)
    assert batches == [1, 1, 1]
    runs = sorted(store.list_runs(RunFilter(policy_id=policy.id)), key=lambda r: r.scheduled_for)
    assert [r.state for r in runs] == [RunState.MISSED] * 10 + [RunState.PENDING]
    assert runs[-1].scheduled_for == NOW
    [state] = store.schedules(policy.id)
    assert (state.next_fire_at, state.last_fired_at) == (NOW + timedelta(minutes=1), NOW)


def test_planner_gets_the_policy_view(store: SqlStore) -> None:
    selector = Selector("backup", "gold")
    explicit = _add(store, _policy(targets=("a", "b"), label="weekly"))
    selected = _add(store, _policy(selector=selector, enabled=False))
    seen: dict[str, DuePolicy] = {}

    def planner(due: DueSchedule) -> TickPlan:
        seen[due.policy.id] = due.policy
        assert due.schedule.next_fire_at == NOW and due.schedule.policy_id == due.policy.id
        return TickPlan(next_fire_at=NOW + timedelta(days=1))

    assert store.process_due_schedules(NOW, planner) == (2, 0)
    assert seen[explicit.id] == DuePolicy(
        id=explicit.id,
        name=explicit.name,
        timezone="UTC",
        window_minutes=30,
        targets=("a", "b"),
        selector=None,
        enabled=True,
        cloud="c1",
        label="weekly",
    )
    assert seen[selected.id].selector == selector
    assert seen[selected.id].targets == ()
    assert seen[selected.id].enabled is False


def test_the_tick_refuses_a_naive_time_instead_of_guessing_its_zone(store: SqlStore) -> None:
    policy = _add(store, _policy())

    def planner(due: DueSchedule) -> TickPlan:
        return TickPlan(next_fire_at=(NOW + timedelta(days=1)).replace(tzinfo=None))

    with pytest.raises(ValueError, match="naive datetime"):
        store.process_due_schedules(NOW, planner)
    assert store.schedules(policy.id)[0].next_fire_at == NOW


def test_runs_carry_policy_fields_and_spread(store: SqlStore) -> None:
    policy = _add(store, _policy(targets=("a", "b"), label="weekly", window=30))
    assert Scheduler(store, _no_cloud).tick(NOW).runs == 2
    runs = store.list_runs(RunFilter(policy_id=policy.id))
    assert sorted(r.target for r in runs) == ["a", "b"]
    for run in runs:
        assert (run.policy_name, run.label, run.cloud, run.trigger) == (
            policy.name,
            "weekly",
            "c1",
            "schedule",
        )
        assert run.scheduled_for == NOW and NOW <= run.due_at < NOW + timedelta(minutes=30)
        assert run.state is RunState.PENDING and run.finished_at is None
    ids = [uuid.UUID(run.id) for run in runs]
    assert len(set(ids)) == 2 and all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert all(str(i) == run.id for i, run in zip(ids, runs, strict=True))


def test_selector_policies_resolve_through_the_cloud(store: SqlStore) -> None:
    servers = [ServerInfo("id-2", "two", "ACTIVE"), ServerInfo("id-1", "one", "ACTIVE")]
    cloud = _Selecting(servers)
    policy = _add(store, _policy(selector=Selector("backup", "gold")))
    clouds: list[str | None] = []

    def provider(name: str | None) -> Cloud:
        clouds.append(name)
        return cloud  # type: ignore[return-value]

    assert Scheduler(store, provider).tick(NOW).runs == 2
    assert clouds == ["c1"] and cloud.calls == [Selector("backup", "gold")]
    runs = store.list_runs(RunFilter(policy_id=policy.id))
    assert sorted((r.target, r.target_name) for r in runs) == [("id-1", "one"), ("id-2", "two")]


def _schedules_are_write_locked(store: SqlStore) -> bool:
    """Whether another connection would have to wait to lock the schedules right now."""
    import sqlite3

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with store.engine.connect() as probe:
        if store.is_postgres:
            try:
                with probe.begin():
                    probe.execute(text("SELECT id FROM schedules FOR UPDATE NOWAIT")).all()
            except OperationalError:
                return True
            return False
        raw = probe.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            assert "locked" in str(error)
            return True
        finally:
            raw.execute("PRAGMA busy_timeout=60000")
        return False


def test_selectors_are_resolved_before_the_tick_locks_anything(store: SqlStore) -> None:
    """A slow Nova listing must not hold the database while other writers wait."""
    locked_during_call: list[bool] = []

    class Probing(_Selecting):
        def find_servers(self, selector: Selector) -> list[ServerInfo]:
            locked_during_call.append(_schedules_are_write_locked(store))
            return super().find_servers(selector)

    cloud = Probing([ServerInfo("id-1", "one", "ACTIVE")])
    policy = _add(store, _policy(selector=Selector("backup", "gold")))
    _add(store, _policy(targets=("srv-x",)))

    assert Scheduler(store, lambda _name: cloud).tick(NOW).runs == 2  # type: ignore[arg-type,return-value]
    assert locked_during_call == [False]
    assert [r.target for r in store.list_runs(RunFilter(policy_id=policy.id))] == ["id-1"]


def test_a_stale_selector_answer_is_not_used(store: SqlStore) -> None:
    """A policy whose selector changed between resolution and lock is asked again."""
    from stackback.engine.scheduler import Resolution, Target

    cloud = _Selecting([ServerInfo("id-new", "new", "ACTIVE")])
    policy = _add(store, _policy(selector=Selector("backup", "gold")))
    scheduler = Scheduler(store, lambda _name: cloud)  # type: ignore[arg-type,return-value]
    stale = {policy.id: Resolution("c1", Selector("backup", "silver"), [Target("id-old")], None)}

    plans = []

    def planner(due: DueSchedule) -> TickPlan:
        plans.append(scheduler.plan(due, NOW, resolved=stale))
        return plans[-1]

    store.process_due_schedules(NOW, planner)
    assert [r.target for r in plans[0].runs] == ["id-new"]
    assert cloud.calls == [Selector("backup", "gold")]


def test_a_transient_selector_failure_defers_the_occurrence_until_the_cloud_answers(
    store: SqlStore,
) -> None:
    policy = _add(store, _policy(selector=Selector("backup", "gold")))
    cloud = _Selecting(None)
    scheduler = Scheduler(store, lambda _name: cloud, NO_JITTER)  # type: ignore[arg-type,return-value]

    assert scheduler.tick(NOW).runs == 0
    [state] = store.schedules(policy.id)
    assert (state.deferred_fire_at, state.next_fire_at) == (NOW, NOW + timedelta(seconds=30))
    assert scheduler.tick(NOW + timedelta(seconds=29)).schedules == 0  # nothing before the retry

    assert scheduler.tick(NOW + timedelta(seconds=30)).runs == 0  # still down: waits twice as long
    assert store.schedules(policy.id)[0].next_fire_at == NOW + timedelta(seconds=90)

    cloud.servers = [ServerInfo(id="id-1", name="web-1", status="ACTIVE")]
    assert scheduler.tick(NOW + timedelta(seconds=90)).runs == 1
    [run] = store.list_runs(RunFilter(policy_id=policy.id))
    assert (run.target, run.target_name, run.state) == ("id-1", "web-1", RunState.PENDING)
    assert run.scheduled_for == NOW and run.error is None
    [state] = store.schedules(policy.id)
    assert state.deferred_fire_at is None
    assert (state.next_fire_at, state.last_fired_at) == (NOW + timedelta(days=1), NOW)
    assert len(cloud.calls) == 3


def test_a_selector_still_failing_when_the_window_closes_records_a_failed_run(
    store: SqlStore,
) -> None:
    policy = _add(store, _policy(selector=Selector("backup", "gold"), window=30))
    cloud = _Selecting(None)
    scheduler = Scheduler(store, lambda _name: cloud, NO_JITTER)  # type: ignore[arg-type,return-value]
    attempts: list[datetime] = []
    while not store.list_runs(RunFilter(policy_id=policy.id)):
        at = store.next_fire_time()
        assert at is not None and len(attempts) < 50
        attempts.append(at)
        scheduler.tick(at)

    gaps = [later - earlier for earlier, later in pairwise(attempts)]
    assert gaps[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]  # the waits double...
    assert max(gaps) == EngineSettings().retry_max  # ...up to retry_max
    assert attempts[-1] == NOW + timedelta(minutes=30, seconds=-1)  # the last moment not late
    assert len(cloud.calls) == len(attempts)
    [run] = store.list_runs(RunFilter(policy_id=policy.id))
    assert run.state is RunState.FAILED and run.target == "selector:backup=gold"
    assert run.scheduled_for == NOW and run.finished_at == attempts[-1]
    assert run.error == (
        "could not resolve targets: nova is down "
        "(asked again until 2025-03-04 09:29:59 UTC, the end of its window)"
    )
    [state] = store.schedules(policy.id)
    assert (state.deferred_fire_at, state.next_fire_at) == (None, NOW + timedelta(days=1))


def test_selectors_failing_together_are_asked_again_at_jittered_times(store: SqlStore) -> None:
    policies = [_add(store, _policy(selector=Selector("backup", "gold"))) for _ in range(5)]
    Scheduler(store, lambda _name: _Selecting(None)).tick(NOW)  # type: ignore[arg-type,return-value]
    retries = {store.schedules(p.id)[0].next_fire_at for p in policies}
    assert len(retries) == 5  # spread out, not all at once
    jitter = EngineSettings().retry_jitter
    for retry in retries:
        assert retry is not None
        assert NOW + timedelta(seconds=30) * (1 - jitter) <= retry <= NOW + timedelta(seconds=30)


def test_a_selector_the_cloud_refuses_fails_the_occurrence_at_once(store: SqlStore) -> None:
    policy = _add(store, _policy(selector=Selector("backup", "gold")))
    cloud = _Selecting(None, CloudRejected("401 Unauthorized: the project is disabled"))
    assert Scheduler(store, lambda _name: cloud).tick(NOW).runs == 1  # type: ignore[arg-type,return-value]
    [run] = store.list_runs(RunFilter(policy_id=policy.id))
    assert run.state is RunState.FAILED and run.target == "selector:backup=gold"
    assert run.error == "could not resolve targets: 401 Unauthorized: the project is disabled"
    assert run.finished_at == NOW
    assert store.schedules(policy.id)[0].deferred_fire_at is None


def test_a_deferred_occurrence_is_never_later_than_the_next_cron_time(store: SqlStore) -> None:
    policy = _add(store, _policy("*/5 * * * *", selector=Selector("backup", "gold"), window=0))
    cloud = _Selecting(None)
    scheduler = Scheduler(store, lambda _name: cloud, NO_JITTER)  # type: ignore[arg-type,return-value]
    for _ in range(4):  # 09:00, 09:00:30, 09:01:30, 09:03:30: the doubled wait reaches 09:07:30
        at = store.next_fire_time()
        assert at is not None
        scheduler.tick(at)
    assert store.next_fire_time() == NOW + timedelta(minutes=5)  # the next cron time comes first

    cloud.servers = [ServerInfo(id="id-1", name="web-1", status="ACTIVE")]
    scheduler.tick(NOW + timedelta(minutes=5))
    by_time = {r.scheduled_for: r for r in store.list_runs(RunFilter(policy_id=policy.id))}
    assert by_time[NOW + timedelta(minutes=5)].state is RunState.PENDING
    waited = by_time[NOW]
    assert (waited.state, waited.target) == (RunState.MISSED, "id-1")
    assert waited.error == (
        "a later occurrence of the same schedule replaced it "
        "(its targets could not be listed until then)"
    )


def _waiting(store: SqlStore, **changes: Any) -> tuple[Policy, Policy]:
    """A selector policy whose NOW occurrence waits for its targets, and a changed copy."""
    policy = _add(store, _policy(selector=Selector("backup", "gold")))
    Scheduler(store, lambda _name: _Selecting(None), NO_JITTER).tick(NOW)  # type: ignore[arg-type,return-value]
    assert store.schedules(policy.id)[0].deferred_fire_at == NOW
    return policy, replace(policy, **changes)


def test_editing_a_policy_keeps_its_waiting_occurrence(store: SqlStore) -> None:
    policy, edited = _waiting(
        store, timezone="Europe/Amsterdam", schedules=("0 9 * * *", "0 21 * * *")
    )
    store.update_policy(edited, [NOW + timedelta(days=1), NOW + timedelta(hours=12)], now=NOW)
    by_cron = {s.cron: s for s in store.schedules(policy.id)}
    kept = by_cron["0 9 * * *"]
    assert (kept.deferred_fire_at, kept.next_fire_at) == (NOW, NOW + timedelta(seconds=30))
    assert by_cron["0 21 * * *"].deferred_fire_at is None
    assert store.list_runs(RunFilter(policy_id=policy.id)) == []


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"enabled": False}, "its policy was disabled"),
        ({"schedules": ("0 10 * * *",)}, "its schedule was removed"),
    ],
)
def test_a_waiting_occurrence_whose_schedule_goes_is_recorded_as_cancelled(
    store: SqlStore, changes: dict[str, Any], why: str
) -> None:
    policy, edited = _waiting(store, **changes)
    next_fire = None if changes.get("enabled") is False else NOW + timedelta(hours=1)
    store.update_policy(edited, [next_fire], now=NOW + timedelta(seconds=10))
    [state] = store.schedules(policy.id)
    assert (state.deferred_fire_at, state.next_fire_at) == (None, next_fire)
    [run] = store.list_runs(RunFilter(policy_id=policy.id))
    assert (run.state, run.target, run.scheduled_for) == (
        RunState.CANCELLED,
        "selector:backup=gold",
        NOW,
    )
    assert run.error == f"{why} while this occurrence waited for its targets"
    assert run.finished_at == NOW + timedelta(seconds=10)


def test_deleting_a_policy_records_its_waiting_occurrence_as_cancelled(store: SqlStore) -> None:
    policy, _ = _waiting(store)
    store.delete_policy(policy.id, now=NOW + timedelta(seconds=10))
    [run] = [r for r in store.list_runs() if r.policy_name == policy.name]
    assert (run.state, run.scheduled_for, run.policy_id) == (RunState.CANCELLED, NOW, None)
    assert run.error == "its policy was deleted while this occurrence waited for its targets"


def test_a_schedule_that_cannot_be_evaluated_fails_its_occurrence_not_the_tick(
    store: SqlStore,
) -> None:
    good = _add(store, _policy(targets=("srv-1",)))
    bad = _add(store, _policy(targets=("srv-2", "srv-3"), timezone="America/Los_Angeles"))
    with store.engine.begin() as connection:  # a zone name tzdata 2020b removed
        connection.execute(
            update(PolicyRow).where(PolicyRow.id == bad.id).values(timezone="US/Pacific-New")
        )

    result = Scheduler(store, _no_cloud).tick(NOW)

    assert (result.schedules, result.runs) == (2, 3)
    [run] = store.list_runs(RunFilter(policy_id=good.id))
    assert run.state is RunState.PENDING
    failed = store.list_runs(RunFilter(policy_id=bad.id))
    assert sorted(r.target for r in failed) == ["srv-2", "srv-3"]
    for run in failed:
        assert (run.state, run.scheduled_for) == (RunState.FAILED, NOW)
        assert run.error is not None and "'US/Pacific-New'" in run.error
        assert run.error.endswith("the schedule is stopped until the policy is edited")
    assert store.schedules(bad.id)[0].next_fire_at is None
    assert Scheduler(store, _no_cloud).tick(NOW + timedelta(days=1)).runs == 1


def _down_for_three_days(store: SqlStore) -> tuple[Policy, datetime]:
    """A daily policy whose NOW occurrence ran; the scheduler is then down for three days."""
    policy = _add(store, _policy(window=60))
    Scheduler(store, _no_cloud).tick(NOW)
    return policy, NOW + timedelta(days=3, hours=3)


def test_editing_a_policy_after_downtime_keeps_what_fell_due_for_the_tick(
    store: SqlStore,
) -> None:
    policy, back = _down_for_three_days(store)
    edited = replace(policy, schedules=("0 9 * * *", "0 21 * * *"))
    store.update_policy(edited, [back + timedelta(hours=21), back + timedelta(hours=9)], now=back)

    Scheduler(store, _no_cloud).tick(back)

    by_time = {r.scheduled_for: r for r in store.list_runs(RunFilter(policy_id=policy.id))}
    assert sorted(by_time) == [NOW + timedelta(days=d) for d in range(4)]
    for day in (1, 2, 3):
        assert by_time[NOW + timedelta(days=day)].state is RunState.MISSED


def test_removing_one_of_two_lines_owing_an_occurrence_leaves_it_to_the_kept_line(
    store: SqlStore,
) -> None:
    policy = _add(store, _policy())
    both = replace(policy, schedules=("0 9 * * *", "0 9 * * 2"))  # NOW is a Tuesday, 09:00
    store.update_policy(both, [NOW, NOW], now=NOW - timedelta(hours=1))
    late = NOW + timedelta(minutes=5)
    store.update_policy(policy, [NOW + timedelta(days=1)], now=late)

    Scheduler(store, _no_cloud).tick(late)

    [run] = store.list_runs(RunFilter(policy_id=policy.id))
    assert (run.state, run.scheduled_for) == (RunState.PENDING, NOW)


def test_a_kept_line_owing_an_occurrence_after_a_long_backlog_still_gets_it(
    store: SqlStore,
) -> None:
    """A week of an every-minute line: the shared 09:00 is past the first 10,000 it owes."""
    policy = _policy()
    both = replace(policy, schedules=("* * * * *", "0 9 * * *"))
    since = NOW - timedelta(days=7)
    store.create_policy(both, [since, since], now=since - timedelta(hours=1))
    late = NOW + timedelta(seconds=30)
    store.update_policy(
        replace(both, schedules=("* * * * *",)), [NOW + timedelta(minutes=1)], now=late
    )

    Scheduler(store, _no_cloud).tick(late)

    runs = store.list_runs(RunFilter(policy_id=policy.id, limit=20_000))
    [shared] = [r for r in runs if r.scheduled_for == NOW]
    assert shared.state is RunState.PENDING


def test_disabling_a_policy_after_downtime_records_what_fell_due_as_cancelled(
    store: SqlStore,
) -> None:
    policy, back = _down_for_three_days(store)
    store.update_policy(replace(policy, enabled=False), [None], now=back)

    owed = [r for r in store.list_runs(RunFilter(policy_id=policy.id)) if r.scheduled_for > NOW]
    assert sorted(r.scheduled_for for r in owed) == [NOW + timedelta(days=d) for d in (1, 2, 3)]
    for run in owed:
        assert run.state is RunState.CANCELLED
        assert (
            run.error
            == "its policy was disabled before the scheduler had processed this occurrence"
        )


def test_two_schedules_waiting_on_one_occurrence_are_cancelled_once(store: SqlStore) -> None:
    policy = _add(store, _policy(selector=Selector("backup", "gold")))
    both = replace(policy, schedules=("0 9 * * *", "0 9 * * 1-5"))
    store.update_policy(both, [NOW, NOW], now=NOW - timedelta(hours=1))
    Scheduler(store, lambda _name: _Selecting(None)).tick(NOW)  # type: ignore[arg-type,return-value]
    assert [s.deferred_fire_at for s in store.schedules(policy.id)] == [NOW, NOW]

    store.update_policy(replace(both, enabled=False), [None, None], now=NOW + timedelta(seconds=10))

    [run] = store.list_runs(RunFilter(policy_id=policy.id))
    assert (run.state, run.scheduled_for) == (RunState.CANCELLED, NOW)


def test_disabled_policy_stops_its_schedule(store: SqlStore) -> None:
    policy = _add(store, _policy(enabled=False))
    result = Scheduler(store, _no_cloud).tick(NOW)
    assert (result.schedules, result.runs) == (1, 0)
    assert store.schedules(policy.id)[0].next_fire_at is None


def test_next_fire_is_computed_once_per_expression_zone_and_instant(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(5):
        _add(store, _policy("0 9,21 * * *", targets=(f"srv-{index}",)))
    _add(store, _policy("0 9 * * *", timezone="UTC"))
    _add(store, _policy("0 10 * * *", timezone="Europe/Amsterdam"))
    calls: list[tuple[str, str, datetime]] = []
    original = CronSchedule.next_after

    def counting(self: CronSchedule, instant: datetime) -> datetime:
        calls.append((self.expr, self.timezone, instant))
        return original(self, instant)

    monkeypatch.setattr(CronSchedule, "next_after", counting)
    assert Scheduler(store, _no_cloud).tick(NOW).runs == 7
    assert sorted(calls) == sorted(
        [
            ("0 9,21 * * *", "UTC", NOW),
            ("0 9 * * *", "UTC", NOW),
            ("0 10 * * *", "Europe/Amsterdam", NOW),
        ]
    )
    fires = {s.next_fire_at for p in store.list_policies() for s in store.schedules(p.id)}
    assert fires == {
        NOW + timedelta(hours=12),
        NOW + timedelta(days=1),
        CronSchedule("0 10 * * *", "Europe/Amsterdam").next_after(NOW),
    }


def test_each_expression_and_zone_is_parsed_once_not_on_every_tick(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        _add(store, _policy("0 9 * * *", targets=(f"srv-{index}",)))
    _add(store, _policy("0 9 * * *", timezone="Europe/Amsterdam"))
    _add(store, _policy("0 9 * * MON-FRI"))
    parsed: list[str] = []
    original = schedule_module._parse_cron

    def counting(expr: str) -> Any:
        parsed.append(expr)
        return original(expr)

    monkeypatch.setattr(schedule_module, "_parse_cron", counting)
    schedule_module.cron_schedule.cache_clear()
    scheduler = Scheduler(store, _no_cloud)
    for day in range(3):  # the same schedules fire on three days: parsed on the first only
        assert scheduler.tick(NOW + timedelta(days=day)).runs == 5
    assert sorted(parsed) == ["0 9 * * *", "0 9 * * *", "0 9 * * MON-FRI"]


def test_memo_gives_the_same_plan_as_no_memo() -> None:
    scheduler = Scheduler(None, _no_cloud)  # type: ignore[arg-type]
    policy = DuePolicy(id="p", name="p", timezone="Asia/Tokyo", window_minutes=5, targets=("a",))
    memo: scheduler_module.NextFires = {}
    for first in (NOW - timedelta(hours=30), NOW - timedelta(minutes=3), NOW):
        due = DueSchedule(ScheduleState(1, "p", "0 */6 * * *", first, None), policy)
        assert scheduler.plan(due, NOW, next_fires=memo) == scheduler.plan(due, NOW)
        assert scheduler.plan(due, NOW, next_fires=memo) == scheduler.plan(due, NOW)
