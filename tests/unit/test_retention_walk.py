"""The retention walk skips spans no rule can keep: it must decide as the plain walk does.

``plain_walk`` is the item-by-item walk ``apply_policy`` used before it learnt to skip
(every item converted to the zone, every rule asked); the property compares both on
backups crowded around month and year ends in zones with odd offsets and DST.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from stackback.retention import (
    _PERIOD_OF,
    COUNT_RULES,
    FUTURE_REASON,
    RetentionPolicy,
    _duration_label,
    _threshold,
    apply_policy,
)

ZONES = (
    "UTC",
    "Europe/Amsterdam",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "Australia/Lord_Howe",
    "America/St_Johns",
)
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Item:
    created_at: datetime
    number: int


def plain_walk(
    items: list[Item], policy: RetentionPolicy, now: datetime, zone: ZoneInfo
) -> tuple[list[int], list[int], list[tuple[str, ...]]]:
    timed = sorted(items, key=lambda item: item.created_at, reverse=True)
    anchor = next((i.created_at for i in timed if i.created_at <= now), None)
    counts = {name: getattr(policy, name) for name in COUNT_RULES if getattr(policy, name)}
    last: dict[str, Hashable] = {}
    withins = {
        name: _threshold(duration, anchor, zone)
        for name, duration in policy.duration_rules().items()
        if name != "within"
    }
    within_last: dict[str, Hashable] = {}
    threshold = _threshold(policy.within, anchor, zone) if policy.within else None
    keep, forget, why = [], [], []
    for position, item in enumerate(timed):
        instant, local = item.created_at, item.created_at.astimezone(zone)
        reasons = []
        if policy.within is not None:
            if instant > now:
                reasons.append(FUTURE_REASON)
            elif threshold is None or instant > threshold:
                reasons.append(f"within {policy.within}")
        for name in counts:
            period_of = _PERIOD_OF.get(name)
            period = position if period_of is None else period_of(local)
            if counts[name] > 0 and (name not in last or last[name] != period):
                counts[name] -= 1
                last[name] = period
                reasons.append(name)
        for name, bound in withins.items():
            period = _PERIOD_OF[name.removeprefix("within_")](local)
            if (bound is None or instant > bound) and within_last.get(name) != period:
                within_last[name] = period
                reasons.append(f"{_duration_label(name)} {policy.duration_rules()[name]}")
        if reasons:
            keep.append(item.number)
            why.append(tuple(reasons))
        else:
            forget.append(item.number)
    return keep, forget, why


boundary_days = st.sampled_from(
    [datetime(y, m, 1, tzinfo=UTC) for y in range(2019, 2027) for m in (1, 2, 3, 7, 10, 12)]
)
instants = st.builds(
    lambda day, hours: day + timedelta(hours=hours),
    boundary_days,
    st.floats(min_value=-80.0, max_value=80.0, allow_nan=False).map(lambda h: round(h, 2)),
)
policies = st.builds(
    RetentionPolicy,
    last=st.integers(0, 3),
    daily=st.integers(0, 3),
    weekly=st.integers(0, 2),
    monthly=st.integers(0, 30),
    yearly=st.integers(0, 10),
    within=st.sampled_from([None, "3d", "2m"]),
    within_monthly=st.sampled_from([None, "1y"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(instants, min_size=1, max_size=60),
    policies,
    st.sampled_from(ZONES),
)
def test_the_walk_decides_as_the_plain_walk(
    times: list[datetime], policy: RetentionPolicy, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    items = [Item(t, n) for n, t in enumerate(times)]
    decision = apply_policy(items, policy, now=NOW, tz=zone)
    kept = [i.number for i in decision.keep]
    forgotten = [i.number for i in decision.forget]
    if policy.is_empty():
        assert forgotten == []
        return
    expected_keep, expected_forget, expected_why = plain_walk(items, policy, NOW, zone)
    assert kept == expected_keep
    assert sorted(forgotten) == sorted(expected_forget)
    assert decision.keep_reasons == expected_why


def test_a_long_history_is_decided_as_the_plain_walk_does() -> None:
    """Years of backups every 7 hours: long spans skipped, every month and year end walked."""
    start = datetime(2015, 1, 1, 3, 0, tzinfo=UTC)
    items = [Item(start + timedelta(hours=7 * n), n) for n in range(12_000)]
    policy = RetentionPolicy(last=3, daily=5, monthly=40, yearly=20)
    for zone_name in ("Pacific/Apia", "Europe/Amsterdam"):
        zone = ZoneInfo(zone_name)
        decision = apply_policy(items, policy, now=NOW, tz=zone)
        expected_keep, _, expected_why = plain_walk(items, policy, NOW, zone)
        assert [i.number for i in decision.keep] == expected_keep
        assert decision.keep_reasons == expected_why
        assert len(decision.keep) + len(decision.forget) == len(items)
