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
``*/30 * * * *``) follow elapsed time instead: they fire in both passes of a
repeated hour and simply have no fires in a skipped one.

cronsim can return an instant before its start when the start lies in the second
pass of a repeated hour; :meth:`CronSchedule.next_after` guards against that by
advancing until the result is strictly later than the start.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from stackback.errors import InvalidInput

__all__ = [
    "CronSchedule",
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
        CronSim(normalised, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        raise _cron_error(expr, _locate_cron_error(expr, parts)) from None
    return normalised


def _require_aware(instant: datetime, name: str) -> None:
    if not isinstance(instant, datetime):
        raise InvalidInput(f"{name} must be a datetime, got {instant!r}", field=name)
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(
            f"{name} must be timezone-aware, got naive {instant.isoformat()}", field=name
        )


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "expr", validate_cron(self.expr))
        object.__setattr__(self, "_zone", parse_timezone(self.timezone))

    @property
    def zone(self) -> ZoneInfo:
        """The parsed time zone."""
        return self._zone

    def _fires_after(self, instant: datetime, name: str) -> Iterator[datetime]:
        _require_aware(instant, name)
        latest = instant.astimezone(UTC)
        try:
            fires = CronSim(self.expr, instant.astimezone(self._zone))
            for fire in fires:
                fire_utc = fire.astimezone(UTC)
                if fire_utc > latest:
                    latest = fire_utc
                    yield fire_utc
        except OverflowError:
            return

    def next_after(self, instant: datetime) -> datetime:
        """Return the first fire strictly after ``instant``, as an aware UTC datetime.

        Raises ``InvalidInput`` if ``instant`` is naive, or if the schedule has no fire
        within 50 years after it (or before the end of the datetime range).
        """
        fire = next(self._fires_after(instant, "instant"), None)
        if fire is None:
            raise InvalidInput(
                f"cron expression {self.expr!r} never fires after {instant.isoformat()}",
                field="cron",
            )
        return fire

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
