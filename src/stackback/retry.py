"""When to try a failing step again, or to give up (pure: no clock, no I/O).

One rule for the engine: the worker retrying a step of a run (a busy server, a
5xx) and the scheduler asking a cloud again for the servers of a selector use
the same :class:`RetryStrategy`.

The rule is stateless, so that nothing but the time of the first failure needs
to be kept: the next attempt comes ``base`` plus as long as the failure has
lasted so far, at most ``maximum`` later. Attempts made on time therefore wait
``base``, ``2 base``, ``4 base``... up to ``maximum``. Each wait is shortened by
up to ``jitter`` of itself, by an amount derived from a key that names the
attempt (so runs failing together spread out, and a test can predict it), and
no attempt is planned after ``deadline - margin``: then the answer is to give up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from stackback.errors import InvalidInput

__all__ = ["RetryDecision", "RetryStrategy"]


@dataclass(frozen=True)
class RetryDecision:
    """Try again at ``retry_at``, or give up (``retry_at`` is None)."""

    retry_at: datetime | None

    @property
    def gives_up(self) -> bool:
        return self.retry_at is None


@dataclass(frozen=True)
class RetryStrategy:
    """Backoff with jitter, bounded by a deadline.

    ``base``: the first wait; ``maximum``: the longest wait; ``jitter``: the
    largest fraction of a wait that is taken off it (0 to below 1); ``margin``:
    the last attempt comes at least this long before the deadline.
    """

    base: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(minutes=5)
    jitter: float = 0.1
    margin: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if self.base <= timedelta(0):
            raise InvalidInput(f"retry base must be positive, got {self.base}", field="base")
        if self.maximum < self.base:
            raise InvalidInput(
                f"retry maximum {self.maximum} is shorter than its base {self.base}",
                field="maximum",
            )
        if not 0.0 <= self.jitter < 1.0:
            raise InvalidInput(
                f"retry jitter must be in [0, 1), got {self.jitter!r}", field="jitter"
            )
        if self.margin < timedelta(0):
            raise InvalidInput(
                f"retry margin must not be negative, got {self.margin}", field="margin"
            )

    def plain_delay(self, failing_for: timedelta) -> timedelta:
        """The wait before jitter: ``base + failing_for``, at most ``maximum``."""
        return min(self.base + max(failing_for, timedelta(0)), self.maximum)

    def delay(self, failing_for: timedelta, key: str) -> timedelta:
        """The wait before the next attempt.

        Between ``(1 - jitter)`` times the plain delay and the plain delay; the
        fraction taken off is a function of ``key`` and ``failing_for`` only.
        """
        plain = self.plain_delay(failing_for)
        return plain - plain * (self.jitter * _fraction(f"{key}|{failing_for}"))

    def decide(
        self, *, now: datetime, deadline: datetime, failing_for: timedelta, key: str
    ) -> RetryDecision:
        """Retry at ``now + delay`` (never after ``deadline - margin``), or give up.

        ``failing_for`` is how long the failure has lasted (0 at the first one);
        ``key`` names the attempt (a run id, a policy and occurrence). Gives up
        when no attempt fits between ``now`` and ``deadline - margin``.
        """
        last = deadline - self.margin
        retry_at = min(now + self.delay(failing_for, key), last)
        return RetryDecision(retry_at if retry_at > now else None)


def _fraction(key: str) -> float:
    """A number in [0, 1) that depends only on ``key`` (the same in every process)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
