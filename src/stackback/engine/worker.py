"""Workers: claim runs under a lease and drive them through the runner."""

from __future__ import annotations

import os
import socket
import uuid

from stackback.engine.runner import Runner
from stackback.engine.settings import EngineSettings
from stackback.policy import RunState
from stackback.ports import Clock, Store


def worker_name() -> str:
    """host:pid:random — unique per process, readable in ``run show``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims runs that can make progress and advances each by one step.

    Runs waiting for the cloud are polled together: one status listing per
    cloud per cycle, however many backups are in flight. An expired lease of
    a dead worker makes its run claimable again (the reaper is the claim
    query itself), with a higher attempt number that fences the old owner.
    """

    def __init__(
        self,
        store: Store,
        runner: Runner,
        clock: Clock,
        settings: EngineSettings | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.clock = clock
        self.settings = settings or EngineSettings()
        self.name = name or worker_name()

    def work_once(self) -> int:
        """Claim and advance one batch; returns how many runs were advanced."""
        runs = self.store.claim_runs(
            self.clock.now(),
            self.name,
            lease_seconds=self.settings.lease.total_seconds(),
            limit=self.settings.claim_batch,
        )
        self.runner.forget_cached_policies()
        waiting = [r for r in runs if r.state is RunState.WAITING]
        for run in runs:
            if run.state is not RunState.WAITING:
                self.runner.advance(run)
        if waiting:
            self.runner.poll(waiting)
        return len(runs)
