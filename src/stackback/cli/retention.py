"""``stackback retention preview``: what a keep policy would keep, and why."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

from stackback.cli.options import build_retention, given_retention, retention_options
from stackback.cli.output import emit_list, format_option, minute, short_id
from stackback.errors import InvalidInput
from stackback.retention import RetentionPolicy, apply_policy
from stackback.schedule import parse_timezone
from stackback.views import preview_view


@dataclass(frozen=True)
class _Instant:
    line: int
    text: str
    created_at: datetime


FIRST_YEAR, LAST_YEAR = 1900, 9000


def parse_instants(lines: list[str], zone_name: str) -> list[_Instant]:
    """One ISO 8601 instant per line; instants without an offset are read in ``zone_name``."""
    zone = parse_timezone(zone_name)
    instants = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"line {number}: {text!r} is not an ISO 8601 instant", field="stdin"
            ) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        if not FIRST_YEAR <= value.year <= LAST_YEAR:  # room for zones and calendar buckets
            raise InvalidInput(
                f"line {number}: {text!r} is out of range (years {FIRST_YEAR} to {LAST_YEAR})",
                field="stdin",
            )
        instants.append(_Instant(number, text, value))
    return instants


def preview_rows(
    instants: list[_Instant], policy: RetentionPolicy, *, now: datetime, zone_name: str
) -> list[dict[str, Any]]:
    """Every instant with keep/forget and the reasons, newest first (input order on ties)."""
    decision = apply_policy(
        instants, policy, now=now, key=lambda i: i.created_at, tz=parse_timezone(zone_name)
    )
    verdicts: list[tuple[_Instant, str, tuple[str, ...]]] = [
        (i, "keep", reasons) for i, reasons in decision.items_with_reasons()
    ] + [(i, "forget", ()) for i in decision.forget]
    verdicts.sort(key=lambda v: (-v[0].created_at.timestamp(), v[0].line))
    return [
        {"time": i.text, "instant": i.created_at, "action": action, "reasons": list(reasons)}
        for i, action, reasons in verdicts
    ]


@click.group("retention")
def retention_group() -> None:
    """Retention policies (restic `forget` semantics)."""


@retention_group.command("preview")
@click.argument("policy", required=False)
@retention_options
@click.option("--timezone", default="UTC", show_default=True, help="Zone of the periods.")
@format_option
@click.pass_context
def preview(
    ctx: click.Context, /, policy: str | None, timezone: str, fmt: str, **keep: Any
) -> None:
    """Show which backups a policy keeps and why.

    Without POLICY: reads backup times (one ISO 8601 instant per line) on stdin
    and applies the --keep-* rules given. With POLICY: applies that policy's
    rules to its real backups (nothing is deleted).
    """
    if policy is not None:
        if given_retention(keep):
            raise InvalidInput("--keep-* rules apply only without POLICY", field="retention")
        rows = [preview_view(r) for r in ctx.obj.backups.preview(policy)]
        chained = any(row["parent_id"] for row in rows)
        if fmt == "table":
            for row in rows:
                row["backup"] = short_id(row["backup"])
                row["created"] = minute(row["created_at"])
                row["parent"] = short_id(row["parent_id"]) if row["parent_id"] else "(full)"
        emit_list(
            rows,
            ["target", "created", "action", "reasons", "backup", *(["parent"] if chained else [])],
            fmt,
            whole=("target", "created", "action", "backup"),
        )
        return
    rules = build_retention(keep)
    if rules is None:
        raise InvalidInput("give at least one --keep-* rule", field="retention")
    if sys.stdin.isatty():
        raise InvalidInput("pipe backup times on stdin, one ISO 8601 instant per line")
    instants = parse_instants(sys.stdin.read().splitlines(), timezone)
    now = ctx.obj.clock.now()
    rows = preview_rows(instants, rules, now=now, zone_name=timezone)
    emit_list(
        rows,
        ["time", "action", "reasons"],
        fmt,
        title=f"Policy: {rules.describe()}",
        whole=("time", "action"),
    )


COMMANDS = [retention_group]
