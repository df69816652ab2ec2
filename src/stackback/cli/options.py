"""Options shared by several commands (retention rules, schedules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from stackback.services.retention_input import (
    COUNT_RULES,
    WITHIN_RULES,
    build_retention,
    given_retention,
    option_name,
)

__all__ = [
    "build_retention",
    "given_retention",
    "offline_option",
    "retention_options",
]

F = TypeVar("F", bound=Callable[..., Any])


def retention_options(func: F) -> F:
    """``--keep-last N`` ... ``--keep-within-yearly D``; values are validated by the core."""
    for rule in reversed(WITHIN_RULES):
        func = click.option(
            option_name(rule),
            f"keep_{rule}",
            metavar="D",
            help=f"Keep {rule.replace('_', '-')} this duration of the newest backup (e.g. 2d12h).",
        )(func)
    for rule in reversed(COUNT_RULES):
        func = click.option(
            option_name(rule),
            f"keep_{rule}",
            metavar="N",
            help=f"Keep the newest backup of each of the last N {rule} periods.",
        )(func)
    return func


def offline_option(func: F) -> F:
    """``--offline``: do not ask the cloud whether the named servers exist."""
    return click.option(
        "--offline",
        is_flag=True,
        help="Do not ask the cloud whether the servers exist (prepare without the cloud).",
    )(func)
