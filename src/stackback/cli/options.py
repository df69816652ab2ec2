"""Options shared by several commands (retention rules, schedules)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from stackback.retention import RetentionPolicy

F = TypeVar("F", bound=Callable[..., Any])

COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES = (
    "within",
    "within_hourly",
    "within_daily",
    "within_weekly",
    "within_monthly",
    "within_yearly",
)


def _option_name(rule: str) -> str:
    return "--keep-" + rule.replace("_", "-")


def retention_options(func: F) -> F:
    """``--keep-last N`` ... ``--keep-within-yearly D``; values are validated by the core."""
    for rule in reversed(WITHIN_RULES):
        func = click.option(
            _option_name(rule),
            f"keep_{rule}",
            metavar="D",
            help=f"Keep {rule.replace('_', '-')} this duration of the newest backup (e.g. 2d12h).",
        )(func)
    for rule in reversed(COUNT_RULES):
        func = click.option(
            _option_name(rule),
            f"keep_{rule}",
            metavar="N",
            help=f"Keep the newest backup of each of the last N {rule} periods.",
        )(func)
    return func


def given_retention(options: Mapping[str, Any]) -> dict[str, object]:
    """The retention rules the user gave on the command line, as a from_dict mapping."""
    given: dict[str, object] = {}
    for rule in COUNT_RULES:
        raw = options.get(f"keep_{rule}")
        if raw is not None:
            given[rule] = _count(raw, _option_name(rule))
    for rule in WITHIN_RULES:
        raw = options.get(f"keep_{rule}")
        if raw is not None:
            given[rule] = raw
    return given


def _count(raw: str, option: str) -> int:
    from stackback.errors import InvalidInput

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


def offline_option(func: F) -> F:
    """``--offline``: do not ask the cloud whether the named servers exist."""
    return click.option(
        "--offline",
        is_flag=True,
        help="Do not ask the cloud whether the servers exist (prepare without the cloud).",
    )(func)
