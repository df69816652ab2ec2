"""Alert states and deliveries; the alert decision is taken with the states locked."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, text

from stackback.alerts import (
    AlertState,
    Condition,
    Delivery,
    DeliveryStatus,
    Evaluation,
    Event,
    StateKey,
    Subject,
    state_key,
)
from stackback.store.models import AlertDeliveryRow, AlertStateRow
from stackback.store.sql.base import SqlBase


class AlertStore(SqlBase):
    """What was last told per (subject, condition), and each delivery with its status."""

    def decide_alerts(
        self, decide: Callable[[dict[StateKey, AlertState]], Evaluation]
    ) -> Evaluation:
        """Run ``decide`` over the stored states with them locked (replicas evaluating at
        the same time tell each change once), then store the states it changed."""
        with self._session() as session:
            if self.is_postgres:
                session.execute(text("LOCK TABLE alert_states IN SHARE ROW EXCLUSIVE MODE"))
            rows = session.scalars(select(AlertStateRow)).all()
            states = [_state(row) for row in rows]
            evaluation = decide({state_key(s.subject, s.condition): s for s in states})
            for state in evaluation.states:
                session.merge(
                    AlertStateRow(
                        subject=state.subject.key,
                        condition=state.condition.value,
                        target=state.subject.target,
                        target_name=state.subject.target_name,
                        policy_id=state.subject.policy_id,
                        policy=state.subject.policy,
                        active=state.active,
                        since=state.since,
                        detail=state.detail,
                    )
                )
            return evaluation

    def alert_states(self) -> list[AlertState]:
        with self._session() as session:
            return [_state(row) for row in session.scalars(select(AlertStateRow)).all()]

    def record_delivery(self, delivery: Delivery) -> None:
        with self._session() as session:
            session.add(
                AlertDeliveryRow(
                    channel=delivery.channel,
                    event=delivery.event.value,
                    condition=delivery.condition.value,
                    subject=delivery.subject.key,
                    status=delivery.status.value,
                    attempts=delivery.attempts,
                    detail=delivery.detail,
                    payload=dict(delivery.payload),
                    at=delivery.at,
                )
            )

    def list_deliveries(self, *, limit: int = 100) -> list[Delivery]:
        """The newest deliveries first."""
        with self._session() as session:
            rows = session.scalars(
                select(AlertDeliveryRow)
                .order_by(AlertDeliveryRow.at.desc(), AlertDeliveryRow.id.desc())
                .limit(limit)
            ).all()
            return [_delivery(row) for row in rows]


def _state(row: AlertStateRow) -> AlertState:
    subject = Subject(row.target, row.target_name, row.policy_id, row.policy)
    return AlertState(subject, Condition(row.condition), row.active, row.since, row.detail)


def _delivery(row: AlertDeliveryRow) -> Delivery:
    payload = row.payload
    subject = Subject(
        str(payload.get("target") or row.subject),
        payload.get("target_name"),
        payload.get("policy_id"),
        payload.get("policy"),
    )
    return Delivery(
        channel=row.channel,
        event=Event(row.event),
        condition=Condition(row.condition),
        subject=subject,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        detail=row.detail,
        at=row.at,
        payload=payload,
    )
