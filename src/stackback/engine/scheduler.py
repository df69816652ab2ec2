"""The scheduler tick: due cron schedules become run records, exactly once.

Replicas may tick concurrently against one database: the store locks due
schedules (``SKIP LOCKED`` / ``BEGIN IMMEDIATE``) and inserts runs with
``ON CONFLICT DO NOTHING``, so each occurrence exists once.

After downtime, the latest missed occurrence of each schedule still runs if
it is less than ``max(window, grace)`` late; every other missed occurrence is
recorded as a ``missed`` run, never dropped silently.

A selector the cloud cannot answer for a transient reason (5xx, timeout) is
asked again with backoff, like a busy server during a run: the occurrence is
deferred (kept on its schedule row) until the targets resolve or no further
attempt fits before it would be late; then it is recorded as a ``failed`` run
with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from stackback.engine.databases import database_cloud
from stackback.engine.settings import EngineSettings
from stackback.engine.volumes import VOLUME_KINDS, volume_cloud
from stackback.errors import StackbackError
from stackback.policy import BackupKind, RunState, Selector
from stackback.ports import CloudResolver, ServerInfo, Store, VolumeInfo
from stackback.records import DuePolicy, DueSchedule, NewRun, TickPlan
from stackback.schedule import cron_schedule, spread_offset

log = logging.getLogger(__name__)

NextFires = dict[tuple[str, str, datetime], datetime]
"""Memo of ``CronSchedule.next_after`` within one tick: (expression, zone, instant) -> fire."""

Resolved = dict[str, "Resolution"]
"""Selector answers of one tick, by policy id."""


@dataclass(frozen=True)
class TickResult:
    schedules: int
    runs: int


@dataclass(frozen=True)
class Target:
    key: str
    name: str | None = None


@dataclass(frozen=True)
class Resolution:
    """What a policy's selector matched (or why it could not be resolved), and for which query."""

    cloud: str | None
    selector: Selector | None
    targets: list[Target]
    error: str | None
    retryable: bool = False


class Scheduler:
    """Materialises due occurrences of every enabled policy into runs."""

    def __init__(
        self,
        store: Store,
        clouds: CloudResolver,
        settings: EngineSettings | None = None,
    ) -> None:
        self.store = store
        self.clouds = clouds
        self.settings = settings or EngineSettings()

    def tick(self, now: datetime) -> TickResult:
        """Process every due schedule (in batches); returns what was done.

        Batches of ``settings.tick_batch`` schedules, one transaction each, until
        a batch comes back short (nothing else was due and unlocked) and none of
        its schedules is still due (``max_fires_per_tick`` can leave one behind).
        """
        upcoming = self.store.next_fire_time()
        if upcoming is None or upcoming > now:  # the idle tick: one indexed read, nothing else
            return TickResult(0, 0)
        schedules = runs = 0
        limit = self.settings.tick_batch
        next_fires: NextFires = {}
        resolved = self._resolve_due_selectors(now)
        while True:
            still_due = False

            def planner(due: DueSchedule) -> TickPlan:
                nonlocal still_due
                try:
                    plan = self.plan(due, now, next_fires=next_fires, resolved=resolved)
                except Exception as error:  # one bad schedule must not stop all the others
                    plan = self._unplannable(due, error)
                if plan.next_fire_at is not None and plan.next_fire_at <= now:
                    still_due = True
                return plan

            done, inserted = self.store.process_due_schedules(now, planner, limit=limit)
            schedules += done
            runs += inserted
            if done == 0 or (done < limit and not still_due):
                return TickResult(schedules, runs)

    def plan(
        self,
        due: DueSchedule,
        now: datetime,
        *,
        next_fires: NextFires | None = None,
        resolved: Resolved | None = None,
    ) -> TickPlan:
        """Decide the runs of one due schedule and its next fire time.

        ``next_fires`` memoises fire times over a tick: due schedules that share
        an expression, a zone and a fire time (common: "0 2 * * *" in one zone)
        compute the next one once. ``resolved`` holds the selector answers got
        before the tick's transaction; a policy missing from it (due or changed
        since) is resolved here.
        """
        policy = due.policy
        expr, zone = due.schedule.cron, policy.timezone
        first = due.schedule.deferred_fire_at or due.schedule.next_fire_at
        assert first is not None
        memo: NextFires = {} if next_fires is None else next_fires
        fires = [first]
        next_fire = _next_after(memo, expr, zone, first)
        while next_fire <= now and len(fires) < self.settings.max_fires_per_tick:
            fires.append(next_fire)
            next_fire = _next_after(memo, expr, zone, next_fire)
        if not policy.enabled:
            return TickPlan(next_fire_at=None)
        late_limit = max(timedelta(minutes=policy.window_minutes), self.settings.grace)
        resolution = self._targets(policy, {} if resolved is None else resolved)
        deferred = due.schedule.deferred_fire_at
        if resolution.error is not None:
            return self._unresolved(policy, resolution, fires, next_fire, now, late_limit, deferred)
        runs: list[NewRun] = []
        for fire in fires:
            is_latest = next_fire > now and fire == fires[-1]
            waited = fire == deferred
            for target in resolution.targets:
                runs.append(
                    self._occurrence(policy, target, fire, now, is_latest, late_limit, waited)
                )
        return TickPlan(runs=runs, next_fire_at=next_fire, fired_at=fires[-1])

    @staticmethod
    def _unplannable(due: DueSchedule, error: Exception) -> TickPlan:
        """The plan of a schedule that cannot be evaluated (e.g. its zone left tzdata).

        Its due occurrence becomes a failed run per target with the reason, and
        the schedule stops until the policy is edited, instead of failing the
        whole tick, every tick, for every other policy.
        """
        policy, schedule = due.policy, due.schedule
        detail = error.message if isinstance(error, StackbackError) else repr(error)
        log.error(
            "policy %s: schedule %r (%s) cannot be evaluated, stopped: %s",
            policy.name,
            schedule.cron,
            policy.timezone,
            detail,
            exc_info=not isinstance(error, StackbackError),
        )
        fire = schedule.deferred_fire_at or schedule.next_fire_at
        if fire is None or not policy.enabled:
            return TickPlan(next_fire_at=None)
        reason = (
            f"its schedule {schedule.cron!r} in {policy.timezone} cannot be evaluated "
            f"({detail}); the schedule is stopped until the policy is edited"
        )
        targets = [policy.selector.run_target] if policy.selector else list(policy.targets)
        runs = [
            NewRun(target=t, scheduled_for=fire, due_at=fire, state=RunState.FAILED, error=reason)
            for t in targets
        ]
        return TickPlan(runs=runs, next_fire_at=None, fired_at=fire)

    def _unresolved(
        self,
        policy: DuePolicy,
        resolution: Resolution,
        fires: list[datetime],
        next_fire: datetime,
        now: datetime,
        late_limit: timedelta,
        deferred: datetime | None,
    ) -> TickPlan:
        """The plan when a selector could not be resolved: defer the latest fire, or fail.

        The latest occurrence is deferred while a transient error may still clear
        before the occurrence would be late: the next attempt comes when the
        engine's ``RetryStrategy`` says (the worker's retries use the same rule:
        ``retry_base`` plus as long as it has waited so far, at most ``retry_max``,
        less jitter), no later than the next cron time and not after the
        strategy's margin before the occurrence would be late. Earlier
        occurrences, and the latest once no attempt is left, are recorded as
        failed runs with the reason.
        """
        latest = fires[-1]
        reason = f"could not resolve targets: {resolution.error}"
        if resolution.retryable and next_fire > now:
            decision = self.settings.retry_strategy.decide(
                now=now,
                deadline=latest + late_limit,
                failing_for=now - latest,
                key=f"{policy.id}:{latest.isoformat()}",
            )
            if decision.retry_at is not None:
                retry_at = min(decision.retry_at, next_fire)
                log.info(
                    "policy %s: the %s occurrence asks for its targets again at %s",
                    policy.name,
                    latest.isoformat(),
                    retry_at.isoformat(),
                )
                return TickPlan(
                    runs=[self._unresolved_run(policy, fire, reason) for fire in fires[:-1]],
                    next_fire_at=retry_at,
                    fired_at=fires[-2] if len(fires) > 1 else None,
                    deferred_fire_at=latest,
                )
            if deferred == latest:
                reason += f" (asked again until {now:%Y-%m-%d %H:%M:%S} UTC, the end of its window)"
        return TickPlan(
            runs=[self._unresolved_run(policy, fire, reason) for fire in fires],
            next_fire_at=next_fire,
            fired_at=latest,
        )

    @staticmethod
    def _unresolved_run(policy: DuePolicy, fire: datetime, reason: str) -> NewRun:
        assert policy.selector is not None
        return NewRun(
            target=policy.selector.run_target,
            scheduled_for=fire,
            due_at=fire,
            state=RunState.FAILED,
            error=reason,
        )

    def _occurrence(
        self,
        policy: DuePolicy,
        target: Target,
        fire: datetime,
        now: datetime,
        is_latest: bool,
        late_limit: timedelta,
        waited: bool = False,
    ) -> NewRun:
        due_at = fire
        if self.settings.max_snapshots_per_host is None:  # else the hosts' room paces the starts
            due_at += spread_offset(f"{policy.id}:{target.key}", policy.window_minutes)
        if is_latest and now - fire < late_limit:
            return NewRun(target.key, fire, due_at, target_name=target.name)
        if now - fire >= late_limit:
            reason = f"the scheduler did not run it within {_minutes(late_limit)} of its time"
        elif waited:
            reason = (
                "a later occurrence of the same schedule replaced it "
                "(its targets could not be listed until then)"
            )
        else:
            reason = (
                "a later occurrence of the same schedule replaced it (coalesced after downtime)"
            )
        return NewRun(
            target.key, fire, due_at, state=RunState.MISSED, target_name=target.name, error=reason
        )

    def _resolve_due_selectors(self, now: datetime) -> Resolved:
        """Ask the clouds for the servers of every due selector policy, outside any lock."""
        return {
            policy.id: self._resolve(policy) for policy in self.store.due_selector_policies(now)
        }

    def _targets(self, policy: DuePolicy, resolved: Resolved) -> Resolution:
        if policy.selector is None:
            return Resolution(policy.cloud, None, [Target(t) for t in policy.targets], None)
        answer = resolved.get(policy.id)
        if answer is None or (answer.cloud, answer.selector) != (policy.cloud, policy.selector):
            answer = resolved[policy.id] = self._resolve(policy)  # one answer for all its rows
        return answer

    def _resolve(self, policy: DuePolicy) -> Resolution:
        assert policy.selector is not None
        try:
            cloud = self.clouds(policy.cloud)
            servers: Sequence[ServerInfo | VolumeInfo]
            if policy.kind in VOLUME_KINDS:
                servers = volume_cloud(cloud).find_volumes(policy.selector)
            elif policy.kind is BackupKind.DATABASE_BACKUP:
                servers = [
                    db.as_server() for db in database_cloud(cloud).find_databases(policy.selector)
                ]
            else:
                servers = cloud.find_servers(policy.selector)
        except StackbackError as error:  # a cloud error, or its clouds.yaml entry is gone
            log.warning("policy %s: selector %s: %s", policy.name, policy.selector, error)
            retryable = bool(getattr(error, "retryable", False))
            return Resolution(policy.cloud, policy.selector, [], error.message, retryable)
        targets = [Target(s.id, s.name) for s in sorted(servers, key=lambda s: s.id)]
        return Resolution(policy.cloud, policy.selector, targets, None)


def _next_after(memo: NextFires, expr: str, timezone: str, instant: datetime) -> datetime:
    """``CronSchedule(expr, timezone).next_after(instant)``, computed once per key in ``memo``.

    The parsed schedule comes from ``cron_schedule``'s cache: parsed once per
    (expression, zone), not once per tick.
    """
    key = (expr, timezone, instant)
    fire = memo.get(key)
    if fire is None:
        fire = memo[key] = cron_schedule(expr, timezone).next_after(instant)
    return fire


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} minutes"
