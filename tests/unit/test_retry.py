"""The one retry rule of the engine: backoff with jitter, bounded by a deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackback.errors import InvalidInput
from stackback.retry import RetryDecision, RetryStrategy

NOW = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
PLAIN = RetryStrategy(jitter=0.0)
SECOND = timedelta(seconds=1)


def _attempts(strategy: RetryStrategy, deadline: datetime, key: str = "run-1") -> list[datetime]:
    """Every attempt made on time while the failure lasts, from the first one at NOW."""
    attempts = [NOW]
    while len(attempts) < 10_000:
        decision = strategy.decide(
            now=attempts[-1], deadline=deadline, failing_for=attempts[-1] - NOW, key=key
        )
        if decision.retry_at is None:
            return attempts
        attempts.append(decision.retry_at)
    raise AssertionError("never gave up")


def test_the_waits_double_from_base_up_to_the_maximum() -> None:
    attempts = _attempts(PLAIN, NOW + timedelta(minutes=30))
    gaps = [(b - a).total_seconds() for a, b in pairwise(attempts)]
    assert gaps[:5] == [30, 60, 120, 240, 300]
    assert set(gaps[5:-1]) == {300}


def test_the_last_attempt_comes_just_before_the_deadline_then_it_gives_up() -> None:
    deadline = NOW + timedelta(minutes=30)
    attempts = _attempts(PLAIN, deadline)
    assert attempts[-1] == deadline - SECOND
    decision = PLAIN.decide(now=attempts[-1], deadline=deadline, failing_for=SECOND, key="k")
    assert decision == RetryDecision(None) and decision.gives_up


def test_it_gives_up_at_once_when_no_attempt_fits_before_the_deadline() -> None:
    for deadline in (NOW - SECOND, NOW, NOW + SECOND):
        assert PLAIN.decide(now=NOW, deadline=deadline, failing_for=timedelta(0), key="k").gives_up
    kept = PLAIN.decide(now=NOW, deadline=NOW + 2 * SECOND, failing_for=timedelta(0), key="k")
    assert kept.retry_at == NOW + SECOND


def test_jitter_is_the_same_for_the_same_key_and_differs_between_keys() -> None:
    strategy = RetryStrategy()
    waited = timedelta(seconds=90)
    delays = {strategy.delay(waited, f"run-{n}") for n in range(20)}
    assert len(delays) == 20
    assert strategy.delay(waited, "run-3") == strategy.delay(waited, "run-3")
    assert all(timedelta(seconds=108) <= d <= timedelta(seconds=120) for d in delays)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"base": timedelta(0)}, "base"),
        ({"maximum": timedelta(seconds=10)}, "maximum"),
        ({"jitter": 1.0}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"margin": -SECOND}, "margin"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RetryStrategy(**changes)  # type: ignore[arg-type]
    assert caught.value.field == field


strategies = st.builds(
    RetryStrategy,
    base=st.integers(1, 600).map(lambda s: timedelta(seconds=s)),
    maximum=st.integers(600, 7200).map(lambda s: timedelta(seconds=s)),
    jitter=st.floats(0.0, 0.99),
    margin=st.integers(0, 5).map(lambda s: timedelta(seconds=s)),
)
durations = st.integers(0, 48 * 3600).map(lambda s: timedelta(seconds=s))


@given(strategies, durations, durations, st.text(max_size=20))
def test_a_retry_is_never_planned_past_the_deadline(
    strategy: RetryStrategy, failing_for: timedelta, left: timedelta, key: str
) -> None:
    deadline = NOW + left
    decision = strategy.decide(now=NOW, deadline=deadline, failing_for=failing_for, key=key)
    assert decision.gives_up == (left <= strategy.margin)
    if decision.retry_at is not None:
        assert NOW < decision.retry_at <= deadline - strategy.margin


@given(strategies, durations, st.text(max_size=20))
def test_a_delay_is_within_its_jitter_and_never_above_the_maximum(
    strategy: RetryStrategy, failing_for: timedelta, key: str
) -> None:
    plain = strategy.plain_delay(failing_for)
    delay = strategy.delay(failing_for, key)
    assert plain * (1 - strategy.jitter) - timedelta(microseconds=1) <= delay <= plain
    assert delay <= strategy.maximum
    assert strategy.base <= plain <= strategy.maximum


@given(strategies, durations, durations)
def test_the_plain_delay_never_shrinks_as_the_failure_lasts(
    strategy: RetryStrategy, one: timedelta, other: timedelta
) -> None:
    shorter, longer = sorted((one, other))
    assert strategy.plain_delay(shorter) <= strategy.plain_delay(longer)


@given(strategies, st.text(max_size=20))
def test_attempts_on_time_reach_the_maximum_and_stay_before_the_deadline(
    strategy: RetryStrategy, key: str
) -> None:
    deadline = NOW + 4 * strategy.maximum + strategy.margin + SECOND
    attempts = _attempts(strategy, deadline, key)
    assert attempts == sorted(set(attempts))
    assert all(at <= deadline - strategy.margin for at in attempts)
    gaps = [b - a for a, b in pairwise(attempts)]
    assert max(gaps) >= strategy.maximum * (1 - strategy.jitter) - timedelta(microseconds=1)
