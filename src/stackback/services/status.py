"""``stackback status``: every target of every policy, judged against its schedule's promise."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from stackback.policy import BackupStatus, Policy, Run, RunState
from stackback.ports import Clock, Store
from stackback.records import BackupFilter, RunFilter
from stackback.rpo import DEFAULT_GRACE, TargetHistory, Verdict, due_since, judge
from stackback.schedule import CronSchedule

RUNS_LOOKED_AT = 100_000
"""Runs read per policy: enough for a year of dailies of hundreds of servers."""

FINISHED = (RunState.SUCCEEDED, RunState.FAILED, RunState.MISSED, RunState.CANCELLED)


@dataclass(frozen=True)
class TargetReport:
    policy: Policy
    target: str
    """The server id where a run has resolved it, else the target as the policy names it."""
    target_name: str | None
    verdict: Verdict
    reason: str
    newest_good_at: datetime | None
    due_since: datetime | None
    age: timedelta | None
    """How old the newest good backup is."""
    last_run: Run | None = None
    """The target's newest finished scheduled run."""


class StatusService:
    """Recovery point status of every target (or one policy's)."""

    def __init__(self, store: Store, clock: Clock, *, grace: timedelta = DEFAULT_GRACE) -> None:
        self.store = store
        self.clock = clock
        self.grace = grace

    def report(
        self, policy_ref: str | None = None, *, project: str | None = None
    ) -> list[TargetReport]:
        """Every target of every policy (of ``project``, if given; of one policy, if named)."""
        if policy_ref:
            policies = [self.store.get_policy(policy_ref, project=project)]
        else:
            policies = self.store.list_policies(project=project)
        now = self.clock.now()
        return [row for policy in policies for row in self._policy_report(policy, now)]

    def _policy_report(self, policy: Policy, now: datetime) -> Iterable[TargetReport]:
        schedules = [CronSchedule(cron, policy.timezone) for cron in policy.schedules]
        due = due_since(schedules, timedelta(minutes=policy.window_minutes), now, self.grace)
        if due is not None and policy.created_at is not None and due < policy.created_at:
            due = None  # nothing was promised before the policy existed
        runs = [
            r
            for r in self.store.list_runs(RunFilter(policy_id=policy.id, limit=RUNS_LOOKED_AT))
            if r.trigger == "schedule"
        ]
        backups = self.store.list_backups(
            BackupFilter(policy_id=policy.id, statuses=(BackupStatus.AVAILABLE,), limit=None)
        )
        newest: dict[str, datetime] = {}
        names: dict[str, str | None] = {}
        for backup in backups:
            if backup.target not in newest or backup.created_at > newest[backup.target]:
                newest[backup.target] = backup.created_at
            names.setdefault(backup.target, backup.target_name)
        by_target: dict[str, list[Run]] = {}
        # A run that never started (missed, cancelled) knows its target only as the policy
        # names it; one that started also knows the server id: count both under the id.
        server_of = {r.target: r.server_id for r in runs if r.server_id}
        for run in runs:
            key = run.server_id or server_of.get(run.target, run.target)
            by_target.setdefault(key, []).append(run)
            names.setdefault(key, run.target_name)
        targets = dict.fromkeys([*by_target, *newest])
        for named in policy.targets:  # explicit targets that never ran are still promised
            if not any(named in (key, names.get(key)) for key in targets):
                targets[named] = None
        for target in targets:
            target_runs = by_target.get(target, [])
            history = _history(target_runs, newest.get(target))
            status = judge(history, due, enabled=policy.enabled)
            good = history.newest_good_at
            yield TargetReport(
                policy=policy,
                target=target,
                target_name=names.get(target),
                verdict=status.verdict,
                reason=status.reason,
                newest_good_at=good,
                due_since=status.due_since,
                age=now - good if good else None,
                last_run=_last_finished(target_runs),
            )


def _last_finished(runs: list[Run]) -> Run | None:
    finished = (r for r in runs if r.state in FINISHED)
    return max(finished, key=lambda r: r.scheduled_for, default=None)


def _history(runs: list[Run], newest_good_at: datetime | None) -> TargetHistory:
    finished = [r for r in runs if r.state in FINISHED]
    last = _last_finished(runs)
    missed = sum(
        1
        for r in finished
        if r.state is RunState.MISSED
        and (newest_good_at is None or r.scheduled_for > newest_good_at)
    )
    return TargetHistory(
        newest_good_at=newest_good_at,
        last_run_state=last.state.value if last else None,
        last_run_error=last.error if last else None,
        missed_since_good=missed,
    )
