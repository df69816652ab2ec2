"""Recovery point status: is a target's newest good backup as recent as its schedule promises?

Pure: the caller passes ``now``, the schedules and what the catalogue knows of a target.
A schedule promises, for each occurrence, a good backup within the start window and a
grace period after it; the newest occurrence whose promise has come due is the one a
target's newest good backup must be at least as recent as.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from stackback.schedule import CronSchedule

DEFAULT_GRACE = timedelta(hours=1)
"""How long after its window a backup may take before its target counts as late."""

_LOOKBACK = (
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
    timedelta(days=4 * 366 + 1),
)


class Verdict(StrEnum):
    OK = "ok"
    LATE = "late"
    FAILING = "failing"
    NEVER = "never"


@dataclass(frozen=True)
class TargetHistory:
    """What the catalogue knows of one target of a policy."""

    newest_good_at: datetime | None
    last_run_state: str | None = None
    last_run_error: str | None = None
    missed_since_good: int = 0
    """Occurrences recorded ``missed`` after the newest good backup."""


@dataclass(frozen=True)
class TargetStatus:
    verdict: Verdict
    reason: str
    due_since: datetime | None
    """The newest occurrence whose backup should exist by now (None: none yet)."""


def previous_fire(schedule: CronSchedule, cutoff: datetime) -> datetime | None:
    """The latest fire of ``schedule`` at or before ``cutoff`` (None within four years)."""
    for span in _LOOKBACK:
        fire = schedule.next_after(cutoff - span)
        if fire > cutoff:
            continue
        while True:
            following = schedule.next_after(fire)
            if following > cutoff:
                return fire
            fire = following
    return None


def due_since(
    schedules: Sequence[CronSchedule], window: timedelta, now: datetime, grace: timedelta
) -> datetime | None:
    """The newest occurrence, of any schedule, whose backup should be good by ``now``."""
    cutoff = now - window - grace
    fires = [fire for s in schedules if (fire := previous_fire(s, cutoff)) is not None]
    return max(fires, default=None)


def judge(
    history: TargetHistory,
    due: datetime | None,
    *,
    enabled: bool,
) -> TargetStatus:
    """The verdict on one target, with the reason an operator reads first."""
    disabled = "" if enabled else " (policy disabled)"
    failed = history.last_run_state == "failed"
    error = f": {history.last_run_error}" if history.last_run_error else ""
    if history.newest_good_at is None:
        if failed:
            return TargetStatus(Verdict.NEVER, f"no good backup; last run failed{error}", due)
        if due is None:
            return TargetStatus(Verdict.OK, "no backup due yet" + disabled, due)
        return TargetStatus(Verdict.NEVER, "no good backup yet" + disabled, due)
    if due is None or history.newest_good_at >= due:
        return TargetStatus(Verdict.OK, "newest good backup is as recent as promised", due)
    behind = f"no good backup since the {due:%Y-%m-%d %H:%M} UTC run"
    if failed:
        return TargetStatus(Verdict.FAILING, f"{behind}; last run failed{error}", due)
    if history.missed_since_good:
        missed = f"{history.missed_since_good} occurrence(s) missed"
        return TargetStatus(Verdict.LATE, f"{behind}; {missed}{disabled}", due)
    return TargetStatus(Verdict.LATE, behind + disabled, due)
