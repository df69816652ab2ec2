"""Clocks: the real one, and a virtual one that tests and the demo advance."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING


class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=max(0.0, seconds))
            return self._now

    def advance_to(self, instant: datetime) -> datetime:
        with self._lock:
            if instant > self._now:
                self._now = instant.astimezone(UTC)
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


class ScaledClock:
    """Real time running ``factor`` times faster from ``origin`` (a shared epoch).

    Processes given the same origin and factor agree on the time, so a
    multi-process test can live through hours of schedules in seconds.
    """

    def __init__(self, origin: datetime, factor: float) -> None:
        if origin.tzinfo is None or factor <= 0:
            raise ValueError("ScaledClock needs an aware origin and a positive factor")
        self.origin = origin.astimezone(UTC)
        self.factor = factor
        self._real_origin = origin.timestamp()

    def now(self) -> datetime:
        elapsed = (time.time() - self._real_origin) * self.factor
        return self.origin + timedelta(seconds=elapsed)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.factor)


if TYPE_CHECKING:  # the type checker proves both clocks satisfy the port
    from stackback.ports import Clock

    def _conform_to_port(system: SystemClock, virtual: VirtualClock) -> tuple[Clock, Clock]:
        return system, virtual
