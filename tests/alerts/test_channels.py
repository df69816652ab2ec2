"""The channels against real receivers on 127.0.0.1: a signed webhook, and SMTP with STARTTLS."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from stackback.alerts import Route
from stackback.notify.email import EmailChannel
from stackback.notify.retry import Backoff
from stackback.notify.webhook import SIGNATURE_HEADER, WebhookChannel
from tests.support.receivers import smtp_server, webhook_receiver

BODY = {"event": "run_failed", "target": "web-1", "detail": "boom"}
NO_WAIT = Backoff(attempts=4, base=0.0)


def hook_channel(url: str, **kw: object) -> WebhookChannel:
    return WebhookChannel(Route("hook"), url, "shared-secret", timeout=5, backoff=NO_WAIT, **kw)  # type: ignore[arg-type]


def test_webhook_body_is_signed_with_the_shared_secret() -> None:
    with webhook_receiver() as hook:
        result = hook_channel(hook.url).send(BODY, "subject")
    assert result.ok and result.attempts == 1 and result.detail == "HTTP 200"
    headers, body = hook.requests[0]
    expected = hmac.new(b"shared-secret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert headers["Content-Type"] == "application/json"
    assert hook.bodies() == [BODY]


def test_webhook_retries_5xx_with_backoff_then_delivers() -> None:
    slept: list[float] = []
    with webhook_receiver() as hook:
        hook.answers = [503, 500]
        channel = WebhookChannel(
            Route("hook"), hook.url, "s", timeout=5, backoff=Backoff(4, 0.5), sleep=slept.append
        )
        result = channel.send(BODY, "subject")
    assert result.ok and result.attempts == 3
    assert slept == [0.5, 1.0]  # doubled each time
    assert len(hook.requests) == 3


def test_webhook_4xx_is_final_and_an_unreachable_one_gives_up() -> None:
    with webhook_receiver() as hook:
        hook.answers = [400]
        refused = hook_channel(hook.url).send(BODY, "subject")
        dead_url = hook.url
    assert not refused.ok and refused.attempts == 1 and "HTTP 400" in refused.detail
    gone = hook_channel(dead_url).send(BODY, "subject")
    assert not gone.ok and gone.attempts == 4


def test_email_goes_through_starttls_with_login(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as box:
        channel = EmailChannel(
            Route("mail"),
            "127.0.0.1",
            box.port,
            "stackback@example.test",
            ("ops@example.test",),
            username=box.user,
            password=box.password,
            ca_file=str(box.ca_file),
            timeout=10,
            backoff=NO_WAIT,
        )
        result = channel.send(BODY, "[stackback] run failed: web-1")
        assert result.ok, result.detail
        assert box.logins == ["alerts"] and box.tls_sessions == 1
        (message,) = box.messages
        assert message["Subject"] == "[stackback] run failed: web-1"
        assert message["To"] == "ops@example.test"
        assert "boom" in message.get_payload()


def test_email_with_a_wrong_password_is_refused_without_retries(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as box:
        channel = EmailChannel(
            Route("mail"),
            "127.0.0.1",
            box.port,
            "stackback@example.test",
            ("ops@example.test",),
            username=box.user,
            password="wrong",
            ca_file=str(box.ca_file),
            timeout=10,
            backoff=NO_WAIT,
        )
        result = channel.send(BODY, "s")
    assert not result.ok and result.attempts == 1 and "535" in result.detail
    assert box.messages == []
