"""Policies and their schedules, and what a schedule owes when it changes or goes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from stackback.errors import Conflict, InvalidInput, NotFound, PolicyChanged
from stackback.policy import Policy, RunState, Selector
from stackback.records import ScheduleState
from stackback.schedule import CronSchedule
from stackback.store.convert import fill_policy_row, policy_from_row, schedule_from_row
from stackback.store.models import BackupRow, PolicyRow, RunRow, ScheduleRow
from stackback.store.sql.base import SqlBase, new_id, require_active_credential
from stackback.store.sql.verify import set_verify_next


class PolicyStore(SqlBase):
    """Policies and their schedules."""

    def _policy_row(
        self, session: Session, ref: str, *, lock: bool = False, project: str | None = None
    ) -> PolicyRow:
        """The policy with id or name ``ref`` (only ``project``'s, if given); ``lock`` holds
        its row to the transaction's end (a writer that read it first must not overwrite a
        change made meanwhile). Names are unique within a project: a name that policies of
        several projects have, asked without a project, is ``InvalidInput``."""
        row = session.get(PolicyRow, ref, with_for_update=lock or None)
        if row is not None and project is not None and row.project != project:
            row = None
        if row is None:
            by_name = select(PolicyRow).where(PolicyRow.name == ref).order_by(PolicyRow.id)
            if project is not None:
                by_name = by_name.where(PolicyRow.project == project)
            rows = session.scalars(by_name.with_for_update() if lock else by_name).all()
            if len(rows) > 1:
                ids = ", ".join(f"{r.id} (project {r.project or 'none'})" for r in rows)
                raise InvalidInput(
                    f"{len(rows)} policies are named {ref!r}: {ids}; give the policy's id",
                    field="policy",
                )
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no policy named or with id {ref!r}")
        return row

    def _name_taken(
        self, session: Session, name: str, project: str | None, but: str | None = None
    ) -> bool:
        """Whether another policy of ``project`` (or of none) is named ``name``."""
        query = select(PolicyRow.id).where(
            PolicyRow.name == name,
            PolicyRow.project.is_(None) if project is None else PolicyRow.project == project,
        )
        if but is not None:
            query = query.where(PolicyRow.id != but)
        return session.scalars(query).first() is not None

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
            if self._name_taken(session, policy.name, policy.project):
                raise Conflict(f"a policy named {policy.name!r} already exists")
            require_active_credential(session, policy.cloud)
            row = PolicyRow(id=policy.id, created_at=now, updated_at=now)
            fill_policy_row(row, policy)
            set_verify_next(row, now)
            session.add(row)
            session.flush()
            self._replace_schedules(session, row, policy, next_fires, now=now)
            return policy_from_row(row, list(policy.schedules))

    def update_policy(
        self,
        policy: Policy,
        next_fires: Sequence[datetime | None] | None,
        *,
        now: datetime,
        read_at: datetime | None = None,
    ) -> Policy:
        """Replace a policy's settings; ``next_fires`` None keeps the schedule state.

        ``read_at`` is the ``updated_at`` of the policy the change was computed from: if the
        policy has changed since, nothing is written and ``PolicyChanged`` is raised.
        """
        with self._session() as session:
            row = self._policy_row(session, policy.id, lock=True)
            if read_at is not None and row.updated_at != read_at:
                raise PolicyChanged(f"policy {row.name!r} was changed meanwhile")
            if self._name_taken(session, policy.name, row.project, but=row.id):
                raise Conflict(f"a policy named {policy.name!r} already exists")
            if policy.cloud != row.cloud:
                require_active_credential(session, policy.cloud)
            if next_fires is not None:
                self._replace_schedules(session, row, policy, next_fires, now=now)
            verify_timing = (row.verify_cron, row.timezone, row.enabled)
            fill_policy_row(row, policy)
            if (row.verify_cron, row.timezone, row.enabled) != verify_timing:
                set_verify_next(row, now)
            row.updated_at = max(now, row.updated_at + timedelta(microseconds=1))  # seen by all
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
                            project=policy_row.project,
                            error=error,
                            finished_at=now,
                            created_at=now,
                        )
                    )

    def get_policy(self, ref: str, *, project: str | None = None) -> Policy:
        with self._session() as session:
            row = self._policy_row(session, ref, project=project)
            return policy_from_row(row, self._crons(session, row.id))

    def list_policies(
        self, *, project: str | None = None, limit: int | None = None, marker: str | None = None
    ) -> list[Policy]:
        """Policies by name; only ``project``'s if given; at most ``limit``; after the policy
        whose id is ``marker`` (the last of the previous page) if given."""
        with self._session() as session:
            query = select(PolicyRow).order_by(PolicyRow.name, PolicyRow.id)
            if project is not None:
                query = query.where(PolicyRow.project == project)
            if marker is not None:
                last = session.get(PolicyRow, marker)
                if last is None or (project is not None and last.project != project):
                    raise InvalidInput(
                        f"marker {marker!r} is not a policy of this list", field="marker"
                    )
                query = query.where(  # names repeat across projects: (name, id) is the key
                    or_(
                        PolicyRow.name > last.name,
                        and_(PolicyRow.name == last.name, PolicyRow.id > last.id),
                    )
                )
            rows = session.scalars(query.limit(limit)).all()
            crons: dict[str, list[str]] = {r.id: [] for r in rows}
            schedules = select(ScheduleRow).order_by(ScheduleRow.position)
            if project is not None or limit is not None or marker is not None:
                schedules = schedules.where(ScheduleRow.policy_id.in_(list(crons)))
            for s in session.scalars(schedules):
                crons.setdefault(s.policy_id, []).append(s.cron)
            return [policy_from_row(r, crons[r.id]) for r in rows]

    def delete_policy(self, ref: str, *, now: datetime) -> Policy:
        """Delete a policy; its pending runs are cancelled, its runs and backups are kept."""
        with self._session() as session:
            row = self._policy_row(session, ref, lock=True)  # a second delete waits, then 404s
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
            return [schedule_from_row(r) for r in rows]


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
