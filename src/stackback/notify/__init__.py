"""Alert channels (adapters): a signed webhook and e-mail over SMTP, and their config file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from stackback.alerts import Route


@dataclass(frozen=True)
class SendResult:
    """How a delivery ended: ``ok``, after how many attempts, and the last answer or error."""

    ok: bool
    attempts: int
    detail: str


class Channel(Protocol):
    """Somewhere alerts are sent; retries (with backoff) are the channel's own."""

    route: Route

    def send(self, body: Mapping[str, Any], subject: str) -> SendResult:
        """Deliver one alert (its JSON payload and a one-line summary)."""
        ...

    def secrets(self) -> list[str]:
        """Values that must never reach a log line (passwords, shared secrets)."""
        ...
