"""Runs: manual ones, workers' claims and leases (fenced writes), the run journal."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, or_, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from stackback.errors import Conflict, HostBusy, InvalidInput, LeaseLost
from stackback.policy import BackupStatus, Policy, Run, RunState
from stackback.records import RunFilter, StepNote
from stackback.store.convert import run_from_row
from stackback.store.models import BackupRow, RunRow, RunStepRow
from stackback.store.sql.base import (
    WORKABLE_STATES,
    SqlBase,
    by_id_or_prefix,
    keyset_after,
    new_id,
    require_active_credential,
    target_busy,
)
from stackback.store.types import UTCDateTime

log = logging.getLogger(__name__)

TAKEOVER = "stackback_takeover"
"""Set on the log record of a lease taken over from another worker (metrics count them)."""


class RunStore(SqlBase):
    """Runs and their steps; every worker write is fenced by the attempt it holds."""

    def create_manual_run(
        self,
        *,
        target: str,
        now: datetime,
        label: str | None,
        retention: Mapping[str, object] | None,
        cloud: str | None = None,
        policy: Policy | None = None,
        project: str | None = None,
    ) -> Run:
        """An on-demand run, due at once: of ``policy`` (``policy run``), of its project; else
        (``backup now``) of ``project``, the project its target belongs to, if known."""
        with self._session() as session:
            require_active_credential(session, cloud)
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
                project=policy.project if policy else project,
            )
            session.add(row)
            session.flush()
            return run_from_row(row)

    def claim_runs(
        self,
        now: datetime,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        run_id: str | None = None,
        host_limit: int | None = None,
    ) -> list[Run]:
        """Lease up to ``limit`` runs that can make progress now (only ``run_id``, if given).

        A run is claimable when it is not terminal, due, past its
        ``not_before``, and unleased or its lease has expired (the reaper's
        take-over). A pending run waits while its target has an active run,
        and, with ``host_limit``, while the host it was found on has that many
        snapshots in progress (a run whose host is not known yet is claimed: its
        start learns the host and ``update_run`` enforces the limit).
        Each claim increments ``attempt``: the fencing token of the lease.
        """
        with self._session() as session:
            query = (
                select(RunRow)
                .where(
                    RunRow.state.in_(WORKABLE_STATES),
                    RunRow.due_at <= now,
                    or_(RunRow.not_before.is_(None), RunRow.not_before <= now),
                    or_(RunRow.lease_expires_at.is_(None), RunRow.lease_expires_at <= now),
                    or_(RunRow.state != RunState.PENDING.value, ~target_busy()),
                    *_host_has_room(host_limit),
                )
                .order_by(RunRow.due_at, RunRow.id)
                .limit(limit)
            )
            if run_id is not None:
                query = query.where(RunRow.id == run_id)
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True, of=RunRow)
            rows = session.scalars(query).all()
            if host_limit is not None:
                rows = self._within_host_room(session, rows, host_limit)
            expires = now + timedelta(seconds=lease_seconds)
            for row in rows:
                if row.lease_owner is not None and row.lease_owner != owner:
                    log.info(
                        "run %s: lease of %s expired; taken over by %s",
                        row.id,
                        row.lease_owner,
                        owner,
                        extra={TAKEOVER: True},
                    )
                row.lease_owner = owner
                row.lease_expires_at = expires
                row.attempt += 1
                if row.started_at is None:
                    row.started_at = now
            session.flush()
            return [run_from_row(r) for r in rows]

    def next_wakeup(self, host_limit: int | None = None) -> datetime | None:
        """When the earliest unfinished run can next make progress (for idle sleeping).

        A pending run queued behind its target's active run, or behind the
        snapshots of its full host (``host_limit``), is left out, as
        ``claim_runs`` leaves it: it can go once those runs move, whose own
        wake-ups are counted.
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
                    or_(RunRow.state != RunState.PENDING.value, ~target_busy()),
                    *_host_has_room(host_limit),
                )
            )

    def update_run(
        self,
        run_id: str,
        attempt: int,
        *,
        step: StepNote | None = None,
        host_limit: int | None = None,
        **values: Any,
    ) -> Run:
        """Write run fields (and record a step), fenced by ``attempt``.

        Raises ``LeaseLost`` when another worker holds a newer attempt, or
        ``Conflict`` when the target already has an active run (the partial
        unique index refused the state change). With ``host_limit``, a run
        entering ``snapshotting`` on a host (its ``host``) that already has
        that many snapshots in progress raises ``HostBusy`` and writes nothing;
        the count and the write are one transaction, serialised per host
        (PostgreSQL: an advisory lock on the host; SQLite: ``BEGIN IMMEDIATE``).
        """
        if "state" in values and isinstance(values["state"], RunState):
            values["state"] = values["state"].value
        try:
            with self._session() as session:
                row = self._fenced_run(session, run_id, attempt)
                if host_limit is not None and values.get("state") == RunState.SNAPSHOTTING.value:
                    self._check_host_room(session, row, values.get("host", row.host), host_limit)
                for key, value in values.items():
                    setattr(row, key, value)
                if step is not None:
                    session.add(_step_row(step, run_id, attempt))
                session.flush()
                return run_from_row(row)
        except IntegrityError as exc:
            raise Conflict(f"run {run_id}: target already has an active run") from exc

    def _within_host_room(
        self, session: Session, rows: Sequence[RunRow], limit: int
    ) -> list[RunRow]:
        """Of the pending runs of one known host, only as many as it has room for: when a
        snapshot ends, one worker must not take all the runs queued for that host, only to
        give all but one back."""
        hosts = {(r.cloud, r.host) for r in rows if r.state == RunState.PENDING.value and r.host}
        if not hosts:
            return list(rows)
        running = session.execute(
            select(RunRow.cloud, RunRow.host, func.count())
            .where(
                RunRow.host.in_({host for _, host in hosts}),
                RunRow.state.in_(SNAPSHOT_STATES),
            )
            .group_by(RunRow.cloud, RunRow.host)
        )
        room: dict[tuple[str | None, str | None], int] = dict.fromkeys(hosts, limit)
        for cloud, host, count in running:
            if (cloud, host) in room:
                room[(cloud, host)] = limit - count
        kept = []
        for row in rows:
            if row.state == RunState.PENDING.value and row.host:
                key = (row.cloud, row.host)
                if room[key] <= 0:
                    continue
                room[key] -= 1
            kept.append(row)
        return kept

    def _check_host_room(self, session: Session, row: RunRow, host: str | None, limit: int) -> None:
        if host is None:
            return
        if self.is_postgres:
            session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(host, 0))))
        running = session.scalar(
            select(func.count())
            .select_from(RunRow)
            .where(
                RunRow.host == host,
                RunRow.state.in_(SNAPSHOT_STATES),
                RunRow.cloud.is_not_distinct_from(row.cloud),
                RunRow.id != row.id,
            )
        )
        if (running or 0) >= limit:
            raise HostBusy(
                f"run {row.id}: host {host} already has {running} snapshots in progress "
                f"(the limit is {limit})"
            )

    def renew_lease(self, run_id: str, attempt: int, *, now: datetime, until: datetime) -> None:
        """Extend a lease still held: fenced by ``attempt``, and refused once it has expired
        (another worker may take the run over from then on) or was given back."""
        with self._session() as session:
            row = self._fenced_run(session, run_id, attempt)
            expires = row.lease_expires_at
            if row.lease_owner is None or expires is None or expires <= now:
                raise LeaseLost(f"run {run_id}: lease of attempt {attempt} no longer held")
            row.lease_expires_at = until

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

    def cancel_run(self, run_id: str, *, now: datetime, reason: str) -> Run:
        """End a pending or active run ``cancelled``; ``Conflict`` if it has already ended.

        The attempt is increased as a claim would: the worker that holds the run
        (if any) is fenced off, and its next write raises ``LeaseLost``. A backup
        the run was taking is recorded failed; nothing in the cloud is touched.
        """
        with self._session() as session:
            found = by_id_or_prefix(session, RunRow, run_id, "run")
            row = session.get(RunRow, found.id, with_for_update=True)
            assert row is not None  # found in this transaction
            if RunState(row.state).is_terminal:
                raise Conflict(f"run {row.id} has already ended ({row.state}): nothing to cancel")
            row.attempt += 1
            row.state = RunState.CANCELLED.value
            row.error = reason
            row.finished_at = now
            row.lease_owner = None
            row.lease_expires_at = None
            row.not_before = None
            session.add(
                _step_row(StepNote("cancel", now, now, "cancelled", reason), row.id, row.attempt)
            )
            session.execute(
                update(BackupRow)
                .where(
                    BackupRow.run_id == row.id,
                    BackupRow.status == BackupStatus.CREATING.value,
                )
                .values(status=BackupStatus.FAILED.value, error=reason)
            )
            session.flush()
            steps = session.scalars(
                select(RunStepRow).where(RunStepRow.run_id == row.id).order_by(RunStepRow.id)
            ).all()
            return run_from_row(row, list(steps))

    def get_run(self, run_id: str, *, project: str | None = None) -> Run:
        with self._session() as session:
            row = by_id_or_prefix(session, RunRow, run_id, "run", project=project)
            steps = session.scalars(
                select(RunStepRow).where(RunStepRow.run_id == row.id).order_by(RunStepRow.id)
            ).all()
            return run_from_row(row, list(steps))

    def list_runs(self, criteria: RunFilter | None = None) -> list[Run]:
        """Runs newest first, each with its step journal (its tries and retries show)."""
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
            if filter.project is not None:
                query = query.where(RunRow.project == filter.project)
            if filter.since is not None:
                query = query.where(RunRow.scheduled_for >= filter.since)
            if filter.until is not None:
                query = query.where(RunRow.scheduled_for < filter.until)
            if filter.marker is not None:
                query = query.where(_after_marker(session, RunRow, RunRow.scheduled_for, filter))
            query = query.order_by(RunRow.scheduled_for.desc(), RunRow.id).limit(filter.limit)
            rows = session.scalars(query).all()
            steps: dict[str, list[RunStepRow]] = {row.id: [] for row in rows}
            for chunk in _chunks(list(steps), 500):  # each run's journal, in one query per 500
                for step in session.scalars(
                    select(RunStepRow).where(RunStepRow.run_id.in_(chunk)).order_by(RunStepRow.id)
                ):
                    steps[step.run_id].append(step)
            return [run_from_row(r, steps[r.id]) for r in rows]

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


def _after_marker(
    session: Session, model: type[RunRow], key: Any, filter: RunFilter
) -> ColumnElement[bool]:
    """Runs after the marker run in the list's order (scheduled_for desc, id)."""
    marker = session.get(model, filter.marker)
    if marker is None or (filter.project is not None and marker.project != filter.project):
        raise InvalidInput(f"marker {filter.marker!r} is not a run of this list", field="marker")
    return keyset_after(key, model.id, marker.scheduled_for, marker.id)


SNAPSHOT_STATES = (RunState.SNAPSHOTTING.value, RunState.WAITING.value)
"""A host's snapshots in progress: started, until the image is found available."""
_HostRun = aliased(RunRow)


def _host_has_room(host_limit: int | None) -> list[ColumnElement[bool]]:
    """The claim's condition for a pending run under a per-host limit (none without one)."""
    if host_limit is None:
        return []
    running = (
        select(func.count())
        .select_from(_HostRun)
        .where(
            _HostRun.host == RunRow.host,
            _HostRun.state.in_(SNAPSHOT_STATES),
            _HostRun.cloud.is_not_distinct_from(RunRow.cloud),
        )
        .scalar_subquery()
    )
    return [
        or_(RunRow.state != RunState.PENDING.value, RunRow.host.is_(None), running < host_limit)
    ]


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


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
