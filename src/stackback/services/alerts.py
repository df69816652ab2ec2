"""Alerts, driven periodically by the engine loop (off the runs' path).

Each cycle gathers the facts (status verdicts, last runs, failing deletions), lets the
pure :func:`stackback.alerts.evaluate` decide with the stored states locked, then sends
the alerts through the channels their routes name and records every delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from stackback.alerts import (
    Alert,
    AlertState,
    Condition,
    Delivery,
    DeliveryStatus,
    Evaluation,
    Event,
    Fact,
    StateKey,
    Subject,
    evaluate,
    payload,
    routed,
    summary,
)
from stackback.errors import NotFound
from stackback.notify import Channel
from stackback.policy import Backup, BackupStatus, RunState
from stackback.ports import Clock, Store
from stackback.records import BackupFilter
from stackback.rpo import Verdict
from stackback.services.status import StatusService, TargetReport
from stackback.verification import TargetVerification, VerifyResult

log = logging.getLogger(__name__)


class AlertingStore(Store, Protocol):
    """The store, with where alert states and deliveries are kept."""

    def decide_alerts(
        self, decide: Callable[[dict[StateKey, AlertState]], Evaluation]
    ) -> Evaluation: ...
    def record_delivery(self, delivery: Delivery) -> None: ...
    def list_deliveries(self, *, limit: int = 100) -> list[Delivery]: ...
    def alert_states(self) -> list[AlertState]: ...
    def newest_verifications(self) -> list[TargetVerification]: ...


def report_facts(reports: Iterable[TargetReport]) -> list[Fact]:
    """Run failed, occurrence missed and target late, for every target of every policy."""
    facts: list[Fact] = []
    for report in reports:
        subject = Subject(report.target, report.target_name, report.policy.id, report.policy.name)
        last = report.last_run
        ref = last.id if last is not None else None
        failed = last is not None and last.state is RunState.FAILED
        missed = last is not None and last.state is RunState.MISSED
        if last is not None and failed:
            detail = f"run {last.id} failed: {last.error or 'no reason recorded'}"
        elif last is not None:
            detail = f"run {last.id} {last.state.value}"
        else:
            detail = "no run yet"
        facts.append(Fact(subject, Condition.RUN_FAILED, failed, detail, ref))
        when = f"{last.scheduled_for:%Y-%m-%d %H:%M} UTC" if last is not None else ""
        missed_detail = f"the {when} occurrence was missed" if missed else detail
        facts.append(Fact(subject, Condition.MISSED, missed, missed_detail, ref))
        late = report.verdict is not Verdict.OK
        facts.append(Fact(subject, Condition.LATE, late, f"{report.verdict}: {report.reason}"))
        facts.append(Fact(subject, Condition.DELETION_FAILING, False, "no deletion failing"))
    return facts


def deletion_facts(
    deleting: Iterable[Backup], policy_names: dict[str, str], *, after: int
) -> list[Fact]:
    """Targets with a backup whose deletion has failed ``after`` times or more."""
    failing: dict[str, tuple[Subject, list[Backup]]] = {}
    for backup in deleting:
        if max((a.delete_attempts for a in backup.artifacts), default=0) < after:
            continue
        policy = policy_names.get(backup.policy_id) if backup.policy_id else None
        subject = Subject(backup.target, backup.target_name, backup.policy_id, policy)
        failing.setdefault(subject.key, (subject, []))[1].append(backup)
    facts = []
    for subject, backups in failing.values():
        errors = [a.error for b in backups for a in b.artifacts if a.error]
        tries = max(a.delete_attempts for b in backups for a in b.artifacts)
        detail = f"{len(backups)} backup(s) not deleted after {tries} attempts"
        if errors:
            detail += f": {errors[0]}"
        facts.append(Fact(subject, Condition.DELETION_FAILING, True, detail, backups[0].id))
    return facts


def verification_facts(
    verifications: Iterable[TargetVerification], policy_names: dict[str, str]
) -> list[Fact]:
    """Verification failed: the newest verification of a target's backups of a policy
    failed (until a later one passes)."""
    facts = []
    for verified in verifications:
        if verified.policy_id not in policy_names:
            continue
        subject = Subject(
            verified.target,
            verified.target_name,
            verified.policy_id,
            policy_names[verified.policy_id],
        )
        outcome = verified.verification
        failed = outcome.result is VerifyResult.FAILED
        detail = (
            f"verification of backup {verified.backup_id} {outcome.result.value} at "
            f"{outcome.at:%Y-%m-%d %H:%M} UTC"
        )
        if failed:
            detail += f": {outcome.reason or 'no reason recorded'}"
        facts.append(Fact(subject, Condition.VERIFY_FAILED, failed, detail, verified.backup_id))
    return facts


@dataclass(frozen=True)
class CycleResult:
    alerts: tuple[Alert, ...]
    deliveries: tuple[Delivery, ...]


class AlertService:
    """One evaluation and delivery cycle at a time; ``interval`` apart when periodic."""

    name = "alerts"

    def __init__(
        self,
        store: AlertingStore,
        clock: Clock,
        channels: Sequence[Channel],
        *,
        interval: timedelta = timedelta(seconds=60),
        deletion_failing_after: int = 3,
        status: StatusService | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.channels = {channel.route.channel: channel for channel in channels}
        self.interval = interval
        self.deletion_failing_after = deletion_failing_after
        self.status = status or StatusService(store, clock)

    def facts(self) -> list[Fact]:
        facts = report_facts(self.status.report())
        policies = {p.id: p.name for p in self.store.list_policies()}
        deleting = self.store.list_backups(
            BackupFilter(statuses=(BackupStatus.DELETING,), limit=None)
        )
        failing = deletion_facts(deleting, policies, after=self.deletion_failing_after)
        verified = verification_facts(self.store.newest_verifications(), policies)
        return failing + facts + verified  # a failing deletion wins over "none failing"

    def evaluate(self) -> tuple[Alert, ...]:
        """Decide (states locked) and store the new states; returns the alerts to send."""
        facts = self.facts()
        now = self.clock.now()
        return self.store.decide_alerts(lambda previous: evaluate(previous, facts, now)).alerts

    def send_test(self, channel: str | None = None) -> list[Delivery]:
        """A ``test`` alert to every channel (or the one named), whatever its routes."""
        if channel is not None and channel not in self.channels:
            known = ", ".join(sorted(self.channels)) or "none"
            raise NotFound(f"no alert channel {channel!r} (channels: {known})")
        now = self.clock.now()
        alert = Alert(
            Event.TEST, Condition.RUN_FAILED, Subject("-"), "a test of this channel", now, now
        )
        names = [channel] if channel is not None else list(self.channels)
        return self.deliver([alert], only=names)

    def deliver(
        self, alerts: Iterable[Alert], *, only: Sequence[str] | None = None
    ) -> list[Delivery]:
        routes = [channel.route for channel in self.channels.values()]
        deliveries = []
        for alert in alerts:
            body = payload(alert)
            line = summary(alert)
            names = list(only) if only is not None else routed(alert, routes)
            for name in names:
                result = self.channels[name].send(body, line)
                delivery = Delivery(
                    channel=name,
                    event=alert.event,
                    condition=alert.condition,
                    subject=alert.subject,
                    status=DeliveryStatus.DELIVERED if result.ok else DeliveryStatus.FAILED,
                    attempts=result.attempts,
                    detail=result.detail,
                    at=self.clock.now(),
                    payload=body,
                )
                self.store.record_delivery(delivery)
                deliveries.append(delivery)
                level = logging.INFO if result.ok else logging.WARNING
                log.log(
                    level,
                    "alert %s to %s %s after %d attempt(s): %s",
                    line,
                    name,
                    delivery.status.value,
                    result.attempts,
                    result.detail,
                )
        return deliveries

    def cycle(self) -> CycleResult:
        alerts = self.evaluate()
        return CycleResult(alerts, tuple(self.deliver(alerts)))

    def run(self, now: datetime) -> None:
        """The engine's periodic hook."""
        self.cycle()
