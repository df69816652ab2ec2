"""Alerts over real runs, driven by the engine loop, delivered to a webhook and a mailbox on
127.0.0.1: one alert per target and condition until it changes, then ``recovered``."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from pathlib import Path

from stackback.alerts import DeliveryStatus, Event, Route
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.notify.email import EmailChannel
from stackback.notify.retry import Backoff
from stackback.notify.webhook import SIGNATURE_HEADER, WebhookChannel
from stackback.policy import Backup, BackupStatus
from stackback.records import BackupFilter
from stackback.services.alerts import AlertService
from stackback.services.verify import VerifyService
from stackback.verification import VerifyChecks
from tests.engine.conftest import Rig
from tests.engine.test_runs import DAY, daily
from tests.support.receivers import smtp_server, webhook_receiver

NO_WAIT = Backoff(attempts=3, base=0.0)


def events(service: AlertService) -> list[tuple[str, str, str]]:
    """(channel, event, target name) of every recorded delivery, oldest first."""
    return [
        (d.channel, d.event.value, d.subject.target_name or d.subject.target)
        for d in reversed(service.store.list_deliveries(limit=1000))
    ]


def test_a_failed_run_alerts_once_then_recovers(rig: Rig, tmp_path: Path) -> None:
    web = rig.sim.create_server("web")
    db = rig.sim.create_server("db")
    daily(rig, web.id, db.id, last=5)
    with webhook_receiver() as hook, smtp_server(tmp_path) as box:
        mail = EmailChannel(
            Route("mail", events=(Event.RUN_FAILED,)),
            "127.0.0.1",
            box.port,
            "stackback@example.test",
            ("ops@example.test",),
            username=box.user,
            password=box.password,
            ca_file=str(box.ca_file),
            backoff=NO_WAIT,
        )
        webhook = WebhookChannel(Route("hook"), hook.url, "hook-secret", backoff=NO_WAIT)
        service = AlertService(rig.store, rig.clock, [webhook, mail], interval=timedelta(hours=1))
        engine = Engine(
            rig.store,
            lambda _name: rig.sim,
            rig.clock,
            EngineSettings(),
            worker_name="w-alerts",
            periodic=[service],
        )
        engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
        assert events(service) == []  # every target ok

        rig.sim.kill_next_image(db.id)
        engine.drain(rig.clock.now() + DAY)
        assert sorted(events(service)) == [
            ("hook", "run_failed", "db"),
            ("hook", "target_late", "db"),
            ("mail", "run_failed", "db"),
        ]
        engine.drain(rig.clock.now() + timedelta(hours=5))  # still failing: nothing more
        assert service.cycle().alerts == ()
        restarted = AlertService(rig.store, rig.clock, [webhook, mail])  # states are stored
        assert restarted.cycle().alerts == ()
        assert len(events(service)) == 3

        engine.drain(rig.clock.now() + DAY)  # the next run is good
        assert sorted(events(service)[3:]) == [
            ("hook", "recovered", "db"),
            ("hook", "recovered", "db"),
        ]
        assert all(d.status is DeliveryStatus.DELIVERED for d in service.store.list_deliveries())

        failed = next(b for b in hook.bodies() if b["event"] == "run_failed")
        assert failed["target"] == db.id and failed["policy"] == "p0"
        assert "failed" in failed["detail"] and failed["ref"]
        for headers, body in hook.requests:
            digest = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
            assert headers[SIGNATURE_HEADER] == f"sha256={digest}"
        (message,) = box.messages
        assert message["Subject"] == "[stackback] run failed: p0: db"


def test_an_unreachable_channel_is_recorded_failed_and_not_retold(rig: Rig) -> None:
    daily(rig, "ghost", last=5)  # the cloud has no such server: every run fails
    with webhook_receiver() as hook:
        dead = hook.url
    service = AlertService(
        rig.store, rig.clock, [WebhookChannel(Route("hook"), dead, "s", backoff=NO_WAIT)]
    )
    rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
    first = service.cycle()
    assert {a.event for a in first.alerts} == {Event.RUN_FAILED, Event.LATE}
    assert {(d.status, d.attempts) for d in first.deliveries} == {(DeliveryStatus.FAILED, 3)}
    assert service.cycle().alerts == ()


def test_a_deletion_failing_repeatedly_alerts_then_recovers(rig: Rig) -> None:
    web = rig.sim.create_server("web")
    daily(rig, web.id, last=1)
    with webhook_receiver() as hook:
        channel = WebhookChannel(Route("hook"), hook.url, "s", backoff=NO_WAIT)
        service = AlertService(
            rig.store, rig.clock, [channel], interval=timedelta(0), deletion_failing_after=3
        )
        engine = Engine(
            rig.store,
            lambda _name: rig.sim,
            rig.clock,
            EngineSettings(),
            worker_name="w-alerts",
            periodic=[service],  # evaluated at every cycle of the drain
        )
        engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
        assert hook.bodies() == []
        rig.sim.fail_next("delete_artifact", count=10)  # the next rotation's deletion fails
        engine.drain(rig.clock.now() + DAY)
        told = [(b["event"], b["condition"]) for b in hook.bodies()]
        assert told == [("deletion_failing", "deletion_failing"), ("recovered", "deletion_failing")]
        failing = hook.bodies()[0]
        assert failing["target"] == web.id and "not deleted after 3 attempts" in failing["detail"]


def test_missed_occurrences_alert_once(rig: Rig) -> None:
    web = rig.sim.create_server("web")
    daily(rig, web.id, last=5)
    with webhook_receiver() as hook:
        channel = WebhookChannel(Route("hook"), hook.url, "s", backoff=NO_WAIT)
        service = AlertService(rig.store, rig.clock, [channel])
        rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
        service.cycle()
        rig.clock.advance(3 * 86400)  # stackback was down: the occurrences are missed
        rig.engine.drain(rig.clock.now() + timedelta(minutes=5))
        service.cycle()
        service.cycle()
    told = sorted(b["event"] for b in hook.bodies())
    assert told == ["occurrence_missed", "target_late"]
    missed = next(b for b in hook.bodies() if b["event"] == "occurrence_missed")
    assert "was missed" in missed["detail"] and missed["severity"] == "warning"


def test_a_failed_verification_alerts_once_and_recovers_when_a_later_one_passes(
    rig: Rig,
) -> None:
    web = rig.sim.create_server("web")
    daily(rig, web.id, last=1)  # the next run forgets the backup that failed verification
    verify = VerifyService(rig.store, lambda _name: rig.sim, rig.clock)
    with webhook_receiver() as hook:
        channel = WebhookChannel(Route("hook"), hook.url, "s", backoff=NO_WAIT)
        service = AlertService(rig.store, rig.clock, [channel], interval=timedelta(0))
        engine = Engine(
            rig.store,
            lambda _name: rig.sim,
            rig.clock,
            EngineSettings(),
            worker_name="w-alerts",
            periodic=[service],  # evaluated at every cycle of the drain
        )
        engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
        (first,) = good_backups(rig)
        verify.start(first.id, checks=VerifyChecks(console_contains="login:"))
        engine.drain(rig.clock.now() + timedelta(hours=1))
        told = [(b["event"], b["condition"]) for b in hook.bodies()]
        assert told == [("verification_failed", "verification_failed")]
        failed = hook.bodies()[0]
        assert failed["target"] == web.id and failed["policy"] == "p0"
        assert failed["ref"] == first.id and failed["severity"] == "critical"
        assert "does not contain 'login:'" in failed["detail"]

        engine.drain(rig.clock.now() + DAY)  # a good run, and the failed backup forgotten
        assert rig.store.get_backup(first.id).status is BackupStatus.DELETED
        assert len(hook.bodies()) == 1  # still the newest verification: nothing more, no storm
        assert service.cycle().alerts == ()

        (second,) = good_backups(rig)
        verify.start(second.id, checks=VerifyChecks(console_contains="LAST LINE"))
        engine.drain(rig.clock.now() + timedelta(hours=1))
    told = [(b["event"], b["condition"]) for b in hook.bodies()]
    assert told[1:] == [("recovered", "verification_failed")]
    assert f"verification of backup {second.id} passed" in hook.bodies()[1]["detail"]


def good_backups(rig: Rig) -> list[Backup]:
    return rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
