"""Cron schedules evaluated in an IANA time zone (pure: no clock, no I/O).

A schedule is a classic 5-field cron expression (minute, hour, day-of-month, month,
day-of-week) plus a time zone name such as ``Europe/Amsterdam``. The expression is
read in the local wall-clock time of that zone; every instant this module returns
is an aware datetime in UTC. Instants are always passed in; nothing here reads the
system clock.

Accepted syntax is what cronsim accepts for 5 fields: numbers, ``*``, ranges
``a-b``, steps ``/n``, lists ``a,b``, month names ``JAN``-``DEC``, weekday names
``SUN``-``SAT`` (0 and 7 are both Sunday), ``L`` and ``LW`` in day-of-month, and
``nL`` / ``n#k`` in day-of-week. If both day fields are restricted (neither starts
with ``*``) a day matches when either one does, as in Debian cron. Rejected:
6- and 7-field forms (seconds, years), and the ``@daily``/``@hourly``/``@reboot``
aliases, which cronsim does not support; write the 5-field form instead.

Daylight-saving time, for expressions whose minute and hour fields are both fixed
(neither starts with ``*``, e.g. ``30 2 * * *`` or ``0 1-5 * * *``):

* A local time that does not exist (spring forward) fires at the first valid
  instant after it: ``30 2 * * *`` in Europe/Amsterdam on 2021-03-28 fires at
  03:00+02:00 (01:00 UTC).
* A local time that happens twice (fall back) fires once, in the first pass:
  ``30 2 * * *`` in Europe/Amsterdam on 2021-10-31 fires at 02:30+02:00 (00:30 UTC)
  and not again at 02:30+01:00.

Expressions with a ``*``-prefixed minute or hour field (``0 * * * *``,
``*/30 * * * *``, ``*/30 10 * * *``) follow elapsed time instead: they fire at
every minute whose local wall time matches, so in both passes of a repeated hour
and never in a skipped one. Near a change of UTC offset these are answered by a
walk of our own (cronsim 2.8 skipped ``10:00`` on the day of Lord Howe's
30-minute change and fired in Havana's skipped midnight hour); the tests check
it against a minute-by-minute scan.

cronsim can return an instant before its start when the start lies in the second
pass of a repeated hour; :meth:`CronSchedule.next_after` guards against that by
advancing until the result is strictly later than the start. In zones whose
repeated hour does not start on a whole hour (Pacific/Chatham: 02:45-03:45)
cronsim 2.8 can cycle through the first pass forever; after 1,500 such stale
fires the search restarts at the end of the repeated time, so the rest of the
second pass does not fire there.

cronsim is the reference for every other result. The scheduler tick computes thousands
of next fires, and cronsim re-parses the expression and walks the calendar on
each call, so :meth:`CronSchedule.next_after` first tries a shortcut: a walk over
the wall-clock calendar with the fields cronsim parsed once. The shortcut only
answers when the fire is at most ``_SHORTCUT_DAYS`` days away and the UTC offset
is the same, unambiguous one at the start, at the fire and at every local
midnight from the start's day to the fire's (no DST change on the start's day or
between start and fire, neither in a skipped or repeated hour), and the
expression uses no ``L``, ``W`` or ``#``; in every other case cronsim answers.
(Across Lord Howe's 30-minute changes cronsim 2.8 can land half an hour off a
valid wall time; requiring no change at all keeps cronsim the reference.)
Under those conditions both walks visit the same wall-clock minutes, and a
property test checks that they agree.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from stackback.errors import InvalidInput

__all__ = [
    "CronSchedule",
    "cron_schedule",
    "parse_timezone",
    "spread_offset",
    "validate_cron",
]

_CRON_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_FIELD_HINTS = {
    "minute": "",
    "hour": "",
    "day-of-month": ", 'L' or 'LW'",
    "month": " or JAN-DEC",
    "day-of-week": ", SUN-SAT, 'nL' or 'n#k'",
}
_ALIAS_EQUIVALENTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_HOST_DEPENDENT_ZONES = frozenset({"localtime"})
_PLAIN_NUMBER = re.compile(r"(?<![/#\d])\d+")


@functools.cache
def _known_zone_names() -> frozenset[str]:
    return frozenset(available_timezones() - _HOST_DEPENDENT_ZONES)


def parse_timezone(name: str) -> ZoneInfo:
    """Return the IANA zone called ``name`` (exact spelling, e.g. ``"Europe/Amsterdam"``).

    Raises ``InvalidInput(field="timezone")`` naming the zone when it is empty, unknown,
    or depends on the host (``localtime``); the message suggests close spellings.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(
            f"unknown time zone {name!r}: expected an IANA name such as 'UTC'", field="timezone"
        )
    known = _known_zone_names()
    if name not in known:
        suggestions = sorted(key for key in known if key.casefold() == name.casefold())
        suggestions = suggestions or difflib.get_close_matches(name, known, n=3)
        hint = f" (did you mean {', '.join(repr(s) for s in suggestions)}?)" if suggestions else ""
        raise InvalidInput(
            f"unknown time zone {name!r}: expected an IANA name such as 'Europe/Amsterdam'{hint}",
            field="timezone",
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {name!r}: {exc}", field="timezone") from exc


def _cron_error(expr: str, reason: str) -> InvalidInput:
    return InvalidInput(f"invalid cron expression {expr!r}: {reason}", field="cron")


def _describe_bad_field(name: str, value: str, low: int, high: int) -> str:
    numbers = (int(match) for match in _PLAIN_NUMBER.findall(value))
    if any(not low <= number <= high for number in numbers):
        return f"{name} field {value!r} is out of range {low}-{high}"
    return (
        f"{name} field {value!r} is not valid (expected '*', numbers {low}-{high}"
        f"{_FIELD_HINTS[name]}, ranges 'a-b', steps '/n' or lists 'a,b')"
    )


def _locate_cron_error(expr: str, parts: list[str]) -> str:
    reference = datetime(2000, 1, 1, tzinfo=UTC)
    for index, (name, low, high) in enumerate(_CRON_FIELDS):
        isolated = ["*"] * len(_CRON_FIELDS)
        isolated[index] = parts[index]
        try:
            CronSim(" ".join(isolated), reference)
        except CronSimError:
            return _describe_bad_field(name, parts[index], low, high)
    return (
        f"day-of-month field {parts[2]!r} never occurs in the months "
        f"selected by month field {parts[3]!r}"
    )


def validate_cron(expr: str) -> str:
    """Check a 5-field cron expression and return it with whitespace collapsed.

    Raises ``InvalidInput(field="cron")``; the message names the expression and, when
    one field is at fault, that field ("minute", "hour", "day-of-month", "month",
    "day-of-week") and its value.
    """
    return _parse_cron(expr)[0]


def _parse_cron(expr: str) -> tuple[str, CronSim]:
    """``validate_cron`` that also returns cronsim's parse (its fields feed the shortcut)."""
    if not isinstance(expr, str):
        raise _cron_error(str(expr), "expected a string")
    parts = expr.split()
    normalised = " ".join(parts)
    if len(parts) == 1 and parts[0].startswith("@"):
        equivalent = _ALIAS_EQUIVALENTS.get(parts[0].lower())
        hint = f"; write {equivalent!r} instead" if equivalent else ""
        raise _cron_error(expr, f"aliases such as {parts[0]!r} are not supported{hint}")
    if len(parts) != len(_CRON_FIELDS):
        raise _cron_error(
            expr,
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}",
        )
    try:
        parsed = CronSim(normalised, datetime(2000, 1, 1))
    except CronSimError:
        raise _cron_error(expr, _locate_cron_error(expr, parts)) from None
    return normalised, parsed


def _require_aware(instant: datetime, name: str) -> None:
    if not isinstance(instant, datetime):
        raise InvalidInput(f"{name} must be a datetime, got {instant!r}", field=name)
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(
            f"{name} must be timezone-aware, got naive {instant.isoformat()}", field=name
        )


_SHORTCUT_DAYS = 62
_MAX_STALE_FIRES = 1500
_MAX_RESTARTS = 3
_ONE_MINUTE = timedelta(minutes=1)
_ONE_DAY = timedelta(days=1)


_FieldValues = TypeVar("_FieldValues", tuple[int, ...], frozenset[int])


@functools.lru_cache(maxsize=4096)
def _shared(values: _FieldValues) -> _FieldValues:
    """One instance per distinct field value: most parsed schedules share ``*`` fields."""
    return values


@dataclass(frozen=True, slots=True)
class _WallFields:
    """An expression's fields as cronsim parsed them, for walking the wall-clock calendar."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """Python numbering (Monday 0); cron's 0 and 7 are both Sunday (6)."""
    day_and: bool

    @classmethod
    def of(cls, sim: CronSim) -> _WallFields | None:
        """The fields cronsim parsed; None if they use ``L``, ``LW`` or ``#`` (cronsim only)."""
        if not all(isinstance(day, int) and day > 0 for day in sim.days):
            return None
        if not all(isinstance(weekday, int) for weekday in sim.weekdays):
            return None
        return cls(
            minutes=_shared(tuple(sorted(sim.minutes))),
            hours=_shared(tuple(sorted(sim.hours))),
            days=_shared(frozenset(sim.days)),
            months=_shared(frozenset(sim.months)),
            weekdays=_shared(frozenset((w - 1) % 7 for w in sim.weekdays if isinstance(w, int))),
            day_and=sim.day_and,
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom, dow = day.day in self.days, day.weekday() in self.weekdays
        return (dom and dow) if self.day_and else (dom or dow)

    def first_at_or_after(self, wall: datetime) -> datetime | None:
        """The first matching wall-clock minute at or after ``wall`` (a naive whole minute).

        None when there is none on ``wall``'s day or the ``_SHORTCUT_DAYS - 1`` days after it.
        """
        day, hour, minute = wall.date(), wall.hour, wall.minute
        for _ in range(_SHORTCUT_DAYS):
            if self._day_matches(day):
                for h in self.hours[bisect_left(self.hours, hour) :]:
                    first = bisect_left(self.minutes, minute) if h == hour else 0
                    if first < len(self.minutes):
                        return datetime.combine(day, time(h, self.minutes[first]))
            day += _ONE_DAY
            hour = minute = 0
        return None


def _fixed_offset(local: datetime) -> timedelta | None:
    """The UTC offset of an aware local time if it is unambiguous (not skipped or repeated)."""
    offset = local.utcoffset()
    return offset if offset == local.replace(fold=1 - local.fold).utcoffset() else None


@functools.lru_cache(maxsize=8192)
def _wall_offset(zone: ZoneInfo, wall: datetime) -> timedelta | None:
    """``_fixed_offset`` of the naive wall time ``wall`` in ``zone`` (fold does not matter).

    Cached: the schedules of one zone ask about the same few instants and local
    midnights over and over (every schedule due at a tick starts from it).
    """
    return _fixed_offset(wall.replace(tzinfo=zone))


_SEARCH_LIMIT = timedelta(days=50 * 366)
_SHORTCUT_DAYS_STEP = timedelta(days=_SHORTCUT_DAYS - 1)
"""How far a wall-clock search with no match lets the walk move on."""


def _first_with_another_offset(
    before: datetime, after: datetime, zone: ZoneInfo, offset: timedelta | None
) -> datetime | None:
    """The first whole minute in ``(before, after]`` whose UTC offset is not ``offset``.

    Looks a day at a time (no zone changes its offset twice within a day), then
    bisects that day. None if the offset is the same throughout.
    """
    low = before
    while low < after:
        high = min(low + _ONE_DAY, after)
        if high.astimezone(zone).utcoffset() != offset:
            while high - low > _ONE_MINUTE:
                middle = low + ((high - low) // _ONE_MINUTE // 2) * _ONE_MINUTE
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            return high
        low = high
    return None


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression read in the wall-clock time of an IANA zone.

    Construction validates both values (``InvalidInput`` with field ``"cron"`` or
    ``"timezone"``) and stores the expression with whitespace collapsed. All methods
    take aware instants in any zone and return aware UTC datetimes.
    """

    expr: str
    timezone: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _wall: _WallFields | None = field(init=False, repr=False, compare=False)
    _elapsed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expr, parsed = _parse_cron(self.expr)
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "_zone", parse_timezone(self.timezone))
        object.__setattr__(self, "_wall", _WallFields.of(parsed))
        minute, hour = expr.split()[:2]
        object.__setattr__(self, "_elapsed", minute.startswith("*") or hour.startswith("*"))

    @property
    def zone(self) -> ZoneInfo:
        """The parsed time zone."""
        return self._zone

    def _fires_after(self, instant: datetime, name: str) -> Iterator[datetime]:
        """Every fire after ``instant``, in order: ``next_after`` chained, as the tick does."""
        _require_aware(instant, name)
        fire = instant
        while True:
            try:
                fire = self.next_after(fire)
            except InvalidInput:  # no further fire
                return
            yield fire

    def _cronsim_fires_after(self, instant: datetime, name: str) -> Iterator[datetime]:
        """cronsim's fires after ``instant``, guarded as the module docstring says."""
        _require_aware(instant, name)
        latest = instant.astimezone(UTC)
        start = latest
        try:
            for _ in range(_MAX_RESTARTS):
                stale = 0
                for fire in CronSim(self.expr, start.astimezone(self._zone)):
                    fire_utc = fire.astimezone(UTC)
                    if fire_utc > latest:
                        latest, stale = fire_utc, 0
                        yield fire_utc
                        continue
                    stale += 1
                    if stale > _MAX_STALE_FIRES:
                        break
                else:
                    return
                start = self._end_of_repeated_time(latest)
        except OverflowError:
            return

    def _end_of_repeated_time(self, instant: datetime) -> datetime:
        """The first quarter hour after ``instant`` whose local time is not repeated."""
        moment = instant
        while _fixed_offset(moment.astimezone(self._zone)) is None:
            moment += timedelta(minutes=15)
        return moment

    def next_after(self, instant: datetime) -> datetime:
        """Return the first fire strictly after ``instant``, as an aware UTC datetime.

        Raises ``InvalidInput`` if ``instant`` is naive, or if the schedule has no fire
        within 50 years after it (or before the end of the datetime range).
        """
        _require_aware(instant, "instant")
        fire = self._next_by_wall_clock(instant)
        if fire is None and self._elapsed and self._wall is not None:
            fire = self._next_by_elapsed_time(instant)
        if fire is None:
            fire = next(self._cronsim_fires_after(instant, "instant"), None)
        if fire is None:
            raise InvalidInput(
                f"cron expression {self.expr!r} never fires after {instant.isoformat()}",
                field="cron",
            )
        return fire

    def _next_by_wall_clock(self, instant: datetime) -> datetime | None:
        """The shortcut of the module docstring: a fire, or None to ask cronsim."""
        if self._wall is None:
            return None
        zone = self._zone
        local = instant.astimezone(zone).replace(tzinfo=None)
        offset = _wall_offset(zone, local)
        if offset is None:
            return None
        wall = local.replace(second=0, microsecond=0) + _ONE_MINUTE
        try:
            fire = self._wall.first_at_or_after(wall)
            if fire is None or _wall_offset(zone, fire) != offset:
                return None
            midnight = datetime.combine(local.date(), time())
            while midnight <= fire:
                if _wall_offset(zone, midnight) != offset:
                    return None
                midnight += _ONE_DAY
            return (fire - offset).replace(tzinfo=UTC)
        except OverflowError:
            return None

    def _next_by_elapsed_time(self, instant: datetime) -> datetime | None:
        """For a ``*`` minute or hour: the first minute after ``instant`` whose wall time matches.

        Walks from matching wall time to matching wall time (up to ``_SHORTCUT_DAYS``
        days at a time) and stops at every change of UTC offset on the way, so that no
        minute of elapsed time is skipped or counted twice whatever the zone does
        (cronsim 2.8 can skip fires on the day of Lord Howe's 30-minute change, or
        fire in a skipped hour). None if there is no fire within 50 years or before
        the end of the datetime range.
        """
        assert self._wall is not None
        zone = self._zone
        try:
            moment = instant.astimezone(UTC).replace(second=0, microsecond=0) + _ONE_MINUTE
            give_up = moment + _SEARCH_LIMIT
            while moment < give_up:
                local = moment.astimezone(zone)
                wall = local.replace(tzinfo=None, second=0, microsecond=0)
                match = self._wall.first_at_or_after(wall)
                if match == wall:
                    return moment
                step = _SHORTCUT_DAYS_STEP if match is None else match - wall
                later = moment + step
                change = _first_with_another_offset(moment, later, zone, local.utcoffset())
                moment = later if change is None else change
        except OverflowError:
            return None
        return None

    def fires_between(
        self, start: datetime, end: datetime, limit: int | None = None
    ) -> list[datetime]:
        """Return the fires in ``(start, end]`` as aware UTC datetimes, ascending.

        ``limit`` caps how many are returned (the earliest ones). Raises
        ``InvalidInput`` for naive bounds, ``end`` before ``start`` or a negative limit.
        """
        _require_aware(start, "start")
        _require_aware(end, "end")
        if limit is not None and limit < 0:
            raise InvalidInput(f"limit must not be negative, got {limit}", field="limit")
        if end < start:
            raise InvalidInput(
                f"end {end.isoformat()} is before start {start.isoformat()}", field="end"
            )
        found: list[datetime] = []
        if limit == 0:
            return found
        for fire in self._fires_after(start, "start"):
            if fire > end:
                break
            found.append(fire)
            if limit is not None and len(found) >= limit:
                break
        return found

    def describe_next(self, instant: datetime, count: int = 1) -> list[tuple[datetime, datetime]]:
        """Return the next ``count`` fires after ``instant`` as ``(local, utc)`` pairs.

        ``local`` is the fire in the schedule's zone, ``utc`` the same instant in UTC.
        May return fewer pairs if the schedule stops firing. Raises ``InvalidInput``
        for a naive instant or a count below 1.
        """
        if count < 1:
            raise InvalidInput(f"count must be at least 1, got {count}", field="count")
        pairs: list[tuple[datetime, datetime]] = []
        for fire in self._fires_after(instant, "instant"):
            pairs.append((fire.astimezone(self._zone), fire))
            if len(pairs) >= count:
                break
        return pairs


@functools.lru_cache(maxsize=32768)
def cron_schedule(expr: str, timezone: str = "UTC") -> CronSchedule:
    """``CronSchedule(expr, timezone)``, parsed once per (expression, zone) and kept.

    For callers that evaluate the same stored schedules again and again (the
    scheduler tick): a bounded LRU of the parsed schedules, a few hundred bytes
    each (field sets shared between schedules). Raises as ``CronSchedule`` does.
    """
    return CronSchedule(expr, timezone)


def spread_offset(key: str, window_minutes: int) -> timedelta:
    """Return a stable offset in ``[0, window_minutes)`` minutes, whole seconds, for ``key``.

    The offset comes from a SHA-256 digest of ``key`` (for example
    ``f"{policy_id}:{target_id}"``), so it is the same in every process and release.
    A window of 0 gives no offset; a negative window raises ``InvalidInput``.
    """
    if isinstance(window_minutes, bool) or not isinstance(window_minutes, int):
        raise InvalidInput(
            f"window_minutes must be an integer, got {window_minutes!r}", field="window_minutes"
        )
    if window_minutes < 0:
        raise InvalidInput(
            f"window_minutes must not be negative, got {window_minutes}", field="window_minutes"
        )
    if window_minutes == 0:
        return timedelta(0)
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (window_minutes * 60))


def shortest_interval(
    schedules: list[CronSchedule],
    start: datetime,
    *,
    horizon: timedelta = timedelta(days=366),
    max_fires: int = 2000,
) -> timedelta | None:
    """The shortest time between two consecutive fires of ``schedules`` together.

    Looks at the fires after ``start`` up to ``horizon`` later (a year, so that both
    changes of a zone's offset are seen), or the first ``max_fires`` of them; None if
    there are fewer than two.
    """
    end = start + horizon
    fires: set[datetime] = set()
    for schedule in schedules:
        for count, fire in enumerate(schedule._fires_after(start, "start")):
            if fire > end or count >= max_fires:
                break
            fires.add(fire)
    ordered = sorted(fires)[:max_fires]
    gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
    return min(gaps, default=None)
