"""Retries with exponential backoff, shared by the channels."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from stackback.notify import SendResult


class Permanent(Exception):
    """A refusal that retrying cannot change (e.g. HTTP 400, SMTP 550)."""


@dataclass(frozen=True)
class Backoff:
    attempts: int = 4
    """Tries in all (the first and three retries)."""
    base: float = 1.0
    """Seconds before the first retry; doubled each time."""
    cap: float = 60.0

    def delays(self) -> list[float]:
        return [min(self.base * 2**i, self.cap) for i in range(max(0, self.attempts - 1))]


def with_retries(
    attempt: Callable[[], str],
    backoff: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> SendResult:
    """Call ``attempt`` (it returns the answer, or raises) until it succeeds, is refused for
    good, or has been tried ``backoff.attempts`` times."""
    delays = backoff.delays()
    tries = 0
    while True:
        tries += 1
        try:
            return SendResult(True, tries, attempt())
        except Permanent as refused:
            return SendResult(False, tries, str(refused))
        except Exception as error:  # a network or server trouble: try again
            if tries > len(delays):
                return SendResult(False, tries, f"{type(error).__name__}: {error}")
            sleep(delays[tries - 1])
