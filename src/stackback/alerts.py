"""Alert rules: what to tell an operator, once per target and condition until it changes.

Pure: the caller passes what was last told (the stored state of every subject and
condition) and the facts of now; :func:`evaluate` returns the alerts to send and the
states to store. A condition that turns active raises one alert; while it stays active
nothing more is sent; when it ends (or is no longer reported at all: a target or
policy gone) one ``recovered`` alert closes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Condition(StrEnum):
    RUN_FAILED = "run_failed"
    MISSED = "occurrence_missed"
    LATE = "target_late"
    VERIFY_FAILED = "verification_failed"
    DELETION_FAILING = "deletion_failing"


class Event(StrEnum):
    """What an alert announces: a condition starting, or ``recovered``."""

    RUN_FAILED = "run_failed"
    MISSED = "occurrence_missed"
    LATE = "target_late"
    VERIFY_FAILED = "verification_failed"
    DELETION_FAILING = "deletion_failing"
    RECOVERED = "recovered"
    TEST = "test"
    """Sent by ``stackback alert test`` to every channel, whatever its routes."""


SEVERITY = {
    Event.RUN_FAILED: "critical",
    Event.MISSED: "warning",
    Event.LATE: "critical",
    Event.VERIFY_FAILED: "critical",
    Event.DELETION_FAILING: "warning",
    Event.RECOVERED: "info",
    Event.TEST: "info",
}


@dataclass(frozen=True)
class Subject:
    """What an alert is about: one target of one policy (or of no policy)."""

    target: str
    target_name: str | None = None
    policy_id: str | None = None
    policy: str | None = None

    @property
    def key(self) -> str:
        return f"{self.policy_id or '-'}/{self.target}"


@dataclass(frozen=True)
class Fact:
    """A condition of a subject now: active or not, with the reason an operator reads."""

    subject: Subject
    condition: Condition
    active: bool
    detail: str = ""
    ref: str | None = None
    """The run or backup the condition was seen on."""


@dataclass(frozen=True)
class AlertState:
    """What was last told about one subject and condition."""

    subject: Subject
    condition: Condition
    active: bool
    since: datetime
    detail: str = ""


@dataclass(frozen=True)
class Alert:
    event: Event
    condition: Condition
    subject: Subject
    detail: str
    at: datetime
    since: datetime
    """When the condition began (for ``recovered``: when the condition it ends began)."""
    ref: str | None = None


@dataclass(frozen=True)
class Evaluation:
    alerts: tuple[Alert, ...]
    states: tuple[AlertState, ...]
    """Only the states that changed (to store)."""


StateKey = tuple[str, Condition]


def state_key(subject: Subject, condition: Condition) -> StateKey:
    return (subject.key, condition)


def evaluate(
    previous: Mapping[StateKey, AlertState], facts: Iterable[Fact], now: datetime
) -> Evaluation:
    """The alerts the change from ``previous`` to ``facts`` calls for, and the new states."""
    alerts: list[Alert] = []
    states: list[AlertState] = []
    seen: set[StateKey] = set()
    for fact in facts:
        key = state_key(fact.subject, fact.condition)
        if key in seen:
            continue
        seen.add(key)
        before = previous.get(key)
        was_active = before is not None and before.active
        if fact.active and not was_active:
            alerts.append(
                Alert(
                    Event(fact.condition.value),
                    fact.condition,
                    fact.subject,
                    fact.detail,
                    now,
                    now,
                    fact.ref,
                )
            )
            states.append(AlertState(fact.subject, fact.condition, True, now, fact.detail))
        elif not fact.active and before is not None and was_active:
            alerts.append(_recovered(before, fact.detail or "condition ended", now, fact.ref))
            states.append(AlertState(fact.subject, fact.condition, False, now, fact.detail))
    for key, before in previous.items():
        if key not in seen and before.active:
            alerts.append(_recovered(before, "no longer reported (target or policy gone)", now))
            states.append(AlertState(before.subject, before.condition, False, now, ""))
    return Evaluation(tuple(alerts), tuple(states))


def _recovered(before: AlertState, detail: str, now: datetime, ref: str | None = None) -> Alert:
    return Alert(Event.RECOVERED, before.condition, before.subject, detail, now, before.since, ref)


@dataclass(frozen=True)
class Route:
    """Where a channel's alerts come from: every policy (``policies`` empty), or only these
    (by name or id); every event (``events`` empty), or only these."""

    channel: str
    policies: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()

    def wants(self, alert: Alert) -> bool:
        if self.events and alert.event not in self.events:
            return False
        if not self.policies:
            return True
        return any(p in self.policies for p in (alert.subject.policy, alert.subject.policy_id) if p)


def routed(alert: Alert, routes: Sequence[Route]) -> list[str]:
    """The channels an alert goes to."""
    return [route.channel for route in routes if route.wants(alert)]


PAYLOAD_VERSION = 1


def payload(alert: Alert) -> dict[str, Any]:
    """The JSON body of an alert (documented in docs/alerts.md; keys are a stable interface)."""
    subject = alert.subject
    return {
        "version": PAYLOAD_VERSION,
        "event": alert.event.value,
        "condition": alert.condition.value,
        "severity": SEVERITY[alert.event],
        "policy": subject.policy,
        "policy_id": subject.policy_id,
        "target": subject.target,
        "target_name": subject.target_name,
        "detail": alert.detail,
        "ref": alert.ref,
        "since": alert.since.isoformat(),
        "at": alert.at.isoformat(),
        "summary": summary(alert),
    }


def summary(alert: Alert) -> str:
    """One line: what happened to which target (the e-mail subject)."""
    who = alert.subject.target_name or alert.subject.target
    where = f"{alert.subject.policy}: " if alert.subject.policy else ""
    if alert.event is Event.TEST:
        return "[stackback] test alert: this channel works"
    if alert.event is Event.RECOVERED:
        return f"[stackback] recovered: {where}{who} ({alert.condition.value.replace('_', ' ')})"
    return f"[stackback] {alert.event.value.replace('_', ' ')}: {where}{who}"


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    """One alert sent (or not) to one channel, as recorded."""

    channel: str
    event: Event
    condition: Condition
    subject: Subject
    status: DeliveryStatus
    attempts: int
    detail: str
    """The answer: ``HTTP 200``, ``250 OK``, or the last error."""
    at: datetime
    payload: Mapping[str, Any]
