"""Rendering for the CLI: Rich tables for people, ``-f json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import click
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from stackback.views import jsonable

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
    return Console(soft_wrap=False, stderr=stderr, markup=False)  # names and errors are data


def emit_json(data: Any) -> None:
    click.echo(json.dumps(jsonable(data), indent=2, sort_keys=False))


SHORT_ID = 8
"""Characters of an id a table shows (any unique prefix of 6 or more finds the object)."""


def short_id(value: str) -> str:
    return value[:SHORT_ID]


def minute(value: datetime | None) -> str:
    """A time in a list: to the minute, as the operator reads it (JSON keeps it whole)."""
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else ""


def verified(verification: dict[str, Any] | None) -> str:
    """A verification in a table cell: its result, when, and the time to ACTIVE."""
    if verification is None:
        return ""
    text = f"{verification['result']} {minute(verification['verified_at'])}"
    if verification["active_seconds"] is not None:
        text += f" ({verification['active_seconds']:.0f} s to ACTIVE)"
    if verification["result"] != "passed" and verification["reason"]:
        text += f": {verification['reason']}"
    return text


FREE_TEXT_MIN = 12
"""Narrowest a free-text column (errors, reasons) may get before a list turns to records."""


def _widest(header: str, cells: Sequence[str]) -> int:
    return max(cell_len(line) for text in (header, *cells) for line in text.split("\n") or [""])


def _table_width(
    headers: Sequence[str], cells: Sequence[Sequence[str]], whole: Sequence[bool]
) -> int:
    """Columns the table needs so that no whole value is cut (borders and padding included)."""
    width = 3 * len(headers) + 1
    for index, header in enumerate(headers):
        widest = _widest(header, [row[index] for row in cells])
        width += widest if whole[index] else min(widest, FREE_TEXT_MIN)
    return width


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
    value: the free-text columns fold around them. When the terminal is too
    narrow for that, each object is shown as a block of field/value lines.
    """
    if fmt == "json":
        emit_json(list(rows))
        return
    headers = [column.replace("_", " ").title() for column in columns]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    is_whole = [column in whole for column in columns]
    out = console()
    if rows and _table_width(headers, cells, is_whole) > out.width:
        _emit_records(headers, cells, title, out)
        return
    table = Table(title=title or None, show_lines=False)
    for header, keep in zip(headers, is_whole, strict=True):
        if keep:
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, overflow="fold", min_width=FREE_TEXT_MIN)
    for row_cells in cells:
        table.add_row(*row_cells)
    out.print(table)


def _emit_records(
    headers: Sequence[str], cells: Sequence[Sequence[str]], title: str, out: Console
) -> None:
    """Each object as field/value lines, a rule between objects (a list too wide for a row)."""
    table = Table(title=title or None, show_header=False)
    table.add_column("Field", no_wrap=True, style="bold")
    table.add_column("Value", overflow="fold")
    for number, row_cells in enumerate(cells):
        if number:
            table.add_section()
        for header, value in zip(headers, row_cells, strict=True):
            table.add_row(header, value)
    out.print(table)


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
