"""The pure alert rules: one alert per subject and condition until it changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from stackback.alerts import (
    AlertState,
    Condition,
    Event,
    Fact,
    Route,
    StateKey,
    Subject,
    evaluate,
    payload,
    routed,
    state_key,
)

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
WEB = Subject("id-web", "web", "p1", "nightly")
DB = Subject("id-db", "db", "p2", "weekly")


def apply(states: dict[StateKey, AlertState], facts: list[Fact], now: datetime) -> list[Event]:
    result = evaluate(states, facts, now)
    for state in result.states:
        states[state_key(state.subject, state.condition)] = state
    return [a.event for a in result.alerts]


def failed(subject: Subject, active: bool) -> Fact:
    return Fact(subject, Condition.RUN_FAILED, active, "boom" if active else "ok", "run-1")


def test_a_condition_alerts_once_until_it_recovers() -> None:
    states: dict[StateKey, AlertState] = {}
    assert apply(states, [failed(WEB, False)], T0) == []
    assert apply(states, [failed(WEB, True)], T0 + timedelta(hours=1)) == [Event.RUN_FAILED]
    for hour in range(2, 6):  # still failing: no storm
        assert apply(states, [failed(WEB, True)], T0 + timedelta(hours=hour)) == []
    assert apply(states, [failed(WEB, False)], T0 + timedelta(hours=6)) == [Event.RECOVERED]
    assert apply(states, [failed(WEB, False)], T0 + timedelta(hours=7)) == []
    assert apply(states, [failed(WEB, True)], T0 + timedelta(hours=8)) == [Event.RUN_FAILED]


def test_recovered_names_the_condition_and_when_it_began() -> None:
    states: dict[StateKey, AlertState] = {}
    apply(states, [failed(WEB, True)], T0)
    (alert,) = evaluate(states, [failed(WEB, False)], T0 + timedelta(days=1)).alerts
    assert alert.event is Event.RECOVERED and alert.condition is Condition.RUN_FAILED
    assert alert.since == T0 and alert.at == T0 + timedelta(days=1)


def test_conditions_and_subjects_are_told_apart() -> None:
    states: dict[StateKey, AlertState] = {}
    late = Fact(WEB, Condition.LATE, True, "late: behind")
    events = apply(states, [failed(WEB, True), late, failed(DB, True)], T0)
    assert sorted(events) == sorted([Event.RUN_FAILED, Event.LATE, Event.RUN_FAILED])
    assert apply(states, [failed(WEB, True), late, failed(DB, False)], T0) == [Event.RECOVERED]


def test_a_subject_no_longer_reported_is_closed_once() -> None:
    states: dict[StateKey, AlertState] = {}
    apply(states, [failed(WEB, True)], T0)
    assert apply(states, [], T0 + timedelta(hours=1)) == [Event.RECOVERED]
    assert apply(states, [], T0 + timedelta(hours=2)) == []


def test_routes_by_policy_name_or_id_and_by_event() -> None:
    alert = evaluate({}, [failed(WEB, True)], T0).alerts[0]
    routes = [
        Route("all"),
        Route("nightly", policies=("nightly",)),
        Route("by-id", policies=("p1",)),
        Route("weekly", policies=("weekly",)),
        Route("recoveries", events=(Event.RECOVERED,)),
    ]
    assert routed(alert, routes) == ["all", "nightly", "by-id"]


def test_payload_keys_are_the_documented_ones() -> None:
    body = payload(evaluate({}, [failed(WEB, True)], T0).alerts[0])
    assert set(body) == {
        "version", "event", "condition", "severity", "policy", "policy_id", "target",
        "target_name", "detail", "ref", "since", "at", "summary",
    }  # fmt: skip
    assert body["event"] == "run_failed" and body["severity"] == "critical"
    assert (
        body["target_name"] == "web" and body["summary"] == "[stackback] run failed: nightly: web"
    )


@given(st.lists(st.lists(st.booleans(), min_size=2, max_size=2), max_size=30))
def test_alerts_are_exactly_the_changes(rounds: list[list[bool]]) -> None:
    states: dict[StateKey, AlertState] = {}
    before = [False, False]
    for step, actives in enumerate(rounds):
        facts = [failed(WEB, actives[0]), failed(DB, actives[1])]
        events = apply(states, facts, T0 + timedelta(minutes=step))
        changes = sum(1 for was, now in zip(before, actives, strict=True) if was != now)
        assert len(events) == changes
        before = actives
