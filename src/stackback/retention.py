"""The keep policy: which backups to keep and which to forget.

The semantics follow restic's ``forget`` keep rules (see
``/work/shared/notes/retention.md``): backups are walked newest first, each
count rule keeps the newest backup of each of its N most recent periods that
contain backups, rules combine by union, and ``within`` rules are anchored to
the newest backup that is not in the future.

This module is part of the pure core: it never reads the clock (``now`` is a
parameter) and knows nothing about clouds or storage. Protected backups,
foreign backups and the "never forget the newest successful backup" guard are
the caller's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta, tzinfo
from operator import attrgetter
from typing import Generic, TypeVar

from stackback.errors import InvalidInput

__all__ = [
    "COUNT_RULES",
    "WITHIN_RULES",
    "Duration",
    "RetentionDecision",
    "RetentionPolicy",
    "apply_policy",
]

T = TypeVar("T")

COUNT_RULES: tuple[str, ...] = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
"""Count rule names, in the order their reasons are reported."""

WITHIN_RULES: tuple[str, ...] = (
    "within_hourly",
    "within_daily",
    "within_weekly",
    "within_monthly",
    "within_yearly",
)
"""Within-period rule names (besides plain ``within``), in reporting order."""

FUTURE_REASON = "future"
NO_POLICY_REASON = "no policy"

_DURATION_PART = re.compile(r"([0-9]+)([ymdh])")
_DURATION_TEXT = re.compile(r"(?:[0-9]+[ymdh])+")
_UNIT_FIELDS = {"y": "years", "m": "months", "d": "days", "h": "hours"}


MAX_KEEP_COUNT = 10_000
"""The largest keep count a person could mean (27 years of dailies, a year of hourlies)."""
MAX_KEEP_WITHIN = 100
"""The longest keep-within duration, in years."""


def _require_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"{name} must be a whole number, got {type(value).__name__} {value!r}", field=name
        )
    if value < 0:
        raise InvalidInput(f"{name} must not be negative, got {value}", field=name)
    return value


@dataclass(frozen=True)
class Duration:
    """A calendar duration such as ``1y6m`` or ``2d12h``.

    Units are ``y`` (years), ``m`` (months), ``d`` (days) and ``h`` (hours).
    Years, months and days are calendar units applied to the wall clock;
    hours are absolute.
    """

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __post_init__(self) -> None:
        for name in _UNIT_FIELDS.values():
            _require_count(getattr(self, name), name)

    @classmethod
    def parse(cls, text: str, *, field_name: str = "duration") -> Duration:
        """Parse ``<int><unit>`` parts, e.g. ``"1y6m"``; each unit at most once.

        Raises :class:`InvalidInput` (naming ``field_name``) for anything else:
        empty text, a bare number, unknown units such as ``w``, fractions, signs,
        spaces or a repeated unit.
        """
        if not isinstance(text, str):
            raise InvalidInput(
                f"{field_name} must be a duration string like '2d12h', got {text!r}",
                field=field_name,
            )
        if not _DURATION_TEXT.fullmatch(text):
            raise InvalidInput(
                f"{field_name}: {text!r} is not a duration; use numbers with units "
                "y (years), m (months), d (days), h (hours), e.g. '1y6m' or '2d12h'",
                field=field_name,
            )
        amounts: dict[str, int] = {}
        for number, unit in _DURATION_PART.findall(text):
            name = _UNIT_FIELDS[unit]
            if name in amounts:
                raise InvalidInput(
                    f"{field_name}: unit {unit!r} appears twice in {text!r}", field=field_name
                )
            amounts[name] = int(number)
        return cls(**amounts)

    def is_zero(self) -> bool:
        """True when every component is zero."""
        return not (self.years or self.months or self.days or self.hours)

    def subtract_from(self, instant: datetime) -> datetime:
        """Return ``instant`` minus this duration, the way Go's ``AddDate`` does.

        Years, months and days are subtracted from the wall-clock date of
        ``instant`` (in its own time zone) in one step, and overflowing days
        roll into the next month (2021-03-31 - 1m = 2021-03-03); the time of
        day is kept. The hours are then subtracted as absolute time.
        Raises :class:`InvalidInput` if the result is out of datetime's range.
        """
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise InvalidInput("instant must be timezone-aware", field="instant")
        try:
            month_index = instant.year * 12 + (instant.month - 1) - self.years * 12 - self.months
            year, month_zero_based = divmod(month_index, 12)
            day = date(year, month_zero_based + 1, 1) + timedelta(days=instant.day - 1 - self.days)
            wall = datetime.combine(day, instant.time(), tzinfo=instant.tzinfo)
            shifted = wall.astimezone(UTC) - timedelta(hours=self.hours)
            return shifted.astimezone(instant.tzinfo)
        except (OverflowError, ValueError) as exc:
            raise InvalidInput(
                f"{self} before {instant.isoformat()} is out of range", field="duration"
            ) from exc

    def __str__(self) -> str:
        parts = [
            f"{getattr(self, name)}{unit}"
            for unit, name in _UNIT_FIELDS.items()
            if getattr(self, name)
        ]
        return "".join(parts) or "0d"


def _duration_label(rule: str) -> str:
    return rule.replace("_", "-")


@dataclass(frozen=True)
class RetentionPolicy:
    """Which backups to keep; every rule is optional and rules combine by union.

    Counts are non-negative ints (0 = rule not set). Durations may be given as
    :class:`Duration` or as text (``"2d12h"``), which is parsed; a zero duration
    is rejected. A policy without any rule keeps everything.
    """

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    within_hourly: Duration | None = None
    within_daily: Duration | None = None
    within_weekly: Duration | None = None
    within_monthly: Duration | None = None
    within_yearly: Duration | None = None

    def __post_init__(self) -> None:
        for name in COUNT_RULES:
            count = _require_count(getattr(self, name), name)
            if count > MAX_KEEP_COUNT:
                raise InvalidInput(
                    f"keep-{name} {count} is more than anyone keeps (at most {MAX_KEEP_COUNT})",
                    field=name,
                )
        for name in ("within", *WITHIN_RULES):
            object.__setattr__(self, name, _coerce_duration(getattr(self, name), name))

    def duration_rules(self) -> dict[str, Duration]:
        """The set duration rules (``within`` first), by field name."""
        found: dict[str, Duration] = {}
        for name in ("within", *WITHIN_RULES):
            value = getattr(self, name)
            if value is not None:
                found[name] = value
        return found

    def is_empty(self) -> bool:
        """True when no rule is set, i.e. the policy keeps everything."""
        return not any(getattr(self, name) for name in COUNT_RULES) and not self.duration_rules()

    def to_dict(self) -> dict[str, int | str]:
        """The set rules only, durations as canonical text; JSON-friendly."""
        result: dict[str, int | str] = {
            name: getattr(self, name) for name in COUNT_RULES if getattr(self, name)
        }
        result.update({name: str(value) for name, value in self.duration_rules().items()})
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RetentionPolicy:
        """Inverse of :meth:`to_dict`; ``None`` values mean "not set".

        Raises :class:`InvalidInput` for unknown keys or bad values.
        """
        known = {f.name for f in fields(cls)}
        arguments: dict[str, object] = {}
        for name, value in data.items():
            if name not in known:
                raise InvalidInput(
                    f"unknown retention rule {name!r}; known rules: {', '.join(sorted(known))}",
                    field=str(name),
                )
            if value is not None:
                arguments[name] = value
        return cls(**arguments)  # type: ignore[arg-type]

    def describe(self) -> str:
        """A one-line human summary, e.g. ``"last 3, daily 7, weekly 4, within 2d"``."""
        parts = [f"{name} {getattr(self, name)}" for name in COUNT_RULES if getattr(self, name)]
        parts.extend(
            f"{_duration_label(name)} {value}" for name, value in self.duration_rules().items()
        )
        return ", ".join(parts) or "keep everything"


def _coerce_duration(value: object, name: str) -> Duration | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = Duration.parse(value, field_name=name)
    if not isinstance(value, Duration):
        raise InvalidInput(
            f"{name} must be a duration like '2d12h', got {type(value).__name__} {value!r}",
            field=name,
        )
    if value.is_zero():
        raise InvalidInput(f"{name} must be longer than zero; leave it out instead", field=name)
    if (
        value.years * 366 + value.months * 31 + value.days + value.hours / 24
        > MAX_KEEP_WITHIN * 366
    ):
        raise InvalidInput(
            f"keep-{_duration_label(name)} {value} is longer than {MAX_KEEP_WITHIN} years",
            field=name,
        )
    return value


@dataclass(frozen=True)
class RetentionDecision(Generic[T]):
    """The outcome of :func:`apply_policy`: what to keep, what to forget, and why.

    ``keep`` and ``forget`` are newest first; ``keep_reasons[i]`` are the
    reasons ``keep[i]`` is kept, in rule order.
    """

    keep: list[T]
    forget: list[T]
    keep_reasons: list[tuple[str, ...]]
    _position_by_identity: dict[int, int] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if len(self.keep) != len(self.keep_reasons):
            raise InvalidInput("keep and keep_reasons must have the same length", field="keep")
        self._position_by_identity.update({id(item): i for i, item in enumerate(self.keep)})

    def reasons(self, item: T) -> tuple[str, ...]:
        """Why ``item`` (the very object, by identity) is kept.

        Raises :class:`InvalidInput` if the item is not among the kept ones.
        """
        position = self._position_by_identity.get(id(item))
        if position is None or self.keep[position] is not item:
            raise InvalidInput("this item is not kept by the decision", field="item")
        return self.keep_reasons[position]

    def items_with_reasons(self) -> list[tuple[T, tuple[str, ...]]]:
        """Kept items paired with their reasons, newest first."""
        return list(zip(self.keep, self.keep_reasons, strict=True))


PeriodKey = Callable[[datetime], Hashable]


def _hour_of(local: datetime) -> Hashable:
    return (local.year, local.month, local.day, local.hour)


def _day_of(local: datetime) -> Hashable:
    return local.date()


def _iso_week_of(local: datetime) -> Hashable:
    iso = local.isocalendar()
    return (iso.year, iso.week)


def _month_of(local: datetime) -> Hashable:
    return (local.year, local.month)


def _year_of(local: datetime) -> Hashable:
    return local.year


_PERIOD_OF: dict[str, PeriodKey] = {
    "hourly": _hour_of,
    "daily": _day_of,
    "weekly": _iso_week_of,
    "monthly": _month_of,
    "yearly": _year_of,
}


@dataclass
class _CountRule:
    reason: str
    remaining: int
    period_of: PeriodKey | None
    last_period: Hashable = None

    def keeps(self, position: int, local: datetime) -> bool:
        """Whether this rule keeps the item; if so, use up one count and remember its period."""
        if self.remaining <= 0:
            return False
        period = position if self.period_of is None else self.period_of(local)
        if self.last_period is not None and period == self.last_period:
            return False
        self.remaining -= 1
        self.last_period = period
        return True


@dataclass
class _WithinPeriodRule:
    reason: str
    threshold: datetime | None
    period_of: PeriodKey
    last_period: Hashable = None

    def keeps(self, instant: datetime, local: datetime) -> bool:
        """Whether this rule keeps the item; if so, remember its period."""
        if self.threshold is not None and instant <= self.threshold:
            return False
        period = self.period_of(local)
        if self.last_period is not None and period == self.last_period:
            return False
        self.last_period = period
        return True


def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a datetime, got {type(value).__name__}", field=name)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware, got {value.isoformat()}", field=name)
    return value


def _threshold(duration: Duration, anchor: datetime | None, tz: tzinfo) -> datetime | None:
    """Exclusive lower bound for within rules; None means everything is inside."""
    if anchor is None:
        return None
    try:
        return duration.subtract_from(anchor.astimezone(tz))
    except InvalidInput:
        return None


def _past_every_within(
    instant: datetime,
    within_rules: list[_WithinPeriodRule],
    policy: RetentionPolicy,
    within_threshold: datetime | None,
) -> bool:
    """Whether no ``within`` rule keeps this item, nor any older one (the walk is newest
    first: once past a threshold, every later item is too)."""
    if policy.within is not None and (within_threshold is None or instant > within_threshold):
        return False
    return all(rule.threshold is not None and instant <= rule.threshold for rule in within_rules)


_MARGIN = timedelta(days=2)
"""More than any UTC offset (``tzinfo.utcoffset`` is less than a day either way)."""


def _same_period_from(rule: _CountRule, instant: datetime) -> datetime | None:
    """The earliest instant from which to ``instant`` every instant is, in any zone, in the
    period ``rule`` last kept from (so the rule keeps none of them); None if no such span is
    known: the rule is not yearly or monthly, or ``instant`` lies within two days of one of
    its period's ends in UTC, where a zone's wall clock may be in the next or previous one."""
    utc = instant.astimezone(UTC)
    if rule.period_of is _year_of:
        start, end = datetime(utc.year, 1, 1, tzinfo=UTC), datetime(utc.year + 1, 1, 1, tzinfo=UTC)
        period: Hashable = utc.year
    elif rule.period_of is _month_of:
        start = datetime(utc.year, utc.month, 1, tzinfo=UTC)
        end = datetime(utc.year + utc.month // 12, utc.month % 12 + 1, 1, tzinfo=UTC)
        period = (utc.year, utc.month)
    else:
        return None
    if period != rule.last_period or not start + _MARGIN <= utc < end - _MARGIN:
        return None
    return start + _MARGIN


def _first_before(instants: list[datetime], bound: datetime, low: int) -> int:
    """The first position from ``low`` of newest-first ``instants`` earlier than ``bound``."""
    high = len(instants)
    while low < high:
        middle = (low + high) // 2
        if instants[middle] < bound:
            high = middle
        else:
            low = middle + 1
    return low


def _skip_to(
    position: int, instants: list[datetime], counting: list[_CountRule], past_within: bool
) -> int:
    """Where the walk may resume, all items before it forgotten: past the items of ``position``
    on that no count rule can keep (each is in the period its rule last kept from) when
    every ``within`` rule is behind; ``position`` itself when no item can be skipped."""
    if not past_within or not counting:
        return position
    instant, bounds = instants[position], []
    for rule in counting:
        bound = _same_period_from(rule, instant)
        if bound is None:
            return position
        bounds.append(bound)
    return _first_before(instants, max(bounds), position)


def _newest_first(
    items: Iterable[T], key: Callable[[T], datetime]
) -> tuple[list[datetime], list[T]]:
    """Creation times (each checked timezone-aware) and items, newest first, stable."""
    listed = list(items)
    instants = list(map(key, listed))
    all_utc = set(map(type, instants)) <= {datetime} and set(
        map(attrgetter("tzinfo"), instants)
    ) <= {UTC}
    if not all_utc:  # else check each
        instants = [_aware(k, "created_at") for k in instants]
    order = sorted(range(len(listed)), key=instants.__getitem__, reverse=True)
    return [instants[i] for i in order], [listed[i] for i in order]


def apply_policy(
    items: Iterable[T],
    policy: RetentionPolicy,
    *,
    now: datetime,
    key: Callable[[T], datetime] = attrgetter("created_at"),
    tz: tzinfo = UTC,
) -> RetentionDecision[T]:
    """Split ``items`` into kept and forgotten according to ``policy``.

    ``key`` gives each item's timezone-aware creation time. Items are walked
    newest first (stable for equal times); periods (hour, day, ISO week, month,
    year) and the calendar part of ``within`` durations use wall-clock time in
    ``tz``. ``within`` rules count back from the newest item not after ``now``;
    items after ``now`` are always kept by ``within`` (reason ``"future"``).
    Items may be unhashable; they are tracked by identity.
    """
    now = _aware(now, "now")
    instants, ordered = _newest_first(items, key)

    if policy.is_empty():
        return RetentionDecision(
            keep=ordered,
            forget=[],
            keep_reasons=[(NO_POLICY_REASON,)] * len(ordered),
        )

    anchor = next((instant for instant in instants if instant <= now), None)
    count_rules = [
        _CountRule(name, getattr(policy, name), _PERIOD_OF.get(name))
        for name in COUNT_RULES
        if getattr(policy, name)
    ]
    within_rules = [
        _WithinPeriodRule(
            f"{_duration_label(name)} {duration}",
            _threshold(duration, anchor, tz),
            _PERIOD_OF[name.removeprefix("within_")],
        )
        for name, duration in policy.duration_rules().items()
        if name != "within"
    ]
    within_threshold = _threshold(policy.within, anchor, tz) if policy.within else None

    keep: list[T] = []
    forget: list[T] = []
    keep_reasons: list[tuple[str, ...]] = []
    within_reason = f"within {policy.within}"
    counting = [rule for rule in count_rules if rule.remaining > 0]  # rules with counts left
    position, total = 0, len(instants)
    while position < total:
        instant = instants[position]
        past_within = _past_every_within(instant, within_rules, policy, within_threshold)
        if past_within and not counting:
            forget.extend(ordered[position:])  # no rule keeps any older one
            break
        resume = _skip_to(position, instants, counting, past_within)
        if resume > position:
            forget.extend(ordered[position:resume])
            position = resume
            continue
        item = ordered[position]
        local = instant.astimezone(tz)
        reasons: list[str] = []
        if policy.within is not None:
            if instant > now:
                reasons.append(FUTURE_REASON)
            elif within_threshold is None or instant > within_threshold:
                reasons.append(within_reason)
        used_up = False
        for rule in counting:
            if rule.keeps(position, local):
                reasons.append(rule.reason)
                used_up = used_up or rule.remaining <= 0
        if used_up:
            counting = [rule for rule in counting if rule.remaining > 0]
        for within_rule in within_rules:
            if within_rule.keeps(instant, local):
                reasons.append(within_rule.reason)
        if reasons:
            keep.append(item)
            keep_reasons.append(tuple(reasons))
        else:
            forget.append(item)
        position += 1
    return RetentionDecision(keep=keep, forget=forget, keep_reasons=keep_reasons)
