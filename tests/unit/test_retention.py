"""Tests for stackback.retention: golden examples, validation and properties.

Expected results in the golden tests are derived by hand from the semantics in
/work/shared/notes/retention.md; the reasoning is written next to each case.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stackback.errors import InvalidInput
from stackback.retention import Duration, RetentionDecision, RetentionPolicy, apply_policy

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")
KATHMANDU_OFFSET = timezone(timedelta(hours=5, minutes=45))


@dataclass(eq=False)
class Backup:
    name: str
    created_at: datetime


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def names(items: Sequence[Backup]) -> list[str]:
    return [item.name for item in items]


# --------------------------------------------------------------------------- Duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2d", Duration(days=2)),
        ("1y6m", Duration(years=1, months=6)),
        ("2d12h", Duration(days=2, hours=12)),
        ("1y2m3d4h", Duration(1, 2, 3, 4)),
        ("6m1y", Duration(years=1, months=6)),
        ("36h", Duration(hours=36)),
        ("0d", Duration()),
    ],
)
def test_duration_parse(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (Duration(years=1, months=6), "1y6m"),
        (Duration(days=2, hours=12), "2d12h"),
        (Duration(1, 2, 3, 4), "1y2m3d4h"),
        (Duration(hours=36), "36h"),
        (Duration(), "0d"),
    ],
)
def test_duration_str_is_canonical(duration: Duration, text: str) -> None:
    assert str(duration) == text


@pytest.mark.parametrize(
    "text", ["", "5", "1w", "1.5d", "-1d", "+1d", " 1d", "1d ", "1D", "d", "1d1d", "1 d", "1dd"]
)
def test_duration_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Duration.parse(text)
    assert caught.value.field == "duration"


def test_duration_rejects_negative_component() -> None:
    with pytest.raises(InvalidInput) as caught:
        Duration(days=-1)
    assert caught.value.field == "days"


@pytest.mark.parametrize(
    ("instant", "duration", "expected"),
    [
        # Go AddDate: 2021-02-31 does not exist and rolls over to 2021-03-03.
        (utc(2021, 3, 31), "1m", utc(2021, 3, 3)),
        # 2019-02-29 does not exist and rolls over to 2019-03-01.
        (utc(2020, 2, 29), "1y", utc(2019, 3, 1)),
        # The note's within example: 2021-03-31 06:00 - 1m3d = 2021-02-28 06:00.
        (utc(2021, 3, 31, 6), "1m3d", utc(2021, 2, 28, 6)),
        # One step: (2021, 2, 30) -> 2021-03-02, not "clamp to Feb 28, then -1d" = Feb 27.
        (utc(2021, 3, 31, 6), "1m1d", utc(2021, 3, 2, 6)),
        # Leap year: (2020, 2, 31) -> 2020-03-02.
        (utc(2020, 3, 31), "1m", utc(2020, 3, 2)),
        (utc(2021, 3, 1, 6), "1d", utc(2021, 2, 28, 6)),
        # Date part first (02-27 06:00), then 12 absolute hours back.
        (utc(2021, 3, 1, 6), "2d12h", utc(2021, 2, 26, 18)),
        (utc(2021, 1, 15, 8, 30), "1y13m", utc(2018, 12, 15, 8, 30)),
        (utc(2021, 1, 15, 8, 30), "50h", utc(2021, 1, 13, 6, 30)),
    ],
)
def test_subtract_from_follows_go_add_date(
    instant: datetime, duration: str, expected: datetime
) -> None:
    assert Duration.parse(duration).subtract_from(instant) == expected


def test_subtract_from_days_use_wall_clock_hours_are_absolute() -> None:
    # DST started in Amsterdam on 2021-03-28 at 01:00 UTC.
    sunday_noon = datetime(2021, 3, 28, 12, tzinfo=AMSTERDAM)  # 10:00 UTC (CEST)
    one_day_back = Duration(days=1).subtract_from(sunday_noon)
    assert one_day_back == datetime(2021, 3, 27, 11, tzinfo=UTC)  # 12:00 CET
    assert one_day_back.tzinfo is AMSTERDAM
    assert (one_day_back.hour, one_day_back.minute) == (12, 0)
    assert Duration(hours=24).subtract_from(sunday_noon) == datetime(2021, 3, 27, 10, tzinfo=UTC)


def test_subtract_from_rejects_naive_and_out_of_range() -> None:
    with pytest.raises(InvalidInput):
        Duration(days=1).subtract_from(datetime(2021, 1, 1))
    with pytest.raises(InvalidInput):
        Duration(years=5000).subtract_from(utc(2021, 1, 1))


# --------------------------------------------------------------------------- RetentionPolicy


def test_policy_parses_text_durations() -> None:
    policy = RetentionPolicy(within="1y6m", within_daily="2d")  # type: ignore[arg-type]
    assert policy.within == Duration(years=1, months=6)
    assert policy.within_daily == Duration(days=2)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"daily": -1}, "daily"),
        ({"last": True}, "last"),
        ({"weekly": 1.0}, "weekly"),
        ({"monthly": "3"}, "monthly"),
        ({"yearly": None}, "yearly"),
        ({"within": "1w"}, "within"),
        ({"within": "1.5d"}, "within"),
        ({"within": "5"}, "within"),
        ({"within": ""}, "within"),
        ({"within": "0d"}, "within"),
        ({"within": Duration()}, "within"),
        ({"within": 5}, "within"),
        ({"within_daily": "2x"}, "within_daily"),
        ({"within_yearly": timedelta(days=1)}, "within_yearly"),
    ],
)
def test_policy_validation_names_the_field(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RetentionPolicy(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"keep_daily": 3}, "keep_daily"),
        ({"daily": 3, "hours": 1}, "hours"),
        ({"daily": "3"}, "daily"),
        ({"daily": -2}, "daily"),
        ({"within": "1w"}, "within"),
        ({"within_weekly": 2}, "within_weekly"),
    ],
)
def test_from_dict_rejects(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RetentionPolicy.from_dict(data)
    assert caught.value.field == field


def test_to_dict_and_from_dict() -> None:
    policy = RetentionPolicy(last=3, weekly=4, within=Duration(years=1, months=6))
    assert policy.to_dict() == {"last": 3, "weekly": 4, "within": "1y6m"}
    assert RetentionPolicy.from_dict({"last": 3, "weekly": 4, "within": "6m1y"}) == policy
    assert RetentionPolicy.from_dict({"daily": None, "within_daily": "2d"}) == RetentionPolicy(
        within_daily=Duration(days=2)
    )
    assert RetentionPolicy().to_dict() == {}


def test_describe() -> None:
    policy = RetentionPolicy(last=3, daily=7, weekly=4, within=Duration(days=2))
    assert policy.describe() == "last 3, daily 7, weekly 4, within 2d"
    assert RetentionPolicy(yearly=1, within_daily=Duration(days=2, hours=12)).describe() == (
        "yearly 1, within-daily 2d12h"
    )
    assert RetentionPolicy().describe() == "keep everything"


def test_is_empty() -> None:
    assert RetentionPolicy().is_empty()
    assert RetentionPolicy(last=0, daily=0).is_empty()
    assert not RetentionPolicy(yearly=1).is_empty()
    assert not RetentionPolicy(within_monthly=Duration(months=1)).is_empty()


# --------------------------------------------------------------------------- worked examples


def test_note_example_daily_two() -> None:
    backups = [
        Backup("04-01 08:00", utc(2021, 4, 1, 8)),
        Backup("04-01 12:00", utc(2021, 4, 1, 12)),
        Backup("04-01 23:59:59", utc(2021, 4, 1, 23, 59, 59)),
        Backup("04-02 00:00", utc(2021, 4, 2)),
        Backup("04-02 06:30", utc(2021, 4, 2, 6, 30)),
        Backup("04-03 11:11:11", utc(2021, 4, 3, 11, 11, 11)),
    ]
    decision = apply_policy(backups, RetentionPolicy(daily=2), now=utc(2021, 4, 4))
    assert names(decision.keep) == ["04-03 11:11:11", "04-02 06:30"]
    assert names(decision.forget) == ["04-02 00:00", "04-01 23:59:59", "04-01 12:00", "04-01 08:00"]
    assert decision.keep_reasons == [("daily",), ("daily",)]


def test_note_example_within_threshold_is_exclusive() -> None:
    # Newest 2021-03-31 06:00, within 1m3d -> threshold 2021-02-28 06:00, exclusive.
    backups = [
        Backup("on threshold", utc(2021, 2, 28, 6)),
        Backup("newest", utc(2021, 3, 31, 6)),
        Backup("one second inside", utc(2021, 2, 28, 6, 0, 1)),
        Backup("old", utc(2021, 1, 1)),
    ]
    policy = RetentionPolicy(within=Duration.parse("1m3d"))
    decision = apply_policy(backups, policy, now=utc(2021, 4, 10))
    assert names(decision.keep) == ["newest", "one second inside"]
    assert decision.keep_reasons == [("within 1m3d",), ("within 1m3d",)]
    assert names(decision.forget) == ["on threshold", "old"]


def test_note_example_weekly_uses_iso_weeks() -> None:
    backups = [
        Backup("2019-12-29 Sun W52", utc(2019, 12, 29, 12)),
        Backup("2019-12-30 Mon 2020-W01", utc(2019, 12, 30, 12)),
        Backup("2020-01-05 Sun 2020-W01", utc(2020, 1, 5, 12)),
    ]
    decision = apply_policy(backups, RetentionPolicy(weekly=2), now=utc(2020, 2, 1))
    assert names(decision.keep) == ["2020-01-05 Sun 2020-W01", "2019-12-29 Sun W52"]
    assert names(decision.forget) == ["2019-12-30 Mon 2020-W01"]


def test_iso_week_spans_new_year_but_yearly_does_not() -> None:
    backups = [Backup("2020-12-31", utc(2020, 12, 31, 9)), Backup("2021-01-03", utc(2021, 1, 3, 9))]
    now = utc(2021, 2, 1)
    weekly = apply_policy(backups, RetentionPolicy(weekly=5), now=now)
    assert names(weekly.keep) == ["2021-01-03"]  # both in 2020-W53
    yearly = apply_policy(backups, RetentionPolicy(yearly=5), now=now)
    assert names(yearly.keep) == ["2021-01-03", "2020-12-31"]


# --------------------------------------------------------------------------- golden table

# Letters are named newest first; weekdays and ISO weeks noted for the reader.
SERIES = {
    "A": utc(2016, 3, 1, 10),  # Tue, 2016-W09
    "B": utc(2016, 2, 29, 23, 30),  # Mon, W09; 2016-03-01 00:30 in Amsterdam
    "C": utc(2016, 2, 29, 9),  # Mon, W09
    "D": utc(2016, 2, 28, 12),  # Sun, W08
    "E": utc(2016, 2, 21, 12),  # Sun, W07
    "F": utc(2016, 1, 31, 18),  # Sun, W04
    "G": utc(2016, 1, 3, 7),  # Sun, 2015-W53
    "H": utc(2016, 1, 1, 7),  # Fri, 2015-W53
    "I": utc(2015, 12, 31, 12),  # Thu, 2015-W53
    "J": utc(2015, 12, 28, 11),  # Mon, 2015-W53
    "K": utc(2015, 12, 27, 11),  # Sun, 2015-W52
    "L": utc(2015, 6, 15, 8),  # Mon, 2015-W25
    "M": utc(2014, 11, 11, 11, 11),  # Tue, 2014-W46
}
SERIES_INPUT_ORDER = "GMALCJBEKDIHF"
SERIES_NOW = utc(2016, 3, 2)


def series_backups() -> list[Backup]:
    return [Backup(name, SERIES[name]) for name in SERIES_INPUT_ORDER]


def each(letters: str, *reasons: str) -> dict[str, tuple[str, ...]]:
    return {letter: reasons for letter in letters}


GOLDEN = [
    pytest.param({"last": 3}, UTC, each("ABC", "last"), id="last-3"),
    pytest.param({"last": 20}, UTC, each("ABCDEFGHIJKLM", "last"), id="last-more-than-backups"),
    pytest.param({"hourly": 4}, UTC, each("ABCD", "hourly"), id="hourly-4"),
    # Days: A 03-01; B, C 02-29 (B newer); D 02-28.
    pytest.param({"daily": 3}, UTC, each("ABD", "daily"), id="daily-3"),
    # In Amsterdam B is 03-01 00:30, same day as A (11:00); C 02-29; D 02-28.
    pytest.param({"daily": 3}, AMSTERDAM, each("ACD", "daily"), id="daily-3-amsterdam"),
    # Weeks: W09 A (B, C older), W08 D, W07 E.
    pytest.param({"weekly": 3}, UTC, each("ADE", "weekly"), id="weekly-3"),
    # Further: W04 F, 2015-W53 G (H, I, J older), W52 K, W25 L, 2014-W46 M.
    pytest.param({"weekly": 10}, UTC, each("ADEFGKLM", "weekly"), id="weekly-skips-empty"),
    # Months: 2016-03 A, 2016-02 B, 2016-01 F.
    pytest.param({"monthly": 3}, UTC, each("ABF", "monthly"), id="monthly-3"),
    # In Amsterdam B is in March with A, so February's newest is C.
    pytest.param({"monthly": 3}, AMSTERDAM, each("ACF", "monthly"), id="monthly-3-amsterdam"),
    # Then 2015-12 I, 2015-06 L, 2014-11 M.
    pytest.param({"monthly": 6}, UTC, each("ABFILM", "monthly"), id="monthly-6"),
    pytest.param({"yearly": 10}, UTC, each("AIM", "yearly"), id="yearly-10"),
    pytest.param(
        {"weekly": 2, "yearly": 2},
        UTC,
        {"A": ("weekly", "yearly"), "D": ("weekly",), "I": ("yearly",)},
        id="weekly-and-yearly",
    ),
    pytest.param(
        {"daily": 3, "weekly": 2, "monthly": 3, "yearly": 2},
        UTC,
        {
            "A": ("daily", "weekly", "monthly", "yearly"),
            "B": ("daily", "monthly"),
            "D": ("daily", "weekly"),
            "F": ("monthly",),
            "I": ("yearly",),
        },
        id="daily-weekly-monthly-yearly",
    ),
    pytest.param(
        {"last": 1, "monthly": 2},
        UTC,
        {"A": ("last", "monthly"), "B": ("monthly",)},
        id="last-and-monthly",
    ),
    # Anchor A (03-01 10:00); threshold 02-28 10:00.
    pytest.param({"within": "2d"}, UTC, each("ABCD", "within 2d"), id="within-2d"),
    # 02-29 10:00 - 10h = 02-29 00:00.
    pytest.param({"within": "1d10h"}, UTC, each("ABC", "within 1d10h"), id="within-1d10h"),
    # 02-29 10:00 - 22h = 02-28 12:00, exactly D: dropped.
    pytest.param({"within": "1d22h"}, UTC, each("ABC", "within 1d22h"), id="within-exact-edge"),
    # 2016-02-01 10:00: E (02-21) inside, F (01-31) outside.
    pytest.param({"within": "1m"}, UTC, each("ABCDE", "within 1m"), id="within-1m"),
    # 2015-03-01 10:00: only M is older.
    pytest.param({"within": "1y"}, UTC, each("ABCDEFGHIJKL", "within 1y"), id="within-1y"),
    # within 1d: threshold 02-29 10:00 -> A, B; yearly 2 -> A, I.
    pytest.param(
        {"within": "1d", "yearly": 2},
        UTC,
        {"A": ("within 1d", "yearly"), "B": ("within 1d",), "I": ("yearly",)},
        id="within-and-yearly",
    ),
    # 03-01 10:00 - 12h = 02-29 22:00: only A and B in range.
    pytest.param(
        {"within_hourly": "12h"}, UTC, each("AB", "within-hourly 12h"), id="within-hourly-12h"
    ),
    # - 36h = 02-28 22:00: A, B, C in range, each in its own hour; D (02-28 12:00) is not.
    pytest.param(
        {"within_hourly": "36h"}, UTC, each("ABC", "within-hourly 36h"), id="within-hourly-36h"
    ),
    # 02-27 10:00: A..D in range; newest of each day A, B, D.
    pytest.param({"within_daily": "3d"}, UTC, each("ABD", "within-daily 3d"), id="within-daily"),
    # 02-29 10:00 - 22h = 02-28 12:00, exactly D: dropped, so no backup of 02-28 is kept.
    pytest.param(
        {"within_daily": "1d22h"},
        UTC,
        each("AB", "within-daily 1d22h"),
        id="within-daily-exact-edge",
    ),
    # Anchor 03-01 11:00 CET - 3d = 02-27 11:00 CET; days A/B 03-01, C 02-29, D 02-28.
    pytest.param(
        {"within_daily": "3d"},
        AMSTERDAM,
        each("ACD", "within-daily 3d"),
        id="within-daily-amsterdam",
    ),
    # 02-01 10:00: A..E in range; weeks W09 A, W08 D, W07 E.
    pytest.param({"within_weekly": "1m"}, UTC, each("ADE", "within-weekly 1m"), id="within-weekly"),
    # 2015-03-01 10:00: A..L; months A, B, F, I (2015-12), L (2015-06).
    pytest.param(
        {"within_monthly": "1y"}, UTC, each("ABFIL", "within-monthly 1y"), id="within-monthly"
    ),
    pytest.param({"within_yearly": "2y"}, UTC, each("AIM", "within-yearly 2y"), id="within-yearly"),
    pytest.param(
        {"within": "2d", "within_daily": "3d"},
        UTC,
        {
            "A": ("within 2d", "within-daily 3d"),
            "B": ("within 2d", "within-daily 3d"),
            "C": ("within 2d",),
            "D": ("within 2d", "within-daily 3d"),
        },
        id="within-and-within-daily",
    ),
]


@pytest.mark.parametrize(("policy_data", "zone", "expected"), GOLDEN)
def test_golden_series(
    policy_data: dict[str, object], zone: tzinfo, expected: dict[str, tuple[str, ...]]
) -> None:
    decision = apply_policy(
        series_backups(), RetentionPolicy.from_dict(policy_data), now=SERIES_NOW, tz=zone
    )
    assert [(item.name, reasons) for item, reasons in decision.items_with_reasons()] == sorted(
        expected.items()
    )
    assert names(decision.forget) == [letter for letter in SERIES if letter not in expected]


def test_backups_in_other_offsets_are_ordered_by_instant() -> None:
    backups = [
        Backup("10:00 UTC", utc(2021, 6, 1, 10)),
        Backup("15:30 +05:45 = 09:45 UTC", datetime(2021, 6, 1, 15, 30, tzinfo=KATHMANDU_OFFSET)),
        Backup("06:30 New York = 10:30 UTC", datetime(2021, 6, 1, 6, 30, tzinfo=NEW_YORK)),
    ]
    decision = apply_policy(backups, RetentionPolicy(last=3), now=utc(2021, 7, 1))
    assert names(decision.keep) == [
        "06:30 New York = 10:30 UTC",
        "10:00 UTC",
        "15:30 +05:45 = 09:45 UTC",
    ]


def test_period_rules_use_the_given_zone_not_the_backups_own() -> None:
    # NY 06-01 23:30 is 06-02 03:30 UTC; UTC 06-02 01:00 is 06-01 21:00 in New York. On their own
    # wall clocks they fall on different days, but in any single zone they share one day.
    late_evening = Backup("NY 06-01 23:30", datetime(2021, 6, 1, 23, 30, tzinfo=NEW_YORK))
    early_utc = Backup("UTC 06-02 01:00", utc(2021, 6, 2, 1))
    backups = [early_utc, late_evening]
    now = utc(2021, 7, 1)
    in_utc = apply_policy(backups, RetentionPolicy(daily=5), now=now)
    assert names(in_utc.keep) == ["NY 06-01 23:30"]
    in_new_york = apply_policy(backups, RetentionPolicy(daily=5), now=now, tz=NEW_YORK)
    assert names(in_new_york.keep) == ["NY 06-01 23:30"]
    split_by_hour = apply_policy(backups, RetentionPolicy(hourly=5), now=now, tz=NEW_YORK)
    assert names(split_by_hour.keep) == ["NY 06-01 23:30", "UTC 06-02 01:00"]


def test_day_boundary_moves_with_zone() -> None:
    before_midnight = Backup("06-01 21:59 UTC", utc(2021, 6, 1, 21, 59))  # 23:59 CEST
    after_midnight = Backup("06-01 22:00 UTC", utc(2021, 6, 1, 22))  # 00:00 CEST, 06-02
    backups = [before_midnight, after_midnight]
    now = utc(2021, 7, 1)
    assert names(apply_policy(backups, RetentionPolicy(daily=5), now=now).keep) == [
        "06-01 22:00 UTC"
    ]
    assert names(apply_policy(backups, RetentionPolicy(daily=5), now=now, tz=AMSTERDAM).keep) == [
        "06-01 22:00 UTC",
        "06-01 21:59 UTC",
    ]


# --------------------------------------------------------------------------- edge cases


def test_equal_timestamps() -> None:
    noon = utc(2021, 5, 5, 12)
    first, second, third = Backup("P1", noon), Backup("P2", noon), Backup("P3", noon)
    day_before = Backup("Q", utc(2021, 5, 4, 12))
    backups = [first, day_before, second, third]
    now = utc(2021, 5, 6)
    # keep-last counts each copy; ties keep their input order.
    assert names(apply_policy(backups, RetentionPolicy(last=2), now=now).keep) == ["P1", "P2"]
    # a period rule keeps exactly one copy per period.
    assert names(apply_policy(backups, RetentionPolicy(daily=5), now=now).keep) == ["P1", "Q"]
    # within keeps every copy inside the range.
    within = apply_policy(backups, RetentionPolicy(within=Duration(hours=1)), now=now)
    assert names(within.keep) == ["P1", "P2", "P3"]
    assert names(within.forget) == ["Q"]


FUTURE = Backup("X future", utc(2016, 3, 5))


def test_future_backup_does_not_move_the_within_anchor() -> None:
    # Anchored on X, 2d would be 03-03 and keep only X; anchored on A it is 02-28 10:00.
    decision = apply_policy(
        [*series_backups(), FUTURE], RetentionPolicy(within=Duration(days=2)), now=SERIES_NOW
    )
    assert [(item.name, reasons) for item, reasons in decision.items_with_reasons()] == [
        ("X future", ("future",)),
        ("A", ("within 2d",)),
        ("B", ("within 2d",)),
        ("C", ("within 2d",)),
        ("D", ("within 2d",)),
    ]


def test_future_backup_is_an_ordinary_backup_for_count_rules() -> None:
    decision = apply_policy([*series_backups(), FUTURE], RetentionPolicy(last=2), now=SERIES_NOW)
    assert names(decision.keep) == ["X future", "A"]


def test_future_backup_in_within_daily() -> None:
    # Anchor A, threshold 02-27 10:00; X (03-05) is inside and its own day.
    decision = apply_policy(
        [*series_backups(), FUTURE], RetentionPolicy(within_daily=Duration(days=3)), now=SERIES_NOW
    )
    assert names(decision.keep) == ["X future", "A", "B", "D"]


def test_all_backups_in_the_future() -> None:
    now = utc(2010, 1, 1)
    kept = apply_policy(series_backups(), RetentionPolicy(within=Duration(days=1)), now=now)
    assert names(kept.keep) == list(SERIES)
    assert set(kept.keep_reasons) == {("future",)}
    # Without an anchor every backup is inside the within-daily range: newest per day.
    daily = apply_policy(series_backups(), RetentionPolicy(within_daily=Duration(days=1)), now=now)
    assert names(daily.forget) == ["C"]


def test_backup_exactly_at_now_is_not_in_the_future() -> None:
    decision = apply_policy(
        series_backups(), RetentionPolicy(within=Duration(hours=1)), now=SERIES["A"]
    )
    assert decision.items_with_reasons()[0][1] == ("within 1h",)
    assert names(decision.keep) == ["A"]


def test_empty_policy_keeps_everything() -> None:
    decision = apply_policy(series_backups(), RetentionPolicy(), now=SERIES_NOW)
    assert names(decision.keep) == list(SERIES)
    assert decision.forget == []
    assert set(decision.keep_reasons) == {("no policy",)}


def test_no_backups() -> None:
    no_backups: list[Backup] = []
    policy = RetentionPolicy(daily=3, within=Duration(days=1))
    decision = apply_policy(no_backups, policy, now=SERIES_NOW)
    assert decision.keep == decision.forget == []
    assert decision.keep_reasons == []


def test_unhashable_items_and_custom_key() -> None:
    older = {"at": utc(2021, 1, 1)}
    newer = {"at": utc(2021, 1, 2)}
    decision = apply_policy(
        [older, newer], RetentionPolicy(last=1), now=utc(2021, 2, 1), key=lambda item: item["at"]
    )
    assert decision.keep == [newer]
    assert decision.keep[0] is newer
    assert decision.forget[0] is older
    assert decision.reasons(newer) == ("last",)


def test_reasons_lookup_is_by_identity() -> None:
    backups = series_backups()
    decision = apply_policy(backups, RetentionPolicy(last=1, yearly=2), now=SERIES_NOW)
    by_name = {backup.name: backup for backup in backups}
    assert decision.reasons(by_name["A"]) == ("last", "yearly")
    assert decision.reasons(by_name["I"]) == ("yearly",)
    with pytest.raises(InvalidInput) as caught:
        decision.reasons(by_name["B"])
    assert caught.value.field == "item"
    with pytest.raises(InvalidInput):
        decision.reasons(Backup("A", SERIES["A"]))


def test_naive_times_are_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        apply_policy(
            [Backup("naive", datetime(2021, 1, 1))], RetentionPolicy(last=1), now=SERIES_NOW
        )
    assert caught.value.field == "created_at"
    with pytest.raises(InvalidInput) as caught:
        apply_policy(series_backups(), RetentionPolicy(last=1), now=datetime(2021, 1, 1))
    assert caught.value.field == "now"


def test_the_longest_within_keeps_everything_and_longer_ones_are_refused() -> None:
    decision = apply_policy(
        series_backups(), RetentionPolicy(within=Duration(years=100)), now=SERIES_NOW
    )
    assert decision.forget == []
    for huge in (Duration(years=9000), Duration(years=100, months=1), Duration(days=36_601)):
        with pytest.raises(InvalidInput, match="longer than 100 years"):
            RetentionPolicy(within_daily=huge)


def test_keep_counts_are_bounded() -> None:
    assert RetentionPolicy(hourly=10_000).hourly == 10_000
    with pytest.raises(InvalidInput, match="at most 10000"):
        RetentionPolicy(last=10_001)


def test_decision_requires_parallel_reasons() -> None:
    with pytest.raises(InvalidInput):
        RetentionDecision(keep=[1, 2], forget=[], keep_reasons=[("last",)])


# --------------------------------------------------------------------------- properties

BASE = utc(2019, 12, 20)
ZONES: list[tzinfo] = [UTC, AMSTERDAM, NEW_YORK, KATHMANDU_OFFSET]
MINUTES_IN_THREE_YEARS = 3 * 366 * 24 * 60


@st.composite
def backup_lists(draw: st.DrawFn, *, allow_future: bool = True) -> tuple[list[Backup], datetime]:
    offsets = draw(st.lists(st.integers(0, MINUTES_IN_THREE_YEARS), min_size=1, max_size=10))
    instants = [
        (BASE + timedelta(minutes=offset)).astimezone(draw(st.sampled_from(ZONES)))
        for offset in offsets
    ]
    picks = draw(st.lists(st.sampled_from(instants), max_size=24))
    backups = [Backup(f"b{index}", instant) for index, instant in enumerate(picks)]
    latest = max(instants)
    if allow_future:
        now = BASE + timedelta(minutes=draw(st.integers(-60, MINUTES_IN_THREE_YEARS + 60)))
    else:
        now = latest + timedelta(minutes=draw(st.integers(0, 60 * 24 * 40)))
    return backups, now


durations = st.builds(
    Duration,
    years=st.integers(0, 1),
    months=st.integers(0, 14),
    days=st.integers(0, 40),
    hours=st.integers(0, 60),
).filter(lambda duration: not duration.is_zero())
optional_durations = st.one_of(st.none(), durations)
counts = st.integers(0, 4)
policies = st.builds(
    RetentionPolicy,
    last=counts,
    hourly=counts,
    daily=counts,
    weekly=counts,
    monthly=counts,
    yearly=counts,
    within=optional_durations,
    within_hourly=optional_durations,
    within_daily=optional_durations,
    within_weekly=optional_durations,
    within_monthly=optional_durations,
    within_yearly=optional_durations,
)
zones = st.sampled_from(ZONES)

PERIOD_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")


def period_of(rule: str, instant: datetime, zone: tzinfo) -> Hashable:
    local = instant.astimezone(zone)
    return {
        "hourly": (local.date(), local.hour),
        "daily": local.date(),
        "weekly": local.isocalendar()[:2],
        "monthly": (local.year, local.month),
        "yearly": local.year,
    }[rule]


def newest_first(backups: list[Backup]) -> list[Backup]:
    return sorted(backups, key=lambda backup: backup.created_at, reverse=True)


def newest_of_each_period(ordered: list[Backup], rule: str, zone: tzinfo) -> list[Backup]:
    seen: set[Hashable] = set()
    chosen = []
    for backup in ordered:
        period = period_of(rule, backup.created_at, zone)
        if period not in seen:
            seen.add(period)
            chosen.append(backup)
    return chosen


def expected_reasons(
    backups: list[Backup], policy: RetentionPolicy, now: datetime, zone: tzinfo
) -> list[tuple[Backup, tuple[str, ...]]]:
    """An independent model of the note: per rule, the set of backups it keeps."""
    ordered = newest_first(backups)
    if policy.is_empty():
        return [(backup, ("no policy",)) for backup in ordered]
    reasons: dict[int, list[str]] = {id(backup): [] for backup in ordered}
    past = [backup.created_at for backup in ordered if backup.created_at <= now]
    anchor = max(past) if past else None

    def inside(duration: Duration) -> list[Backup]:
        if anchor is None:
            return ordered
        threshold = duration.subtract_from(anchor.astimezone(zone))
        return [backup for backup in ordered if backup.created_at > threshold]

    if policy.within is not None:
        within_ids = {id(backup) for backup in inside(policy.within)}
        for backup in ordered:
            if backup.created_at > now:
                reasons[id(backup)].append("future")
            elif id(backup) in within_ids:
                reasons[id(backup)].append(f"within {policy.within}")
    for backup in ordered[: policy.last]:
        reasons[id(backup)].append("last")
    for rule in PERIOD_RULES:
        for backup in newest_of_each_period(ordered, rule, zone)[: getattr(policy, rule)]:
            reasons[id(backup)].append(rule)
    for rule in PERIOD_RULES:
        duration = getattr(policy, f"within_{rule}")
        if duration is not None:
            for backup in newest_of_each_period(inside(duration), rule, zone):
                reasons[id(backup)].append(f"within-{rule} {duration}")
    return [(backup, tuple(reasons[id(backup)])) for backup in ordered if reasons[id(backup)]]


def identities(items: Sequence[object]) -> list[int]:
    return [id(item) for item in items]


@settings(max_examples=300, deadline=None)
@given(backup_lists(), policies, zones)
def test_property_matches_independent_model(
    case: tuple[list[Backup], datetime], policy: RetentionPolicy, zone: tzinfo
) -> None:
    backups, now = case
    decision = apply_policy(backups, policy, now=now, tz=zone)
    expected = expected_reasons(backups, policy, now, zone)
    assert [(id(item), reasons) for item, reasons in decision.items_with_reasons()] == [
        (id(item), reasons) for item, reasons in expected
    ]


@settings(max_examples=200, deadline=None)
@given(backup_lists(), policies, zones)
def test_property_keep_and_forget_partition_the_input(
    case: tuple[list[Backup], datetime], policy: RetentionPolicy, zone: tzinfo
) -> None:
    backups, now = case
    decision = apply_policy(backups, policy, now=now, tz=zone)
    kept, forgotten = identities(decision.keep), identities(decision.forget)
    assert len(kept) + len(forgotten) == len(backups)
    assert sorted(kept + forgotten) == sorted(identities(backups))
    assert not set(kept) & set(forgotten)
    assert all(reasons for reasons in decision.keep_reasons)
    for ordered in (decision.keep, decision.forget):
        times = [backup.created_at for backup in ordered]
        assert times == sorted(times, reverse=True)


@settings(max_examples=200, deadline=None)
@given(backup_lists(), policies, zones)
def test_property_count_rules_keep_at_most_n(
    case: tuple[list[Backup], datetime], policy: RetentionPolicy, zone: tzinfo
) -> None:
    backups, now = case
    decision = apply_policy(backups, policy, now=now, tz=zone)
    for rule in ("last", *PERIOD_RULES):
        kept_by_rule = [reasons for reasons in decision.keep_reasons if rule in reasons]
        assert len(kept_by_rule) <= getattr(policy, rule)


@settings(max_examples=200, deadline=None)
@given(backup_lists(), policies, zones)
def test_property_period_reasons_are_explained(
    case: tuple[list[Backup], datetime], policy: RetentionPolicy, zone: tzinfo
) -> None:
    backups, now = case
    decision = apply_policy(backups, policy, now=now, tz=zone)
    for item, reasons in decision.items_with_reasons():
        for rule in PERIOD_RULES:
            if rule in reasons or any(reason.startswith(f"within-{rule} ") for reason in reasons):
                same_period = [
                    other
                    for other in backups
                    if period_of(rule, other.created_at, zone)
                    == period_of(rule, item.created_at, zone)
                ]
                assert item.created_at == max(other.created_at for other in same_period)
        if "future" in reasons:
            assert item.created_at > now


@settings(max_examples=200, deadline=None)
@given(backup_lists(allow_future=False), policies, zones)
def test_property_idempotent_without_future_backups(
    case: tuple[list[Backup], datetime], policy: RetentionPolicy, zone: tzinfo
) -> None:
    # With future backups and no plain `within`, the anchor itself may be forgotten, which can
    # move within-* thresholds on a second pass; the note's semantics only promise this here.
    backups, now = case
    first = apply_policy(backups, policy, now=now, tz=zone)
    second = apply_policy(first.keep, policy, now=now, tz=zone)
    assert second.forget == []
    assert identities(second.keep) == identities(first.keep)


@settings(max_examples=100, deadline=None)
@given(backup_lists(), zones)
def test_property_empty_policy_keeps_all(case: tuple[list[Backup], datetime], zone: tzinfo) -> None:
    backups, now = case
    decision = apply_policy(backups, RetentionPolicy(), now=now, tz=zone)
    assert sorted(identities(decision.keep)) == sorted(identities(backups))
    assert decision.forget == []


@settings(max_examples=200, deadline=None)
@given(
    backup_lists(),
    policies,
    zones,
    st.sampled_from(("last", *PERIOD_RULES)),
    st.integers(1, 3),
    st.sampled_from(("within", "within_hourly", "within_daily", "within_monthly")),
    durations,
)
def test_property_keeping_more_never_keeps_fewer(
    case: tuple[list[Backup], datetime],
    policy: RetentionPolicy,
    zone: tzinfo,
    rule: str,
    extra: int,
    duration_rule: str,
    duration: Duration,
) -> None:
    backups, now = case
    assume(not policy.is_empty())  # an empty policy keeps everything (restic): any rule less
    base_kept = set(identities(apply_policy(backups, policy, now=now, tz=zone).keep))
    more_counts = replace(policy, **{rule: getattr(policy, rule) + extra})
    assert base_kept <= set(identities(apply_policy(backups, more_counts, now=now, tz=zone).keep))
    if getattr(policy, duration_rule) is None:
        extra_rule = replace(policy, **{duration_rule: duration})  # type: ignore[arg-type]
        assert base_kept <= set(
            identities(apply_policy(backups, extra_rule, now=now, tz=zone).keep)
        )


@given(policies)
def test_property_dict_round_trip(policy: RetentionPolicy) -> None:
    as_json = json.loads(json.dumps(policy.to_dict()))
    assert RetentionPolicy.from_dict(as_json) == policy
    assert RetentionPolicy.from_dict(as_json).describe() == policy.describe()


@given(durations)
def test_property_duration_text_round_trip(duration: Duration) -> None:
    assert Duration.parse(str(duration)) == duration
