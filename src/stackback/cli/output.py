"""Rendering for the CLI: Rich tables for people, ``-f json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json")


def format_option(func: F) -> F:
    """Adds ``-f/--format table|json`` to a command."""
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return "\n".join(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def console(*, stderr: bool = False) -> Console:
    return Console(soft_wrap=False, stderr=stderr)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(to_jsonable(data), indent=2, sort_keys=False))


SHORT_ID = 8
"""Characters of an id a table shows (any unique prefix of 6 or more finds the object)."""


def short_id(value: str) -> str:
    return value[:SHORT_ID]


def emit_list(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    *,
    title: str = "",
    whole: Sequence[str] = (),
) -> None:
    """A list: one row per object. JSON gets every key of every row.

    The ``whole`` columns (names, zones, ids, times) are never broken inside a
    value: the free-text columns fold around them when the terminal is narrow.
    """
    if fmt == "json":
        emit_json(list(rows))
        return
    table = Table(title=title or None, show_lines=False)
    for column in columns:
        header = column.replace("_", " ").title()
        if column in whole:
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console().print(table)


def emit_object(data: Mapping[str, Any], fmt: str) -> None:
    """One object as a two-column Field/Value table, or JSON."""
    if fmt == "json":
        emit_json(data)
        return
    table = Table(show_header=True)
    table.add_column("Field", no_wrap=True)
    table.add_column("Value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, _cell(value))
    console().print(table)
