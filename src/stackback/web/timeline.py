"""Backups per target on a time line: where each one sits between the oldest and now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stackback.policy import Backup
from stackback.views import backup_summary


@dataclass(frozen=True)
class Mark:
    backup: dict[str, Any]
    """The backup in its ``views.backup_summary`` shape."""
    left: float
    """Its place on the line, in percent from the oldest backup (0) to now (100)."""


@dataclass(frozen=True)
class TargetTimeline:
    target: str
    target_name: str | None
    start: datetime
    end: datetime
    marks: tuple[Mark, ...]
    """Newest first, as the table under the line lists them."""


def timelines(backups: list[Backup], now: datetime) -> list[TargetTimeline]:
    """One line per target (by name, then id), each from its oldest backup to ``now``."""
    by_target: dict[str, list[Backup]] = {}
    for backup in backups:
        by_target.setdefault(backup.target, []).append(backup)
    lines = []
    for target, items in by_target.items():
        items.sort(key=lambda b: b.created_at, reverse=True)
        start = items[-1].created_at
        end = max(now, items[0].created_at)
        width = (end - start).total_seconds()
        marks = tuple(
            Mark(
                backup_summary(b),
                round(100 * (b.created_at - start).total_seconds() / width, 2) if width else 100.0,
            )
            for b in items
        )
        name = next((b.target_name for b in items if b.target_name), None)
        lines.append(TargetTimeline(target, name, start, end, marks))
    lines.sort(key=lambda line: (line.target_name or line.target, line.target))
    return lines
