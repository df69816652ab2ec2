from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackback.errors import InvalidInput
from stackback.schedule import (
    CronSchedule,
    cron_schedule,
    parse_timezone,
    spread_offset,
    validate_cron,
)

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "field_name", "value", "problem"),
    [
        ("61 * * * *", "minute", "61", "out of range 0-59"),
        ("* 24 * * *", "hour", "24", "out of range 0-23"),
        ("0 0 0 * *", "day-of-month", "0", "out of range 1-31"),
        ("0 0 32 * *", "day-of-month", "32", "out of range 1-31"),
        ("0 0 * 13 *", "month", "13", "out of range 1-12"),
        ("0 0 * * 8", "day-of-week", "8", "out of range 0-7"),
        ("0 0-25 * * *", "hour", "0-25", "out of range 0-23"),
        ("abc * * * *", "minute", "abc", "is not valid"),
        ("*/0 * * * *", "minute", "*/0", "is not valid"),
        ("5-2 * * * *", "minute", "5-2", "is not valid"),
        ("0 0 * FOO *", "month", "FOO", "is not valid"),
        ("0 0 * * 1#6", "day-of-week", "1#6", "is not valid"),
        ("0 0 1, * *", "day-of-month", "1,", "is not valid"),
    ],
)
def test_validate_cron_names_the_offending_field(
    expr: str, field_name: str, value: str, problem: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_cron(expr)
    assert caught.value.field == "cron"
    assert f"invalid cron expression {expr!r}" in caught.value.message
    assert f"{field_name} field {value!r}" in caught.value.message
    assert problem in caught.value.message


def test_validate_cron_minute_out_of_range_message_is_exact() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_cron("61 * * * *")
    assert caught.value.message == (
        "invalid cron expression '61 * * * *': minute field '61' is out of range 0-59"
    )


def test_validate_cron_rejects_day_that_never_occurs_in_the_month() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_cron("0 0 30 2 *")
    assert caught.value.field == "cron"
    assert "day-of-month field '30'" in caught.value.message
    assert "month field '2'" in caught.value.message


@pytest.mark.parametrize(
    ("expr", "count"),
    [("0 0 * * * *", 6), ("0 0 0 * * * 2030", 7), ("0 0 * *", 4), ("", 0), ("   ", 0)],
)
def test_validate_cron_requires_exactly_five_fields(expr: str, count: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_cron(expr)
    assert caught.value.field == "cron"
    assert "expected 5 fields" in caught.value.message
    assert f"got {count}" in caught.value.message


@pytest.mark.parametrize("alias", ["@daily", "@hourly", "@weekly", "@reboot", "@DAILY"])
def test_validate_cron_rejects_aliases(alias: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_cron(alias)
    assert caught.value.field == "cron"
    assert "not supported" in caught.value.message


def test_validate_cron_alias_message_suggests_the_five_field_form() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_cron("@daily")
    assert "'0 0 * * *'" in caught.value.message


@pytest.mark.parametrize("garbage", ["not a cron expression", "* * * * * * * * *", "🕑 * * * *"])
def test_validate_cron_rejects_garbage(garbage: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_cron(garbage)
    assert caught.value.field == "cron"


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("  0   2 * *\t* ", "0 2 * * *"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 3 L * *", "0 3 L * *"),
        ("0 3 * * MON#2", "0 3 * * MON#2"),
        ("0 3 * jan,feb sun-sat", "0 3 * jan,feb sun-sat"),
    ],
)
def test_validate_cron_accepts_and_collapses_whitespace(expr: str, normalised: str) -> None:
    assert validate_cron(expr) == normalised


def test_parse_timezone_returns_the_zone() -> None:
    assert parse_timezone("Europe/Amsterdam") == AMSTERDAM
    assert parse_timezone("UTC").utcoffset(datetime(2024, 1, 1)) == timedelta(0)


@pytest.mark.parametrize(
    "name",
    ["", "Europe/Nowhere", "Mars/Olympus_Mons", "../etc/passwd", "/etc/localtime", "localtime"],
)
def test_parse_timezone_rejects_unknown_names(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_timezone(name)
    assert caught.value.field == "timezone"
    assert repr(name) in caught.value.message


@pytest.mark.parametrize(
    ("typo", "suggestion"), [("Europe/Amsterdm", "Europe/Amsterdam"), ("utc", "UTC")]
)
def test_parse_timezone_suggests_a_close_name(typo: str, suggestion: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_timezone(typo)
    assert f"did you mean {suggestion!r}" in caught.value.message


def test_schedule_validates_and_normalises_on_construction() -> None:
    schedule = CronSchedule(" 0  2 * * * ", "Europe/Amsterdam")
    assert schedule.expr == "0 2 * * *"
    assert schedule == CronSchedule("0 2 * * *", "Europe/Amsterdam")
    assert schedule.zone == AMSTERDAM
    assert CronSchedule("0 2 * * *").timezone == "UTC"
    with pytest.raises(InvalidInput) as bad_cron:
        CronSchedule("0 2 * * * *", "UTC")
    assert bad_cron.value.field == "cron"
    with pytest.raises(InvalidInput) as bad_zone:
        CronSchedule("0 2 * * *", "Europe/Atlantis")
    assert bad_zone.value.field == "timezone"
    with pytest.raises(InvalidInput):
        dataclasses.replace(schedule, timezone="Nowhere")


# --- next_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "zone", "instant", "expected"),
    [
        ("0 3 * * *", "UTC", utc(2024, 5, 1, 12), utc(2024, 5, 2, 3)),
        ("0 3 * * *", "UTC", utc(2024, 5, 2, 3), utc(2024, 5, 3, 3)),
        ("0 3 * * *", "UTC", utc(2024, 5, 2, 2, 59, 59, 999999), utc(2024, 5, 2, 3)),
        ("*/15 * * * *", "UTC", utc(2024, 5, 1, 12, 7, 30), utc(2024, 5, 1, 12, 15)),
        ("0 0 1 * *", "UTC", utc(2024, 2, 15), utc(2024, 3, 1)),
        ("0 0 29 2 *", "UTC", utc(2025, 1, 1), utc(2028, 2, 29)),
        # 03:00 CEST is 01:00 UTC in summer, 03:00 CET is 02:00 UTC in winter
        ("0 3 * * *", "Europe/Amsterdam", utc(2024, 7, 1, 0), utc(2024, 7, 1, 1)),
        ("0 3 * * *", "Europe/Amsterdam", utc(2024, 12, 1, 0), utc(2024, 12, 1, 2)),
        # Friday 2024-01-05 10:00 EST -> Monday 09:00 EST
        ("0 9 * * 1-5", "America/New_York", utc(2024, 1, 5, 15), utc(2024, 1, 8, 14)),
        ("0 9 * * 1-5", "America/New_York", utc(2024, 7, 5, 12), utc(2024, 7, 5, 13)),
    ],
)
def test_next_after(expr: str, zone: str, instant: datetime, expected: datetime) -> None:
    result = CronSchedule(expr, zone).next_after(instant)
    assert result == expected
    assert result.tzinfo is UTC


def test_next_after_accepts_an_instant_in_any_zone() -> None:
    schedule = CronSchedule("0 3 * * *", "Europe/Amsterdam")
    in_new_york = datetime(2024, 6, 30, 20, 0, tzinfo=NEW_YORK)  # 2024-07-01 00:00 UTC
    assert schedule.next_after(in_new_york) == utc(2024, 7, 1, 1)


def test_next_after_rejects_naive_instant() -> None:
    with pytest.raises(InvalidInput) as caught:
        CronSchedule("0 3 * * *").next_after(datetime(2024, 1, 1))
    assert caught.value.field == "instant"


def test_next_after_reports_a_schedule_that_stops_firing() -> None:
    with pytest.raises(InvalidInput) as caught:
        CronSchedule("0 0 1 1 *").next_after(utc(9999, 6, 1))
    assert "never fires" in caught.value.message


# --- daylight saving time -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "zone", "instant", "expected"),
    [
        # Amsterdam spring forward 2021-03-28: 02:00 CET -> 03:00 CEST (01:00 UTC).
        ("30 2 * * *", "Europe/Amsterdam", utc(2021, 3, 27, 12), utc(2021, 3, 28, 1)),
        ("30 2 * * *", "Europe/Amsterdam", utc(2021, 3, 28, 1), utc(2021, 3, 29, 0, 30)),
        ("0 * * * *", "Europe/Amsterdam", utc(2021, 3, 28, 0, 30), utc(2021, 3, 28, 1)),
        # Amsterdam fall back 2021-10-31: 03:00 CEST -> 02:00 CET (01:00 UTC).
        ("30 2 * * *", "Europe/Amsterdam", utc(2021, 10, 30, 12), utc(2021, 10, 31, 0, 30)),
        ("30 2 * * *", "Europe/Amsterdam", utc(2021, 10, 31, 0, 30), utc(2021, 11, 1, 1, 30)),
        # start in the second pass of 02:xx, before 02:30: 02:30 already fired in the first
        ("30 2 * * *", "Europe/Amsterdam", utc(2021, 10, 31, 1, 15), utc(2021, 11, 1, 1, 30)),
        ("30 2 * * *", "Europe/Amsterdam", utc(2021, 10, 31, 1, 45), utc(2021, 11, 1, 1, 30)),
        # New York spring forward 2021-03-14 (07:00 UTC), fall back 2021-11-07 (06:00 UTC).
        ("30 2 * * *", "America/New_York", utc(2021, 3, 13, 12), utc(2021, 3, 14, 7)),
        ("30 1 * * *", "America/New_York", utc(2021, 11, 6, 12), utc(2021, 11, 7, 5, 30)),
        ("30 1 * * *", "America/New_York", utc(2021, 11, 7, 5, 30), utc(2021, 11, 8, 6, 30)),
        ("30 1 * * *", "America/New_York", utc(2021, 11, 7, 6, 15), utc(2021, 11, 8, 6, 30)),
    ],
)
def test_next_after_across_dst(expr: str, zone: str, instant: datetime, expected: datetime) -> None:
    assert CronSchedule(expr, zone).next_after(instant) == expected


def test_nonexistent_local_time_fires_at_first_valid_instant() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Amsterdam")
    [(local, in_utc)] = schedule.describe_next(utc(2021, 3, 27, 12))
    assert (local.hour, local.minute) == (3, 0)
    assert local.utcoffset() == timedelta(hours=2)
    assert in_utc == utc(2021, 3, 28, 1)


def test_repeated_local_time_fires_once_for_fixed_hour() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Amsterdam")
    fires = schedule.fires_between(utc(2021, 10, 30, 12), utc(2021, 10, 31, 12))
    assert fires == [utc(2021, 10, 31, 0, 30)]


def test_repeated_hour_fires_in_both_passes_for_hourly() -> None:
    schedule = CronSchedule("0 * * * *", "Europe/Amsterdam")
    fires = schedule.fires_between(utc(2021, 10, 30, 23, 30), utc(2021, 10, 31, 2, 30))
    assert fires == [utc(2021, 10, 31, 0), utc(2021, 10, 31, 1), utc(2021, 10, 31, 2)]
    local = [
        (fire.astimezone(AMSTERDAM).hour, fire.astimezone(AMSTERDAM).utcoffset()) for fire in fires
    ]
    assert local == [(2, timedelta(hours=2)), (2, timedelta(hours=1)), (3, timedelta(hours=1))]


# --- the guard, as a property -------------------------------------------------------------


@functools.cache
def _offset_changes(zone: ZoneInfo, year: int) -> tuple[datetime, ...]:
    """UTC instants (to the hour) at which ``zone`` changes its offset during ``year``."""
    changes: list[datetime] = []
    day = utc(year, 1, 1)
    while day.year == year:
        next_day = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != next_day.astimezone(zone).utcoffset():
            hour = day
            while hour.astimezone(zone).utcoffset() == day.astimezone(zone).utcoffset():
                hour += timedelta(hours=1)
            changes.append(hour)
        day = next_day
    return tuple(changes)


ZONES = [AMSTERDAM, NEW_YORK, ZoneInfo("UTC")]


@st.composite
def instants(draw: st.DrawFn, zone: ZoneInfo) -> datetime:
    """Aware instants in 2020-2030; half of them within hours of a DST change of ``zone``."""
    if draw(st.booleans()):
        return draw(
            st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))
        )
    changes = _offset_changes(zone, draw(st.integers(2020, 2030)))
    if not changes:
        return draw(
            st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))
        )
    change = draw(st.sampled_from(changes))
    seconds = draw(st.integers(-3 * 3600, 3 * 3600))
    microseconds = draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
    moment = change + timedelta(seconds=seconds, microseconds=microseconds)
    return moment.astimezone(draw(st.sampled_from([UTC, zone, NEW_YORK])))


LocalPredicate = Callable[[datetime], bool]
FINE_GRAINED: dict[str, LocalPredicate] = {
    "0 * * * *": lambda local: local.minute == 0,
    "*/30 * * * *": lambda local: local.minute in (0, 30),
    "15,45 * * * *": lambda local: local.minute in (15, 45),
}
# expr -> (hour, minute, allowed weekdays with Monday=0)
FIXED_TIME: dict[str, tuple[int, int, frozenset[int]]] = {
    "30 2 * * *": (2, 30, frozenset(range(7))),
    "0 1 * * 0": (1, 0, frozenset({6})),
    "45 2 * * 1-5": (2, 45, frozenset(range(5))),
}


def _resolve_local(local_day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    """The documented rule: first pass of a repeated time, next existing minute of a gap."""
    wall = datetime(local_day.year, local_day.month, local_day.day, hour, minute)
    while wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        wall += timedelta(minutes=1)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_next_after_fine_grained_matches_minute_by_minute_scan(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ZONES))
    expr = data.draw(st.sampled_from(sorted(FINE_GRAINED)))
    instant = data.draw(instants(zone))
    fires = FINE_GRAINED[expr]

    result = CronSchedule(expr, zone.key).next_after(instant)

    assert result > instant
    assert result == _first_minute_matching(fires, zone, instant)


def _first_minute_matching(fires: LocalPredicate, zone: ZoneInfo, instant: datetime) -> datetime:
    """The reference: the first whole UTC minute after ``instant`` whose local time fires."""
    candidate = instant.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not fires(candidate.astimezone(zone)):
        candidate += timedelta(minutes=1)
    return candidate


# Zones whose changes cronsim 2.8 gets wrong for these expressions: Lord Howe's 30-minute
# change (it skipped 10:00 on the day of the change) and Havana's midnight change (it fired
# at 01:00, an hour "*/20 0 * * 0" does not list).
ODD_ZONES = [
    ZoneInfo("Australia/Lord_Howe"),
    ZoneInfo("America/Havana"),
    ZoneInfo("Pacific/Chatham"),
]
ELAPSED_TIME: dict[str, LocalPredicate] = {
    "*/30 10 * * *": lambda local: local.minute in (0, 30) and local.hour == 10,
    "*/20 0,4 * * *": lambda local: local.minute in (0, 20, 40) and local.hour in (0, 4),
    "*/20 0 * * 0": lambda local: (
        local.minute in (0, 20, 40) and local.hour == 0 and local.weekday() == 6
    ),
    "15 */2 * * 1-5": lambda local: (
        local.minute == 15 and local.hour % 2 == 0 and local.weekday() < 5
    ),
}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_next_after_elapsed_time_matches_a_minute_scan_in_odd_zones(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ODD_ZONES))
    expr = data.draw(st.sampled_from(sorted(ELAPSED_TIME)))
    instant = data.draw(instants(zone))
    fires = ELAPSED_TIME[expr]

    result = CronSchedule(expr, zone.key).next_after(instant)

    assert result == _first_minute_matching(fires, zone, instant)


def test_lord_howe_fires_at_ten_on_the_day_of_its_change() -> None:
    schedule = CronSchedule("*/30 10 * * *", "Australia/Lord_Howe")
    # the previous day's last fire; the clocks go back from 02:00 to 01:30 in between
    start = datetime(2021, 4, 3, 10, 30, tzinfo=ZoneInfo("Australia/Lord_Howe"))
    assert schedule.fires_between(start, start + timedelta(hours=24)) == [
        datetime(2021, 4, 4, 10, tzinfo=ZoneInfo("Australia/Lord_Howe")).astimezone(UTC),
        datetime(2021, 4, 4, 10, 30, tzinfo=ZoneInfo("Australia/Lord_Howe")).astimezone(UTC),
    ]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_next_after_fixed_time_is_the_first_local_occurrence_after(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ZONES))
    expr = data.draw(st.sampled_from(sorted(FIXED_TIME)))
    instant = data.draw(instants(zone))
    hour, minute, weekdays = FIXED_TIME[expr]

    result = CronSchedule(expr, zone.key).next_after(instant)

    assert result > instant
    local_day = instant.astimezone(zone).date() - timedelta(days=1)
    occurrences = (
        _resolve_local(local_day + timedelta(days=n), hour, minute, zone)
        for n in range(10)
        if (local_day + timedelta(days=n)).weekday() in weekdays
    )
    assert result == next(fire for fire in occurrences if fire > instant)


# --- the wall-clock shortcut of next_after against cronsim itself ---------------------------

SHORTCUT_ZONES = [
    *ZONES,
    ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift
    ZoneInfo("Asia/Kathmandu"),  # +05:45, no DST
    ZoneInfo("America/Santiago"),  # DST changes at midnight local
    ZoneInfo("Pacific/Chatham"),  # +12:45/+13:45
]


def _cron_field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    label = st.sampled_from(names) if names else number.map(str)
    return st.one_of(
        st.just("*"),
        number.map(str),
        label,
        st.tuples(number, number).map(lambda p: f"{min(p)}-{max(p)}"),
        st.lists(number, min_size=2, max_size=4, unique=True).map(
            lambda values: ",".join(map(str, values))
        ),
        st.integers(2, 12).map(lambda step: f"*/{step}"),
        st.tuples(number, st.integers(2, 6)).map(lambda p: f"{p[0]}/{p[1]}"),
    )


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    """Valid 5-field expressions, including L, LW, nL and n#k (which cronsim answers)."""
    dom = draw(st.one_of(_cron_field(1, 28), st.sampled_from(["L", "LW", "29", "31", "30"])))
    dow = draw(
        st.one_of(
            _cron_field(0, 7, ("MON-FRI", "SAT,SUN", "SUN", "TUE,THU")),
            st.sampled_from(["5L", "1#2", "0#5"]),
        )
    )
    if dow[0].isdigit() and ("L" in dow or "#" in dow):
        # "*/8" with "0#5" would need a 5th Sunday on day 1, 9, 17 or 25: never (cronsim then
        # searches 50 years, seconds per example). A free day of month always matches.
        dom = "*"
    fields = [
        draw(_cron_field(0, 59)),
        draw(_cron_field(0, 23)),
        dom,
        draw(_cron_field(1, 12)),
        dow,
    ]
    expr = " ".join(fields)
    try:
        return validate_cron(expr)
    except InvalidInput:  # e.g. "0 0 31 2 *": no such day
        return "0 0 * * *"


@settings(max_examples=int(os.environ.get("STACKBACK_SHORTCUT_EXAMPLES", "1500")), deadline=None)
@given(st.data())
def test_next_after_shortcut_agrees_with_cronsim(data: st.DataObject) -> None:
    """The shortcut, and fixed-time expressions, agree with cronsim; elapsed-time ones with
    a minute scan (cronsim 2.8 is wrong for a few of those: see ODD_ZONES)."""
    zone = data.draw(st.sampled_from(SHORTCUT_ZONES))
    expr = data.draw(cron_expressions())
    instant = data.draw(instants(zone))
    schedule = CronSchedule(expr, zone.key)

    by_cronsim = next(schedule._cronsim_fires_after(instant, "instant"), None)
    shortcut = schedule._next_by_wall_clock(instant)

    if shortcut is not None:
        assert shortcut == by_cronsim
    if schedule._elapsed and schedule._wall is not None:
        _assert_first_matching_minute(schedule, instant, schedule.next_after(instant))
    elif by_cronsim is None:  # e.g. "* * */8 * 0#5": the 5th Sunday is never day 1, 9, 17 or 25
        with pytest.raises(InvalidInput):
            schedule.next_after(instant)
    else:
        assert schedule.next_after(instant) == by_cronsim


def _assert_first_matching_minute(
    schedule: CronSchedule, instant: datetime, fire: datetime
) -> None:
    """``fire`` is the first minute after ``instant`` whose wall time the fields match."""
    fields = schedule._wall
    assert fields is not None

    def matches(moment: datetime) -> bool:
        local = moment.astimezone(schedule.zone)
        return (
            local.minute in fields.minutes
            and local.hour in fields.hours
            and fields._day_matches(local.date())
        )

    assert fire > instant and matches(fire)
    moment = instant.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    scan_end = min(fire, moment + timedelta(days=3))  # a minute scan; farther fires: their day
    while moment < scan_end:
        assert not matches(moment), f"{moment} matches before {fire}"
        moment += timedelta(minutes=1)


@pytest.mark.parametrize("expr", ["*/2 */3 22 * 0,5,3", "*/2 3 * * *", "* * * * *"])
def test_next_after_terminates_in_a_repeated_time_cronsim_cycles_through(expr: str) -> None:
    """Chatham repeats 02:45-03:45 on 2020-04-05; cronsim 2.8 loops in its first pass."""
    start = utc(2020, 4, 4, 14, 0, 5)  # 02:45:05+12:45, the second pass
    fire = CronSchedule(expr, "Pacific/Chatham").next_after(start)
    assert start < fire <= start + timedelta(days=7)
    assert CronSchedule(expr, "Pacific/Chatham").fires_between(start, fire) == [fire]


def test_next_after_shortcut_answers_away_from_dst_and_defers_near_it() -> None:
    """Guards the shortcut's coverage: if it never answered, the property above would be idle."""
    schedule = CronSchedule("30 2 * * *", "Europe/Amsterdam")
    assert schedule._next_by_wall_clock(utc(2021, 3, 10, 12)) == utc(2021, 3, 11, 1, 30)
    assert schedule._next_by_wall_clock(utc(2021, 3, 27, 12)) is None  # 02:30 does not exist
    assert schedule.next_after(utc(2021, 3, 27, 12)) == utc(2021, 3, 28, 1)
    assert CronSchedule("0 1 L * *")._next_by_wall_clock(utc(2021, 3, 10)) is None


# --- fires_between ------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_fires_between_equals_iterating_cronsim(data: st.DataObject) -> None:
    """fires_between chains next_after, as the scheduler does; where cronsim is right
    (these zones), that is cronsim's own sequence, repeated hours and gaps included."""
    zone = data.draw(st.sampled_from(ZONES))
    expr = data.draw(st.sampled_from(sorted([*FINE_GRAINED, *FIXED_TIME])))
    start = data.draw(instants(zone))
    end = start + data.draw(st.timedeltas(timedelta(0), timedelta(days=3)))
    schedule = CronSchedule(expr, zone.key)

    expected: list[datetime] = []
    for fire in schedule._cronsim_fires_after(start, "start"):
        if fire > end:
            break
        expected.append(fire)

    assert schedule.fires_between(start, end) == expected
    limit = data.draw(st.integers(0, 5))
    assert schedule.fires_between(start, end, limit=limit) == expected[:limit]


def test_fires_between_includes_end_and_excludes_start() -> None:
    schedule = CronSchedule("0 * * * *")
    assert schedule.fires_between(utc(2024, 1, 1, 0), utc(2024, 1, 1, 3)) == [
        utc(2024, 1, 1, 1),
        utc(2024, 1, 1, 2),
        utc(2024, 1, 1, 3),
    ]
    assert schedule.fires_between(utc(2024, 1, 1, 0), utc(2024, 1, 1, 0)) == []


def test_fires_between_rejects_bad_arguments() -> None:
    schedule = CronSchedule("0 * * * *")
    with pytest.raises(InvalidInput) as naive:
        schedule.fires_between(datetime(2024, 1, 1), utc(2024, 1, 2))
    assert naive.value.field == "start"
    with pytest.raises(InvalidInput) as naive_end:
        schedule.fires_between(utc(2024, 1, 1), datetime(2024, 1, 2))
    assert naive_end.value.field == "end"
    with pytest.raises(InvalidInput) as inverted:
        schedule.fires_between(utc(2024, 1, 2), utc(2024, 1, 1))
    assert inverted.value.field == "end"
    with pytest.raises(InvalidInput) as negative:
        schedule.fires_between(utc(2024, 1, 1), utc(2024, 1, 2), limit=-1)
    assert negative.value.field == "limit"


# --- describe_next ------------------------------------------------------------------------


def test_describe_next_pairs_local_and_utc() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Amsterdam")
    pairs = schedule.describe_next(utc(2021, 3, 27, 12), count=2)
    assert [in_utc for _, in_utc in pairs] == [utc(2021, 3, 28, 1), utc(2021, 3, 29, 0, 30)]
    assert [local.isoformat() for local, _ in pairs] == [
        "2021-03-28T03:00:00+02:00",
        "2021-03-29T02:30:00+02:00",
    ]
    assert all(local.tzinfo == AMSTERDAM for local, _ in pairs)


def test_describe_next_rejects_bad_count_and_naive_instant() -> None:
    schedule = CronSchedule("0 * * * *")
    with pytest.raises(InvalidInput) as bad_count:
        schedule.describe_next(utc(2024, 1, 1), count=0)
    assert bad_count.value.field == "count"
    with pytest.raises(InvalidInput) as naive:
        schedule.describe_next(datetime(2024, 1, 1))
    assert naive.value.field == "instant"


# --- spread_offset ------------------------------------------------------------------------


def test_spread_offset_is_deterministic_across_processes() -> None:
    keys = [f"policy-{n}:server-{n * 7}" for n in range(20)]
    here = [spread_offset(key, 60).total_seconds() for key in keys]
    script = (
        "from stackback.schedule import spread_offset\n"
        f"print([spread_offset(k, 60).total_seconds() for k in {keys!r}])"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environment
    ).stdout
    assert output.strip() == repr(here)
    assert here == [spread_offset(key, 60).total_seconds() for key in keys]


@pytest.mark.parametrize("window", [1, 7, 60, 1440])
def test_spread_offset_stays_in_window_in_whole_seconds(window: int) -> None:
    for n in range(500):
        offset = spread_offset(f"policy:{n}", window)
        assert timedelta(0) <= offset < timedelta(minutes=window)
        assert offset.microseconds == 0


def test_spread_offset_spreads_keys_over_the_window() -> None:
    minutes = {
        int(spread_offset(f"policy-a:target-{n}", 60).total_seconds()) // 60 for n in range(1000)
    }
    assert len(minutes) >= 50


def test_spread_offset_zero_window_is_no_offset() -> None:
    assert spread_offset("anything", 0) == timedelta(0)


def test_spread_offset_rejects_negative_window() -> None:
    with pytest.raises(InvalidInput) as caught:
        spread_offset("key", -1)
    assert caught.value.field == "window_minutes"


def test_cron_schedule_keeps_one_parsed_schedule_per_expression_and_zone() -> None:
    first = cron_schedule("0  2 * * *", "Europe/Amsterdam")
    assert first == CronSchedule("0 2 * * *", "Europe/Amsterdam")
    assert cron_schedule("0  2 * * *", "Europe/Amsterdam") is first
    assert cron_schedule("0  2 * * *", "UTC") is not first
    with pytest.raises(InvalidInput) as caught:
        cron_schedule("61 2 * * *", "UTC")
    assert caught.value.field == "cron"


def test_parsed_schedules_share_their_field_values() -> None:
    one, other = CronSchedule("5 1 * * *", "UTC"), CronSchedule("7 3 * * *", "Asia/Tokyo")
    assert one._wall is not None and other._wall is not None
    assert one._wall.days is other._wall.days and one._wall.months is other._wall.months
