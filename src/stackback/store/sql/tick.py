"""The scheduler tick's reads and writes: the hot path, kept close to the driver."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select, bindparam, func, select

from stackback.policy import BackupKind, Selector
from stackback.records import DuePolicy, DueSchedule, ScheduleState, TickPlan
from stackback.store.models import ScheduleRow
from stackback.store.sql.base import POLICIES, SCHEDULES, SqlBase
from stackback.store.types import UTCDateTime


class TickStore(SqlBase):
    """Due schedules in, runs and advanced schedules out (one transaction per batch)."""

    def __init__(self, engine: Engine, *, check_schema: bool = True) -> None:
        super().__init__(engine, check_schema=check_schema)
        self._tick_cache: dict[int, _TickStatements] = {}
        processor = UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._bind_time: Callable[[datetime], Any] = processor or (lambda value: value)

    def next_fire_time(self) -> datetime | None:
        """The earliest upcoming fire time over all schedules (for sleeping until it).

        Also every idle tick's only question, so it is one Core read of an index.
        """
        with self.engine.connect() as connection:
            return connection.scalar(select(func.min(ScheduleRow.next_fire_at)))

    def due_selector_policies(self, now: datetime) -> list[DuePolicy]:
        """Enabled policies with a selector and a schedule due at ``now`` (no row locked).

        The scheduler resolves their selectors (a cloud call) before the tick's
        transaction, so that no lock is held while the cloud answers. (On SQLite
        this short read takes the write lock like every transaction, and
        releases it before any cloud call.)
        """
        s, p = SCHEDULES.c, POLICIES.c
        due = select(s.id).where(s.policy_id == p.id, s.next_fire_at <= now).exists()
        query = (
            select(p.id, p.name, p.timezone, p.window_minutes, p.selector_key)
            .add_columns(p.selector_value, p.cloud, p.label, p.kind)
            .where(p.selector_key.is_not(None), p.enabled.is_(True), due)
        )
        with self.engine.connect() as connection:
            return [
                DuePolicy(
                    id=row.id,
                    name=row.name,
                    timezone=row.timezone,
                    window_minutes=row.window_minutes,
                    selector=Selector(row.selector_key, row.selector_value or ""),
                    cloud=row.cloud,
                    label=row.label,
                    kind=BackupKind(row.kind),
                )
                for row in connection.execute(query)
            ]

    def process_due_schedules(
        self, now: datetime, planner: Callable[[DueSchedule], TickPlan], *, limit: int = 50
    ) -> tuple[int, int]:
        """Lock up to ``limit`` due schedules, let ``planner`` decide, apply it atomically.

        Returns (schedules processed, runs inserted). Runs that already exist
        are left alone (``ON CONFLICT DO NOTHING``), so replicas racing on the
        same occurrence produce it once.

        The hot path of the tick: one Core query for the due schedules with the
        policy columns the planner needs, then one driver-level executemany
        INSERT and one executemany UPDATE whose timestamps are converted once
        per distinct value (most runs of a tick share their times).
        """
        statements = self._tick_statements(limit)
        bind = _TimeBinder(self._bind_time)
        with self.engine.begin() as connection:
            due = connection.execute(statements.due, {"now": now}).all()
            if not due:
                return 0, 0
            plans = [planner(_due_schedule(row)) for row in due]
            ids = iter(_run_ids(sum(len(plan.runs) for plan in plans)))
            created = bind(now)
            new_runs: list[tuple[Any, ...]] = []
            advances: list[tuple[Any, ...]] = []
            for plan, row in zip(plans, due, strict=True):
                schedule_id, policy_id, _, _, last_fired_at, _, name, *_, cloud, label, _ = row
                new_runs.extend(
                    (
                        next(ids),
                        policy_id,
                        name,
                        run.target,
                        run.target_name,
                        bind(run.scheduled_for),
                        bind(run.due_at),
                        run.state.value,
                        0,
                        "schedule",
                        label,
                        cloud,
                        run.error,
                        created if run.state.is_terminal else None,
                        created,
                    )
                    for run in plan.runs
                )
                advances.append(
                    (
                        bind(plan.next_fire_at),
                        bind(plan.fired_at or last_fired_at),
                        bind(plan.deferred_fire_at),
                        schedule_id,
                    )
                )
            inserted = 0
            if new_runs:
                inserted = connection.exec_driver_sql(statements.insert_runs, new_runs).rowcount
            connection.exec_driver_sql(statements.advance, advances)
            return len(due), inserted

    def _tick_statements(self, limit: int) -> _TickStatements:
        """The tick's statements, built once per batch size (SQLAlchemy caches their SQL)."""
        statements = self._tick_cache.get(limit)
        if statements is None:
            statements = _TickStatements.build(self.is_postgres, limit)
            self._tick_cache[limit] = statements
        return statements


@dataclass(frozen=True)
class _TickStatements:
    """Prebuilt statements of ``process_due_schedules`` for one dialect and batch size."""

    due: Select[Any]
    insert_runs: str
    """Driver-level SQL (positional parameters in ``_TICK_RUN_COLUMNS`` order)."""
    advance: str
    """Driver-level SQL: next fire, last fired, deferred fire, schedule id."""

    @classmethod
    def build(cls, is_postgres: bool, limit: int) -> _TickStatements:
        s, p = SCHEDULES.c, POLICIES.c
        due = (
            select(
                s.id,
                s.policy_id,
                s.cron,
                s.next_fire_at,
                s.last_fired_at,
                s.deferred_fire_at,
                p.name,
                p.timezone,
                p.window_minutes,
                p.targets,
                p.selector_key,
                p.selector_value,
                p.enabled,
                p.cloud,
                p.label,
                p.kind,
            )
            .join_from(SCHEDULES, POLICIES, p.id == s.policy_id)
            .where(s.next_fire_at <= bindparam("now", type_=s.next_fire_at.type))
            .order_by(s.next_fire_at)
            .limit(limit)
        )
        if is_postgres:
            due = due.with_for_update(skip_locked=True, of=SCHEDULES)
        mark = "%s" if is_postgres else "?"
        insert_runs = (
            f"INSERT INTO runs ({', '.join(_TICK_RUN_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_TICK_RUN_COLUMNS))}) "
            "ON CONFLICT (policy_id, target, scheduled_for) DO NOTHING"
        )
        advance = (
            f"UPDATE schedules SET next_fire_at = {mark}, last_fired_at = {mark}, "
            f"deferred_fire_at = {mark} WHERE id = {mark}"
        )
        return cls(due, insert_runs, advance)


_TICK_RUN_COLUMNS = (
    "id",
    "policy_id",
    "policy_name",
    "target",
    "target_name",
    "scheduled_for",
    "due_at",
    "state",
    "attempt",
    '"trigger"',
    "label",
    "cloud",
    "error",
    "finished_at",
    "created_at",
)


def _due_schedule(row: Sequence[Any]) -> DueSchedule:
    """A row of ``_TickStatements.due`` as the planner's input."""
    (
        schedule_id,
        policy_id,
        cron,
        next_fire_at,
        last_fired_at,
        deferred_fire_at,
        name,
        timezone,
        window_minutes,
        targets,
        selector_key,
        selector_value,
        enabled,
        cloud,
        label,
        kind,
    ) = row
    policy = DuePolicy(
        id=policy_id,
        name=name,
        timezone=timezone,
        window_minutes=window_minutes,
        targets=tuple(targets),
        selector=None if selector_key is None else Selector(selector_key, selector_value or ""),
        enabled=enabled,
        cloud=cloud,
        label=label,
        kind=BackupKind(kind),
    )
    schedule = ScheduleState(
        schedule_id, policy_id, cron, next_fire_at, last_fired_at, deferred_fire_at
    )
    return DueSchedule(schedule, policy)


def _run_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, as ``new_id`` makes them, in one go."""
    raw = bytearray(os.urandom(16 * count))
    ids: list[str] = []
    for first in range(0, 16 * count, 16):
        raw[first + 6] = raw[first + 6] & 0x0F | 0x40  # version 4
        raw[first + 8] = raw[first + 8] & 0x3F | 0x80  # RFC 4122 variant
        digits = raw[first : first + 16].hex()
        ids.append(f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}")
    return ids


class _TimeBinder:
    """Converts datetimes to driver values once per distinct value (None stays None)."""

    def __init__(self, convert: Callable[[datetime], Any]) -> None:
        self._convert = convert
        self._seen: dict[datetime, Any] = {}

    def __call__(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:  # as the ORM's UTCDateTime refuses it: never guess a zone
            raise ValueError(f"naive datetime {value!r} given to the store; use aware UTC")
        # two instants of a repeated local hour compare equal unless converted to UTC
        key = value if value.tzinfo is UTC else value.astimezone(UTC)
        bound = self._seen.get(key)
        if bound is None:
            bound = self._seen[key] = self._convert(key)
        return bound
