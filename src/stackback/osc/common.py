"""What every ``openstack backup`` command shares: errors, values and the client.

A command's data are the dicts of ``stackback.views``; their keys are the column
names, so ``-f json`` and ``-f yaml`` carry the keys of ``stackback ... -f json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from cliff import columns
from osc_lib import exceptions
from osc_lib.command import command
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError

from stackback.errors import InvalidInput, NotFound, StackbackError
from stackback.osc.client import StackbackClient
from stackback.views import jsonable

MACHINE_FORMATS = ("json", "yaml")
"""Formats that get every key of a listed object (a table gets the usual columns)."""


def readable(value: Any) -> str:
    """A view's value in a table cell."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return "\n".join(readable(item) for item in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={readable(item)}" for key, item in value.items() if item)
    return str(value)


class Value(columns.FormattableColumn[Any]):
    """A view's value: JSON-ready for machines, one cell of text for people."""

    def human_readable(self) -> str:
        return readable(self._value)

    def machine_readable(self) -> Any:
        return jsonable(self._value)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--limit``)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def error_line(error: StackbackError) -> str:
    """The one line a stackback error is reported with (its id, unless it is bad input)."""
    if isinstance(error, InvalidInput | NotFound):
        return error.message
    return f"{error.message} (error id {error.error_id})"


def _database_line(error: DBAPIError, client: StackbackClient | None) -> str:
    cause = str(error.orig if error.orig is not None else error).strip()
    first = cause.splitlines()[0] if cause else type(error).__name__
    if client is None:
        return f"database: {first}"
    where = make_url(client.settings.db_url).render_as_string(hide_password=True)
    return f"database {where}: {first}"


class StackbackCommand(command.Command):
    """Runs a command with stackback's errors as osc-lib's ``CommandError`` (one line)."""

    auth_required = False
    """The openstack client authenticates when a command first reaches its cloud (most
    read the catalogue only, and ``--offline`` reaches none)."""

    @property
    def client(self) -> StackbackClient:
        client: StackbackClient = getattr(self.app.client_manager, "backup")  # noqa: B009
        return client

    def run(self, parsed_args: argparse.Namespace) -> int:
        try:
            return super().run(parsed_args)
        except StackbackError as error:
            raise exceptions.CommandError(error_line(error)) from None
        except DBAPIError as error:
            faulty = isinstance(error, OperationalError | InterfaceError)
            if not (faulty or type(error) is DatabaseError):
                raise
            raise exceptions.CommandError(_database_line(error, self._client_or_none())) from None

    def _client_or_none(self) -> StackbackClient | None:
        try:
            return self.client
        except Exception:
            return None


def one(data: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """A ShowOne's (columns, values) from a view."""
    return tuple(data), tuple(Value(value) for value in data.values())


def many(
    rows: Sequence[Mapping[str, Any]],
    table_columns: Sequence[str],
    parsed_args: argparse.Namespace,
) -> tuple[tuple[str, ...], Iterable[tuple[Any, ...]]]:
    """A Lister's (columns, rows): every key for ``-f json|yaml`` or ``-c``, else the usual."""
    every = tuple(rows[0]) if rows else tuple(table_columns)
    wanted = every
    if parsed_args.formatter not in MACHINE_FORMATS and not parsed_args.columns:
        wanted = tuple(table_columns)
    return wanted, [tuple(Value(row.get(key)) for key in wanted) for row in rows]
