"""The SQL store (SQLAlchemy 2): one implementation for SQLite and PostgreSQL.

Concurrency rules, for several schedulers and workers on one database:
- the tick locks due schedules (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
  SQLite every transaction is ``BEGIN IMMEDIATE``) and inserts runs with
  ``ON CONFLICT DO NOTHING`` on ``(policy, target, scheduled_for)``;
- workers claim runs with a lease and an attempt number; every write by a
  worker names the attempt it holds (fencing) and fails with ``LeaseLost``
  when another worker has taken the run over;
- a partial unique index keeps at most one active run per target.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Engine,
    Exists,
    Select,
    Table,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from stackback.errors import Conflict, InvalidInput, LeaseLost, NotFound
from stackback.policy import (
    ACTIVE_RUN_STATES,
    Artifact,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupStatus,
    Policy,
    Run,
    RunState,
    Selector,
)
from stackback.records import (
    BackupFilter,
    DuePolicy,
    DueSchedule,
    NewRun,
    RunFilter,
    ScheduleState,
    StepNote,
    TickPlan,
)
from stackback.schedule import CronSchedule
from stackback.store.convert import (
    artifact_from_row,
    backup_from_row,
    fill_policy_row,
    policy_from_row,
    run_from_row,
)
from stackback.store.database import create_db_engine, ensure_migrated
from stackback.store.models import (
    ArtifactRow,
    BackupRow,
    PolicyRow,
    RunRow,
    RunStepRow,
    ScheduleRow,
)
from stackback.store.types import UTCDateTime

WORKABLE_STATES = (
    RunState.PENDING.value,
    RunState.SNAPSHOTTING.value,
    RunState.WAITING.value,
    RunState.ROTATING.value,
)
_ACTIVE = tuple(s.value for s in ACTIVE_RUN_STATES)
_OtherRun = aliased(RunRow)


def new_id() -> str:
    return str(uuid.uuid4())


class SqlStore:
    """Durable state of stackback: policies, schedules, runs, backups, artifacts."""

    def __init__(self, engine: Engine, *, check_schema: bool = True) -> None:
        self.engine = engine
        if check_schema:
            ensure_migrated(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._tick_cache: dict[int, _TickStatements] = {}
        processor = UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._bind_time: Callable[[datetime], Any] = processor or (lambda value: value)

    @classmethod
    def from_url(cls, url: str, *, check_schema: bool = True) -> SqlStore:
        return cls(create_db_engine(url), check_schema=check_schema)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    # -- policies --------------------------------------------------------------------

    def _policy_row(self, session: Session, ref: str) -> PolicyRow:
        row = session.get(PolicyRow, ref)
        if row is None:
            row = session.scalars(select(PolicyRow).where(PolicyRow.name == ref)).first()
        if row is None:
            raise NotFound(f"no policy named or with id {ref!r}")
        return row

    def _crons(self, session: Session, policy_id: str) -> list[str]:
        return list(
            session.scalars(
                select(ScheduleRow.cron)
                .where(ScheduleRow.policy_id == policy_id)
                .order_by(ScheduleRow.position)
            )
        )

    def create_policy(
        self, policy: Policy, next_fires: Sequence[datetime | None], *, now: datetime
    ) -> Policy:
        """Store a new policy and its schedules (with their first fire times)."""
        with self._session() as session:
            if session.scalars(select(PolicyRow.id).where(PolicyRow.name == policy.name)).first():
                raise Conflict(f"a policy named {policy.name!r} already exists")
            row = PolicyRow(id=policy.id, created_at=now, updated_at=now)
            fill_policy_row(row, policy)
            session.add(row)
            session.flush()
            self._replace_schedules(session, row, policy, next_fires, now=now)
            return policy_from_row(row, list(policy.schedules))

    def update_policy(
        self, policy: Policy, next_fires: Sequence[datetime | None] | None, *, now: datetime
    ) -> Policy:
        """Replace a policy's settings; ``next_fires`` None keeps the schedule state."""
        with self._session() as session:
            row = self._policy_row(session, policy.id)
            clash = session.scalars(
                select(PolicyRow.id).where(PolicyRow.name == policy.name, PolicyRow.id != row.id)
            ).first()
            if clash:
                raise Conflict(f"a policy named {policy.name!r} already exists")
            if next_fires is not None:
                self._replace_schedules(session, row, policy, next_fires, now=now)
            fill_policy_row(row, policy)
            row.updated_at = now
            return policy_from_row(row, self._crons(session, row.id))

    def _replace_schedules(
        self,
        session: Session,
        policy_row: PolicyRow,
        policy: Policy,
        next_fires: Sequence[datetime | None],
        *,
        now: datetime,
    ) -> None:
        """Give the policy's schedules their new next fire times (``policy_row`` not yet updated).

        On a kept, enabled schedule, an occurrence still waiting for its targets
        stays waiting, and one that fell due but no tick has processed yet (the
        scheduler was down) stays due: the next tick runs or records it under
        the new settings. On a schedule removed or disabled, both are recorded
        as cancelled runs; nothing owed is dropped silently.
        """
        if len(next_fires) != len(policy.schedules):
            raise InvalidInput("one next fire time per schedule is required")
        existing = {
            s.cron: s
            for s in session.scalars(
                select(ScheduleRow).where(ScheduleRow.policy_id == policy.id).with_for_update()
            )
        }
        keep_ids = set()
        for position, (cron, next_fire) in enumerate(
            zip(policy.schedules, next_fires, strict=True)
        ):
            row = existing.get(cron)
            if row is None:
                row = ScheduleRow(policy_id=policy.id, cron=cron)
                session.add(row)
            row.position = position
            owed = row.next_fire_at is not None and (
                row.deferred_fire_at is not None or row.next_fire_at <= now
            )
            if next_fire is None:
                self._settle(session, policy_row, [row], "its policy was disabled", now=now)
                row.next_fire_at = None
            elif owed and row.next_fire_at is not None:
                row.next_fire_at = min(row.next_fire_at, next_fire)
            else:
                row.next_fire_at = next_fire
            session.flush()
            keep_ids.add(row.id)
        kept = [row for row in existing.values() if row.id in keep_ids]

        def still_owed(fire: datetime) -> bool:  # the tick runs or records it: do not cancel
            return any(_owes(row, policy.timezone, fire, now) for row in kept)

        removed = [row for row in existing.values() if row.id not in keep_ids]
        self._settle(
            session, policy_row, removed, "its schedule was removed", now=now, skip=still_owed
        )
        for row in removed:
            session.delete(row)

    @staticmethod
    def _settle(
        session: Session,
        policy_row: PolicyRow,
        schedules: Sequence[ScheduleRow],
        why: str,
        *,
        now: datetime,
        skip: Callable[[datetime], bool] = lambda _fire: False,
    ) -> None:
        """Record what each schedule still owes before its timing changes or it goes.

        An occurrence waiting for its targets, and occurrences that fell due but
        that no tick has processed yet (the scheduler was down or behind), become
        cancelled runs with the reason (at most ``SETTLE_LIMIT`` per schedule);
        an occurrence that already has its run, or that ``skip`` names (another
        schedule of the policy still owes it), is left alone. ``policy_row``
        still has the timing the occurrences fell due under.
        """
        if policy_row.selector_key is not None:
            selector = Selector(policy_row.selector_key, policy_row.selector_value or "")
            targets = [selector.run_target]
        else:
            targets = list(policy_row.targets)
        for schedule in schedules:
            owed = _owed_occurrences(schedule, policy_row.timezone, now)
            waited_for = schedule.deferred_fire_at
            schedule.deferred_fire_at = None
            if not owed:
                continue
            existing: set[tuple[str, datetime]] = {
                (target, fire)
                for target, fire in session.execute(
                    select(RunRow.target, RunRow.scheduled_for).where(
                        RunRow.policy_id == policy_row.id, RunRow.scheduled_for >= owed[0]
                    )
                )
            }
            for fire in owed:
                if skip(fire):
                    continue
                error = (
                    f"{why} while this occurrence waited for its targets"
                    if fire == waited_for
                    else f"{why} before the scheduler had processed this occurrence"
                )
                for target in targets:
                    if (target, fire) in existing:
                        continue
                    existing.add((target, fire))
                    session.add(
                        RunRow(
                            id=new_id(),
                            policy_id=policy_row.id,
                            policy_name=policy_row.name,
                            target=target,
                            scheduled_for=fire,
                            due_at=fire,
                            state=RunState.CANCELLED.value,
                            attempt=0,
                            trigger="schedule",
                            label=policy_row.label,
                            cloud=policy_row.cloud,
                            error=error,
                            finished_at=now,
                            created_at=now,
                        )
                    )

    def get_policy(self, ref: str) -> Policy:
        with self._session() as session:
            row = self._policy_row(session, ref)
            return policy_from_row(row, self._crons(session, row.id))

    def list_policies(self) -> list[Policy]:
        with self._session() as session:
            rows = session.scalars(select(PolicyRow).order_by(PolicyRow.name)).all()
            crons: dict[str, list[str]] = {r.id: [] for r in rows}
            for s in session.scalars(select(ScheduleRow).order_by(ScheduleRow.position)):
                crons.setdefault(s.policy_id, []).append(s.cron)
            return [policy_from_row(r, crons[r.id]) for r in rows]

    def delete_policy(self, ref: str, *, now: datetime) -> Policy:
        """Delete a policy; its pending runs are cancelled, its runs and backups are kept."""
        with self._session() as session:
            row = self._policy_row(session, ref)
            policy = policy_from_row(row, self._crons(session, row.id))
            # The delete sets policy_id to NULL on the policy's runs and backups. Lock them
            # first in the order workers and deletion requests do (a run, then backups by
            # id): the foreign key action alone would take them in table order, and could
            # deadlock with a concurrent deletion request on PostgreSQL.
            for table in (RunRow, BackupRow):
                session.execute(
                    select(table.id)
                    .where(table.policy_id == row.id)
                    .order_by(table.id)
                    .with_for_update()
                )
            session.execute(
                update(RunRow)
                .where(RunRow.policy_id == row.id, RunRow.state == RunState.PENDING.value)
                .values(
                    state=RunState.CANCELLED.value,
                    finished_at=now,
                    error="policy deleted",
                    attempt=RunRow.attempt + 1,  # fences a worker that has it claimed
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            owing = session.scalars(
                select(ScheduleRow).where(ScheduleRow.policy_id == row.id).with_for_update()
            )
            self._settle(session, row, list(owing), "its policy was deleted", now=now)
            session.flush()
            session.execute(delete(ScheduleRow).where(ScheduleRow.policy_id == row.id))
            session.delete(row)
            return policy

    def schedules(self, policy_id: str) -> list[ScheduleState]:
        with self._session() as session:
            rows = session.scalars(
                select(ScheduleRow)
                .where(ScheduleRow.policy_id == policy_id)
                .order_by(ScheduleRow.position)
            )
            return [_schedule_state(r) for r in rows]

    # -- scheduler tick --------------------------------------------------------------

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
        s, p = _SCHEDULES.c, _POLICIES.c
        due = select(s.id).where(s.policy_id == p.id, s.next_fire_at <= now).exists()
        query = (
            select(p.id, p.name, p.timezone, p.window_minutes, p.selector_key)
            .add_columns(p.selector_value, p.cloud, p.label)
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
            new_runs: list[tuple[Any, ...]] = []
            advances: list[tuple[Any, ...]] = []
            created = bind(now)
            for (
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
            ) in due:
                policy = DuePolicy(
                    id=policy_id,
                    name=name,
                    timezone=timezone,
                    window_minutes=window_minutes,
                    targets=tuple(targets),
                    selector=(
                        Selector(selector_key, selector_value or "")
                        if selector_key is not None
                        else None
                    ),
                    enabled=enabled,
                    cloud=cloud,
                    label=label,
                )
                schedule = ScheduleState(
                    schedule_id, policy_id, cron, next_fire_at, last_fired_at, deferred_fire_at
                )
                plan = planner(DueSchedule(schedule, policy))
                for run in plan.runs:
                    new_runs.append(
                        (
                            new_id(),
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

    def create_manual_run(
        self,
        *,
        target: str,
        now: datetime,
        label: str | None,
        retention: Mapping[str, object] | None,
        cloud: str | None = None,
        policy: Policy | None = None,
    ) -> Run:
        """An on-demand run (``backup now``), due at once."""
        with self._session() as session:
            row = RunRow(
                id=new_id(),
                policy_id=policy.id if policy else None,
                policy_name=policy.name if policy else None,
                target=target,
                scheduled_for=now,
                due_at=now,
                state=RunState.PENDING.value,
                attempt=0,
                trigger="manual",
                label=label,
                cloud=cloud,
                retention=dict(retention) if retention is not None else None,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return run_from_row(row)

    # -- workers ---------------------------------------------------------------------

    def claim_runs(
        self, now: datetime, owner: str, *, lease_seconds: float, limit: int = 1
    ) -> list[Run]:
        """Lease up to ``limit`` runs that can make progress now.

        A run is claimable when it is not terminal, due, past its
        ``not_before``, and unleased or its lease has expired (the reaper's
        take-over). A pending run waits while its target has an active run.
        Each claim increments ``attempt``: the fencing token of the lease.
        """
        with self._session() as session:
            target_busy = _target_busy()
            query = (
                select(RunRow)
                .where(
                    RunRow.state.in_(WORKABLE_STATES),
                    RunRow.due_at <= now,
                    or_(RunRow.not_before.is_(None), RunRow.not_before <= now),
                    or_(RunRow.lease_expires_at.is_(None), RunRow.lease_expires_at <= now),
                    or_(RunRow.state != RunState.PENDING.value, ~target_busy),
                )
                .order_by(RunRow.due_at, RunRow.id)
                .limit(limit)
            )
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True, of=RunRow)
            rows = session.scalars(query).all()
            expires = now + timedelta(seconds=lease_seconds)
            for row in rows:
                row.lease_owner = owner
                row.lease_expires_at = expires
                row.attempt += 1
                if row.started_at is None:
                    row.started_at = now
            session.flush()
            return [run_from_row(r) for r in rows]

    def next_wakeup(self) -> datetime | None:
        """When the earliest unfinished run can next make progress (for idle sleeping).

        A pending run queued behind its target's active run is left out, as
        ``claim_runs`` leaves it: it can go once that run moves, whose own
        wake-up is counted.
        """
        with self._session() as session:
            ready = func.coalesce(RunRow.not_before, RunRow.due_at)
            leased_until = func.coalesce(RunRow.lease_expires_at, ready)
            wake = type_coerce(
                case((leased_until > ready, leased_until), else_=ready), UTCDateTime()
            )
            return session.scalar(
                select(func.min(wake)).where(
                    RunRow.state.in_(WORKABLE_STATES),
                    or_(RunRow.state != RunState.PENDING.value, ~_target_busy()),
                )
            )

    def _fenced_run(self, session: Session, run_id: str, attempt: int) -> RunRow:
        # FOR UPDATE: on PostgreSQL a concurrent claim must not slip between check and write
        row = session.get(RunRow, run_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no run {run_id}")
        if row.attempt != attempt:
            raise LeaseLost(
                f"run {run_id} was taken over (attempt {row.attempt}, this worker holds {attempt})"
            )
        return row

    def update_run(
        self, run_id: str, attempt: int, *, step: StepNote | None = None, **values: Any
    ) -> Run:
        """Write run fields (and record a step), fenced by ``attempt``.

        Raises ``LeaseLost`` when another worker holds a newer attempt, or
        ``Conflict`` when the target already has an active run (the partial
        unique index refused the state change).
        """
        if "state" in values and isinstance(values["state"], RunState):
            values["state"] = values["state"].value
        try:
            with self._session() as session:
                row = self._fenced_run(session, run_id, attempt)
                for key, value in values.items():
                    setattr(row, key, value)
                if step is not None:
                    session.add(_step_row(step, run_id, attempt))
                session.flush()
                return run_from_row(row)
        except IntegrityError as exc:
            raise Conflict(f"run {run_id}: target already has an active run") from exc

    def renew_lease(self, run_id: str, attempt: int, *, until: datetime) -> None:
        self.update_run(run_id, attempt, lease_expires_at=until)

    def release_run(
        self,
        run_id: str,
        attempt: int,
        *,
        not_before: datetime | None,
        step: StepNote | None = None,
    ) -> Run:
        """Give the lease back; the run is claimable again from ``not_before``."""
        return self.update_run(
            run_id,
            attempt,
            step=step,
            lease_owner=None,
            lease_expires_at=None,
            not_before=not_before,
        )

    def record_step(
        self,
        run_id: str,
        attempt: int,
        name: str,
        *,
        started_at: datetime,
        finished_at: datetime | None,
        outcome: str,
        detail: str = "",
    ) -> None:
        """Append a step to a run's journal, fenced by ``attempt``."""
        self.update_run(
            run_id,
            attempt,
            step=StepNote(name, started_at, finished_at, outcome, detail),
        )

    def get_run(self, run_id: str) -> Run:
        with self._session() as session:
            row = _by_id_or_prefix(session, RunRow, run_id, "run")
            steps = session.scalars(
                select(RunStepRow).where(RunStepRow.run_id == row.id).order_by(RunStepRow.id)
            ).all()
            return run_from_row(row, list(steps))

    def list_runs(self, criteria: RunFilter | None = None) -> list[Run]:
        filter = criteria or RunFilter()
        with self._session() as session:
            query = select(RunRow)
            if filter.policy_id:
                query = query.where(RunRow.policy_id == filter.policy_id)
            if filter.target:
                query = query.where(
                    or_(RunRow.target == filter.target, RunRow.target_name == filter.target)
                )
            if filter.state:
                query = query.where(RunRow.state == filter.state.value)
            query = query.order_by(RunRow.scheduled_for.desc(), RunRow.id).limit(filter.limit)
            return [run_from_row(r) for r in session.scalars(query)]

    def count_runs_by_state(self) -> dict[str, int]:
        with self._session() as session:
            rows = session.execute(select(RunRow.state, func.count()).group_by(RunRow.state))
            return {state: count for state, count in rows}

    def delete_run(self, run_id: str) -> Run:
        """Delete the record of a finished run (never of one in progress)."""
        run = self.get_run(run_id)
        if not run.state.is_terminal:
            raise Conflict(f"run {run.id} is {run.state.value}; only finished runs can be deleted")
        with self._session() as session:
            session.execute(delete(RunRow).where(RunRow.id == run.id))
        return run

    # -- backups and artifacts -------------------------------------------------------

    def _fence(self, session: Session, fence: tuple[str, int] | None) -> None:
        """Fence a worker's write by its run's attempt: ``fence`` is ``(run id, attempt)``.

        The check runs in the write's own transaction (``_fenced_run``: the run row
        locked ``FOR UPDATE``), so a worker whose lease was taken over writes nothing
        and gets ``LeaseLost``.
        """
        if fence is not None:
            self._fenced_run(session, *fence)

    def ensure_backup(self, backup: Backup, *, fence: tuple[str, int] | None = None) -> Backup:
        """Create the backup record of a run, or return the one it already has."""
        with self._session() as session:
            self._fence(session, fence)
            if backup.run_id:
                existing = session.scalars(
                    select(BackupRow).where(BackupRow.run_id == backup.run_id)
                ).first()
                if existing is not None:
                    return self._backup(session, existing)
            row = BackupRow(
                id=backup.id,
                policy_id=backup.policy_id,
                policy_name=backup.policy_name,
                run_id=backup.run_id,
                target=backup.target,
                target_name=backup.target_name,
                kind=backup.kind.value,
                label=backup.label,
                status=backup.status.value,
                protected=backup.protected,
                cloud=backup.cloud,
                project=backup.project,
                reasons=list(backup.reasons),
                error=backup.error,
                created_at=backup.created_at,
            )
            session.add(row)
            session.flush()
            return self._backup(session, row)

    def add_artifact(
        self,
        backup_id: str,
        kind: ArtifactKind,
        cloud_id: str,
        *,
        status: ArtifactStatus,
        now: datetime,
        size: int | None = None,
        fence: tuple[str, int] | None = None,
    ) -> Artifact:
        """Record a cloud object as part of a backup (idempotent on the cloud object)."""
        with self._session() as session:
            self._fence(session, fence)
            row = session.scalars(
                select(ArtifactRow).where(
                    ArtifactRow.kind == kind.value, ArtifactRow.cloud_id == cloud_id
                )
            ).first()
            if row is None:
                row = ArtifactRow(
                    id=new_id(),
                    backup_id=backup_id,
                    kind=kind.value,
                    cloud_id=cloud_id,
                    status=status.value,
                    size=size,
                    delete_attempts=0,
                    created_at=now,
                )
                session.add(row)
                session.flush()
            elif row.backup_id != backup_id:
                raise Conflict(f"{kind.value} {cloud_id} already belongs to backup {row.backup_id}")
            return artifact_from_row(row)

    def update_artifact(
        self, artifact_id: str, *, fence: tuple[str, int] | None = None, **values: Any
    ) -> Artifact:
        """Write artifact fields (status, size, error...); ``fence`` as for ``update_backup``."""
        for key in ("status", "kind"):
            if key in values and hasattr(values[key], "value"):
                values[key] = values[key].value
        with self._session() as session:
            self._fence(session, fence)
            row = session.get(ArtifactRow, artifact_id)
            if row is None:
                raise NotFound(f"no artifact {artifact_id}")
            for key, value in values.items():
                setattr(row, key, value)
            return artifact_from_row(row)

    def update_backup(
        self, backup_id: str, *, fence: tuple[str, int] | None = None, **values: Any
    ) -> None:
        """Write backup fields (status, reasons, protection, error...).

        A worker passes ``fence=(run id, attempt)``: the write happens only if it
        still holds that attempt of the run, else ``LeaseLost`` and nothing is written.
        """
        if "status" in values and hasattr(values["status"], "value"):
            values["status"] = values["status"].value
        if "reasons" in values:
            values["reasons"] = list(values["reasons"])
        with self._session() as session:
            self._fence(session, fence)
            row = session.get(BackupRow, backup_id)
            if row is None:
                raise NotFound(f"no backup {backup_id!r}")
            for key, value in values.items():
                setattr(row, key, value)

    def _target_backups(self, session: Session, row: BackupRow) -> list[BackupRow]:
        """The live backups of ``row``'s target (and ``row``), locked in id order and re-read.

        Deletion requests and the collector's last check take these locks before
        deciding whether another good backup remains, so two of them cannot each
        count on the other's backup (on SQLite, ``BEGIN IMMEDIATE`` serialises them).
        The target is matched by its key only: Nova names are not unique, so a
        backup of another server with the same name must not count as good.
        """
        live = (BackupStatus.AVAILABLE.value, BackupStatus.DELETING.value)
        query = (
            select(BackupRow)
            .where(
                BackupRow.target == row.target,
                or_(BackupRow.status.in_(live), BackupRow.id == row.id),
            )
            .order_by(BackupRow.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return list(session.scalars(query))

    @staticmethod
    def _another_good(group: Sequence[BackupRow], row: BackupRow) -> bool:
        """Whether a backup of ``group`` other than ``row`` is good (available, not deleting)."""
        return any(r.id != row.id and r.status == BackupStatus.AVAILABLE.value for r in group)

    def request_deletion(self, ref: str, *, reasons: Sequence[str], force: bool = False) -> Backup:
        """Mark a backup ``deleting`` for the operator, atomically with the safety rules.

        Without ``force`` a protected backup is refused, and so is the last good
        (available) backup of its target: another one must remain, checked with the
        target's backups locked, so that a concurrent request or a run's rotation
        cannot pass the same check at the same time. Such a deletion is *guarded*:
        the collector checks again, just before deleting anything, that another good
        backup remains. ``force`` unprotects the backup and waives both rules. A
        backup already deleted, or being deleted, is returned as it is (``force``
        then still waives the guard).
        """
        with self._session() as session:
            row = self._backup_row(session, ref)
            group = self._target_backups(session, row)
            if row.status == BackupStatus.DELETED.value:
                return self._backup(session, row)
            if row.status == BackupStatus.DELETING.value:
                if force:
                    row.deletion_guarded = False
                return self._backup(session, row)
            if row.protected and not force:
                raise Conflict(f"backup {row.id} is protected: unprotect it or use --force")
            guarded = row.status == BackupStatus.AVAILABLE.value and not force
            if guarded and not self._another_good(group, row):
                raise Conflict(
                    f"backup {row.id} is the last good backup of {row.target}: use --force"
                )
            row.protected = False
            row.status = BackupStatus.DELETING.value
            row.reasons = list(reasons)
            row.deletion_guarded = guarded
            row.deletion_run_id = None
            return self._backup(session, row)

    def forget_backups(
        self,
        backup_ids: Sequence[str],
        *,
        reasons: Sequence[str],
        fence: tuple[str, int],
        budget: int,
    ) -> list[Backup]:
        """Mark the backups a run's retention forgets ``deleting``: one transaction, fenced.

        Each is recorded as forgotten by the run (``deletion_run_id``), and the
        budget holds across the run's attempts: what an earlier attempt marked
        counts against it, so a run resumed after a crash between its decision and
        its journal entry forgets at most ``budget`` backups in all. In the given
        order, a backup is marked only if it is still available and unprotected and
        another good backup of its target remains; each deletion is guarded.
        Marks nothing unless the run's own backup is available (the operator may
        have deleted it meanwhile): nothing is forgotten before the new backup is good.
        Returns the backups the run has marked in all its attempts that are still
        being deleted or deleted (not those the collector refused), oldest first.
        """
        run_id = fence[0]
        mine = (
            select(BackupRow)
            .where(BackupRow.deletion_run_id == run_id)
            .order_by(BackupRow.created_at, BackupRow.id)
        )
        with self._session() as session:
            self._fenced_run(session, *fence)
            own = session.scalar(select(BackupRow.status).where(BackupRow.run_id == run_id))
            left = budget - len(session.scalars(mine).all())
            if own != BackupStatus.AVAILABLE.value:
                left = 0
            groups: dict[str, list[BackupRow]] = {}
            for backup_id in backup_ids:
                if left <= 0:
                    break
                row = session.get(BackupRow, backup_id)
                if row is None:
                    continue
                if row.target not in groups:
                    groups[row.target] = self._target_backups(session, row)
                if (
                    row.status != BackupStatus.AVAILABLE.value
                    or row.protected
                    or not self._another_good(groups[row.target], row)
                ):
                    continue
                row.status = BackupStatus.DELETING.value
                row.reasons = list(reasons)
                row.deletion_guarded = True
                row.deletion_run_id = run_id
                left -= 1
            session.flush()
            gone = (BackupStatus.DELETING.value, BackupStatus.DELETED.value)
            return [self._backup(session, r) for r in session.scalars(mine) if r.status in gone]

    def finish_deletion(self, backup_id: str, *, now: datetime) -> bool:
        """Record a backup ``deleted`` once its artifacts are gone, if it is still ``deleting``.

        Conditional, so that it cannot overwrite a decision taken meanwhile (another
        collector's check restoring the backup). Returns whether it was recorded.
        """
        with self.engine.begin() as connection:
            done = connection.execute(
                update(_BACKUPS)
                .where(_BACKUPS.c.id == backup_id, _BACKUPS.c.status == BackupStatus.DELETING.value)
                .values(status=BackupStatus.DELETED.value, deleted_at=now)
            )
            return done.rowcount == 1

    def check_deletion(self, backup_id: str) -> str | None:
        """The collector's last check before it deletes a backup's artifacts.

        Returns None when the backup is ``deleting`` and may go. Otherwise returns
        why not; when the deletion is refused — the backup is protected, or its
        deletion is guarded and no other good backup of its target remains — the
        backup is restored (available if its artifacts are intact, else failed)
        with the reason as its error. Decided with the target's backups locked.
        """
        with self._session() as session:
            row = self._backup_row(session, backup_id)
            group = self._target_backups(session, row)
            if row.status != BackupStatus.DELETING.value:
                return f"backup {row.id} is {row.status}, not being deleted"
            if row.protected:
                why = "deletion refused: the backup is protected"
            elif row.deletion_guarded and not self._another_good(group, row):
                why = (
                    f"deletion refused: it is the last good backup of {row.target} "
                    "(`backup delete --force` deletes it anyway)"
                )
                row.reasons = ["last good backup of its target"]
            else:
                return None
            artifacts = session.scalars(
                select(ArtifactRow.status).where(ArtifactRow.backup_id == row.id)
            ).all()
            intact = all(status == ArtifactStatus.AVAILABLE.value for status in artifacts)
            row.status = (BackupStatus.AVAILABLE if intact else BackupStatus.FAILED).value
            row.error = why
            row.deletion_guarded = False
            return why

    def _backup_row(self, session: Session, ref: str) -> BackupRow:
        return _by_id_or_prefix(session, BackupRow, ref, "backup")

    def _backup(self, session: Session, row: BackupRow) -> Backup:
        artifacts = session.scalars(
            select(ArtifactRow)
            .where(ArtifactRow.backup_id == row.id)
            .order_by(ArtifactRow.created_at, ArtifactRow.id)
        ).all()
        return backup_from_row(row, list(artifacts))

    def get_backup(self, ref: str) -> Backup:
        with self._session() as session:
            return self._backup(session, self._backup_row(session, ref))

    def backup_for_run(self, run_id: str) -> Backup | None:
        with self._session() as session:
            row = session.scalars(select(BackupRow).where(BackupRow.run_id == run_id)).first()
            return self._backup(session, row) if row is not None else None

    def list_backups(self, criteria: BackupFilter | None = None) -> list[Backup]:
        filter = criteria or BackupFilter()
        with self._session() as session:
            query = select(BackupRow)
            if filter.target:
                query = query.where(
                    or_(BackupRow.target == filter.target, BackupRow.target_name == filter.target)
                )
            if filter.policy_id:
                query = query.where(BackupRow.policy_id == filter.policy_id)
            if filter.label is not None:
                query = query.where(BackupRow.label == filter.label)
            if filter.statuses:
                query = query.where(BackupRow.status.in_([s.value for s in filter.statuses]))
            elif not filter.include_deleted:
                query = query.where(BackupRow.status != BackupStatus.DELETED.value)
            query = query.order_by(BackupRow.created_at.desc(), BackupRow.id).limit(filter.limit)
            rows = session.scalars(query).all()
            by_backup: dict[str, list[ArtifactRow]] = {r.id: [] for r in rows}
            ids = list(by_backup)
            for first in range(0, len(ids), _IN_CHUNK):  # PostgreSQL binds at most 65,535
                for a in session.scalars(
                    select(ArtifactRow)
                    .where(ArtifactRow.backup_id.in_(ids[first : first + _IN_CHUNK]))
                    .order_by(ArtifactRow.created_at, ArtifactRow.id)
                ):
                    by_backup[a.backup_id].append(a)
            return [backup_from_row(r, by_backup[r.id]) for r in rows]

    def set_protected(self, ref: str, protected: bool) -> Backup:
        """Protect or unprotect a backup, decided with its row locked and re-read.

        The lock orders this against a rotation's ``forget_backups``, a deletion
        request and the collector (they lock the row too; on SQLite ``BEGIN
        IMMEDIATE`` serialises them): protecting a backup that is being deleted, or
        was, is refused with ``Conflict`` instead of reporting a protection that
        nothing honours. Unprotecting always succeeds: a backup being deleted or
        deleted is already unprotected (deletion clears the flag), so the state the
        operator asks for holds (a stale flag left by an older version is cleared).
        """
        with self._session() as session:
            found = self._backup_row(session, ref)
            row = session.scalars(
                select(BackupRow)
                .where(BackupRow.id == found.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one()
            if protected and row.status == BackupStatus.DELETING.value:
                raise Conflict(f"backup {row.id} is being deleted: it cannot be protected")
            if protected and row.status == BackupStatus.DELETED.value:
                raise Conflict(f"backup {row.id} was deleted: it cannot be protected")
            row.protected = protected
            return self._backup(session, row)

    def backups_to_collect(self, *, limit: int = 100) -> list[Backup]:
        """Backups whose deletion was requested and not finished (the GC's queue)."""
        return self.list_backups(BackupFilter(statuses=(BackupStatus.DELETING,), limit=limit))


_SCHEDULES = cast(Table, ScheduleRow.__table__)
_POLICIES = cast(Table, PolicyRow.__table__)
_RUNS = cast(Table, RunRow.__table__)
_BACKUPS = cast(Table, BackupRow.__table__)


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
        s, p = _SCHEDULES.c, _POLICIES.c
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
            )
            .join_from(_SCHEDULES, _POLICIES, p.id == s.policy_id)
            .where(s.next_fire_at <= bindparam("now", type_=s.next_fire_at.type))
            .order_by(s.next_fire_at)
            .limit(limit)
        )
        if is_postgres:
            due = due.with_for_update(skip_locked=True, of=_SCHEDULES)
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
        key = value.astimezone(UTC)  # two instants of a repeated local hour compare equal
        bound = self._seen.get(key)
        if bound is None:
            bound = self._seen[key] = self._convert(key)
        return bound


def _step_row(note: StepNote, run_id: str, attempt: int) -> RunStepRow:
    return RunStepRow(
        run_id=run_id,
        name=note.name,
        attempt=attempt,
        started_at=note.started_at,
        finished_at=note.finished_at,
        outcome=note.outcome,
        detail=note.detail[:4000],
    )


_IN_CHUNK = 10_000
"""Values bound in one ``IN (...)``: PostgreSQL takes at most 65,535 parameters a query."""

MIN_ID_PREFIX = 6
_ID_PREFIX = re.compile(r"[0-9a-f-]+")


_Row = TypeVar("_Row", RunRow, BackupRow)


def _by_id_or_prefix(session: Session, model: type[_Row], ref: str, what: str) -> _Row:
    """The row whose id is ``ref``, or the only one whose id starts with it (6+ characters)."""
    row = session.get(model, ref)
    if row is not None:
        return row
    if len(ref) >= MIN_ID_PREFIX and _ID_PREFIX.fullmatch(ref):
        rows = session.scalars(
            select(model).where(model.id.startswith(ref, autoescape=True)).limit(2)
        ).all()
        if len(rows) > 1:
            raise InvalidInput(f"{ref!r} is the start of several {what} ids: give more of it")
        if rows:
            return rows[0]
    raise NotFound(f"no {what} {ref!r}")


def _target_busy() -> Exists:
    """A run's target has another run in an active state (a pending run must wait)."""
    return exists().where(
        _OtherRun.target == RunRow.target,
        _OtherRun.state.in_(_ACTIVE),
        _OtherRun.id != RunRow.id,
    )


SETTLE_LIMIT = 10_000
"""Occurrences of one schedule recorded when it changes with a backlog no tick processed."""


def _owed_occurrences(schedule: ScheduleRow, timezone: str, now: datetime) -> list[datetime]:
    """The schedule's occurrences up to ``now`` that no tick has turned into runs yet."""
    first = schedule.deferred_fire_at or schedule.next_fire_at
    if first is None or first > now:
        return []
    try:
        later = CronSchedule(schedule.cron, timezone).fires_between(
            first, now, limit=SETTLE_LIMIT - 1
        )
    except InvalidInput:  # a schedule that cannot be evaluated owes what fell due
        later = []
    return [first, *later]


def _owes(schedule: ScheduleRow, timezone: str, fire: datetime, now: datetime) -> bool:
    """Whether ``fire`` is among the schedule's occurrences that no tick has processed yet."""
    first = schedule.deferred_fire_at or schedule.next_fire_at
    if first is None or not first <= fire <= now:
        return False
    if fire == first:
        return True
    try:
        return CronSchedule(schedule.cron, timezone).next_after(fire - _JUST_BEFORE) == fire
    except InvalidInput:
        return False


_JUST_BEFORE = timedelta(microseconds=1)


def _schedule_state(row: ScheduleRow) -> ScheduleState:
    return ScheduleState(
        id=row.id,
        policy_id=row.policy_id,
        cron=row.cron,
        next_fire_at=row.next_fire_at,
        last_fired_at=row.last_fired_at,
        deferred_fire_at=row.deferred_fire_at,
    )


__all__ = [
    "BackupFilter",
    "DuePolicy",
    "DueSchedule",
    "NewRun",
    "RunFilter",
    "ScheduleState",
    "SqlStore",
    "StepNote",
    "TickPlan",
]
