"""Value objects that cross the Store port: schedule states, tick plans, filters, step notes.

Pure data (no database, no I/O): the engine builds and reads them, every Store
implementation accepts and returns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from stackback.policy import BackupStatus, RunState, Selector


@dataclass(frozen=True)
class ScheduleState:
    """A policy's cron schedule and where it stands.

    ``deferred_fire_at`` is an occurrence whose targets the cloud could not
    list yet (a transient error); ``next_fire_at`` is then when the scheduler
    asks again, not the next cron time.
    """

    id: int
    policy_id: str
    cron: str
    next_fire_at: datetime | None
    last_fired_at: datetime | None
    deferred_fire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DuePolicy:
    """What the tick needs of a policy to plan its due schedules (not a full ``Policy``).

    Loaded with the due schedule in one query; retention, kind and the policy's
    other schedules are not read (the tick does not use them).
    """

    id: str
    name: str
    timezone: str
    window_minutes: int
    targets: tuple[str, ...] = ()
    selector: Selector | None = None
    enabled: bool = True
    cloud: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class DueSchedule:
    """A schedule whose next fire time has come, with what the tick needs of its policy."""

    schedule: ScheduleState
    policy: DuePolicy


@dataclass(frozen=True)
class NewRun:
    """A run the scheduler wants to exist (inserted unless it already does)."""

    target: str
    scheduled_for: datetime
    due_at: datetime
    state: RunState = RunState.PENDING
    target_name: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class TickPlan:
    """What the scheduler decided for one due schedule."""

    runs: list[NewRun] = field(default_factory=list)
    next_fire_at: datetime | None = None
    fired_at: datetime | None = None
    deferred_fire_at: datetime | None = None
    """An occurrence kept for later (``next_fire_at`` is then when to try it again)."""


@dataclass(frozen=True)
class StepNote:
    """A step to append to a run's journal in the same transaction as a run update."""

    name: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str = ""


@dataclass(frozen=True)
class RunFilter:
    """Which runs ``list_runs`` returns (newest first)."""

    policy_id: str | None = None
    target: str | None = None
    state: RunState | None = None
    limit: int = 200


@dataclass(frozen=True)
class BackupFilter:
    """Which backups ``list_backups`` returns (newest first; deleted ones only if asked)."""

    target: str | None = None
    policy_id: str | None = None
    label: str | None = None
    statuses: tuple[BackupStatus, ...] = ()
    include_deleted: bool = False
    limit: int | None = 1000
    """At most this many (None: all of them, as retention needs)."""
