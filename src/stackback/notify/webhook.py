"""A webhook: the alert as JSON, POSTed with an HMAC-SHA256 signature of the body.

Headers: ``X-Stackback-Signature: sha256=<hex of HMAC-SHA256(secret, body)>`` and
``X-Stackback-Event: <event>``. A connection error, a timeout, 429 or 5xx is retried
with backoff; any other non-2xx answer is final.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stackback.alerts import Route
from stackback.notify import SendResult
from stackback.notify.retry import Backoff, Permanent, with_retries

SIGNATURE_HEADER = "X-Stackback-Signature"
EVENT_HEADER = "X-Stackback-Event"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class WebhookChannel:
    route: Route
    url: str
    secret: str
    timeout: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] | None = None

    def send(self, body: Mapping[str, Any], subject: str) -> SendResult:
        data = encode(body)
        request = urllib.request.Request(
            self.url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "stackback-alerts",
                SIGNATURE_HEADER: sign(self.secret, data),
                EVENT_HEADER: str(body.get("event", "")),
            },
        )

        def attempt() -> str:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return f"HTTP {answer.status}"
            except urllib.error.HTTPError as error:
                if error.code == 429 or error.code >= 500:
                    raise
                raise Permanent(f"HTTP {error.code} {error.reason}") from None

        if self.sleep is None:
            return with_retries(attempt, self.backoff)
        return with_retries(attempt, self.backoff, sleep=self.sleep)

    def secrets(self) -> list[str]:
        return [self.secret]
