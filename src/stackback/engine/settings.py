"""Timing knobs of the engine, with defaults an operator would expect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from stackback.errors import InvalidInput
from stackback.retry import RetryStrategy


@dataclass(frozen=True)
class EngineSettings:
    """How the scheduler and workers pace themselves.

    - ``grace``: an occurrence may start this late (or the start window, if
      longer) before it counts as missed.
    - ``retry_window``: how long after its due time a run keeps retrying a
      busy (409) or failing (5xx) cloud before it fails with the reason.
    - ``retry_base``, ``retry_max``, ``retry_jitter``: the backoff of those
      retries and of a selector the cloud cannot list (``retry_strategy``).
    - ``deletion_budget``: at most this many backups are forgotten per run.
    - ``max_snapshots_per_host``: at most this many snapshots in progress per
      compute host (None: no limit). With a limit, a policy's start window is
      paced by it: its runs are due at the fire time and start as their hosts
      have room, instead of at a hashed offset in the window.
    """

    lease: timedelta = timedelta(minutes=5)
    grace: timedelta = timedelta(minutes=10)
    retry_window: timedelta = timedelta(minutes=30)
    retry_base: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(minutes=5)
    retry_jitter: float = 0.1
    poll_interval: timedelta = timedelta(seconds=15)
    pause_poll_interval: timedelta = timedelta(seconds=1)
    """How often a paused server's snapshots are checked, to unpause it as soon as possible."""
    wait_timeout: timedelta = timedelta(hours=6)
    deletion_budget: int = 10
    claim_batch: int = 20
    tick_batch: int = 500
    max_fires_per_tick: int = 500
    max_snapshots_per_host: int | None = None

    def __post_init__(self) -> None:
        limit = self.max_snapshots_per_host
        if limit is not None and (isinstance(limit, bool) or limit < 1):
            raise InvalidInput(
                f"max_snapshots_per_host must be at least 1 (or unset), not {limit!r}",
                field="max_snapshots_per_host",
            )

    @property
    def retry_strategy(self) -> RetryStrategy:
        """The one backoff rule of the worker's retries and the scheduler's selector retries."""
        return RetryStrategy(base=self.retry_base, maximum=self.retry_max, jitter=self.retry_jitter)
