"""Retention rules as a face receives them (``--keep-last 7``, ``--keep-within 2d``).

Shared by the faces that take the rules as options (the ``stackback`` CLI and the
openstack client plugin), so that both accept and refuse the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackback.errors import InvalidInput
from stackback.retention import RetentionPolicy

COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES = (
    "within",
    "within_hourly",
    "within_daily",
    "within_weekly",
    "within_monthly",
    "within_yearly",
)


def option_name(rule: str) -> str:
    """The option a rule is given with: ``within_daily`` -> ``--keep-within-daily``."""
    return "--keep-" + rule.replace("_", "-")


def given_retention(options: Mapping[str, Any]) -> dict[str, object]:
    """The rules given (``keep_<rule>`` keys, None: not given), as a from_dict mapping."""
    given: dict[str, object] = {}
    for rule in COUNT_RULES:
        raw = options.get(f"keep_{rule}")
        if raw is not None:
            given[rule] = _count(raw, option_name(rule))
    for rule in WITHIN_RULES:
        raw = options.get(f"keep_{rule}")
        if raw is not None:
            given[rule] = raw
    return given


def _count(raw: str, option: str) -> int:
    text = str(raw).strip()
    # isdigit() alone also takes superscripts, which int() refuses, and other scripts' digits
    if not (text.isascii() and text.isdigit()):  # negative counts too
        raise InvalidInput(f"{option} must be a whole number >= 0, not {raw!r}", field=option)
    try:
        return int(text)
    except ValueError:  # more digits than int() converts
        raise InvalidInput(f"{option} is too large ({len(text)} digits)", field=option) from None


def build_retention(
    options: Mapping[str, Any], base: RetentionPolicy | None = None
) -> RetentionPolicy | None:
    """Merge the given rules over ``base``; None when nothing was given and no base."""
    given = given_retention(options)
    if not given:
        return base
    merged: dict[str, object] = dict(base.to_dict()) if base else {}
    for rule, value in given.items():
        if value in (0, ""):
            merged.pop(rule, None)
        else:
            merged[rule] = value
    return RetentionPolicy.from_dict(merged)
