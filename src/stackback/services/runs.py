"""Runs: list, show, delete and cancel their records, and wait for one run to finish."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from stackback.engine.runner import Runner
from stackback.engine.settings import EngineSettings
from stackback.engine.worker import Worker, worker_name
from stackback.errors import Conflict, InvalidInput, WaitTimedOut
from stackback.policy import Run, RunState, check_given
from stackback.ports import Clock, CloudResolver, Store
from stackback.records import RunFilter
from stackback.services.policies import with_current_policy_names

WAIT_SETTINGS = EngineSettings(poll_interval=timedelta(seconds=2))
"""How a wait drives its run: its image is polled every 2 s, not at the engine's pace."""
CANCEL_REASON = "cancelled by the operator"


class RunService:
    """The recorded executions of policies, as the operator sees and steers them."""

    def __init__(
        self,
        store: Store,
        clouds: CloudResolver,
        clock: Clock,
        settings: EngineSettings | None = None,
        *,
        max_snapshots_per_host: int | None = None,
        release_credential: Callable[[str | None], object] | None = None,
    ) -> None:
        """``max_snapshots_per_host``: the per-host limit a run taken in this process obeys
        (``serve``'s); ``release_credential``: what its rotation's deletions release."""
        self.store = store
        self.clouds = clouds
        self.clock = clock
        self.settings = settings or WAIT_SETTINGS
        if max_snapshots_per_host is not None:
            self.settings = replace(self.settings, max_snapshots_per_host=max_snapshots_per_host)
        self.release_credential = release_credential

    def list_runs(
        self,
        *,
        policy: str | None = None,
        target: str | None = None,
        state: RunState | None = None,
        limit: int = 200,
        project: str | None = None,
        marker: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Run]:
        """Runs newest first (only ``project``'s, if given; scheduled from ``since`` until
        before ``until``; the page after the run ``marker``); each names its policy as it is
        called now. A policy of another project is not found."""
        check_given(target, "--target")
        check_given(policy, "--policy")
        policy_id = None
        if policy:
            policy_id = self.store.get_policy(policy, project=project).id
        runs = self.store.list_runs(
            RunFilter(
                policy_id=policy_id,
                target=target,
                state=state,
                limit=limit,
                project=project,
                marker=marker,
                since=since,
                until=until,
            )
        )
        return with_current_policy_names(self.store, runs)

    def get(self, ref: str, *, project: str | None = None) -> Run:
        """One run (by id or a unique prefix of it; among ``project``'s runs, if given) with
        its steps."""
        return with_current_policy_names(self.store, [self.store.get_run(ref, project=project)])[0]

    def delete(self, refs: Sequence[str]) -> list[Run]:
        """Delete finished runs' records, all or nothing (their backups stay)."""
        runs = [self.store.get_run(ref) for ref in refs]
        busy = [r.id for r in runs if not r.state.is_terminal]
        if busy:
            raise Conflict(f"runs still in progress cannot be deleted: {', '.join(busy)}")
        return [self.store.delete_run(r.id) for r in runs]

    def cancel(self, ref: str) -> Run:
        """Cancel a pending or active run: it ends ``cancelled`` and its worker stops.

        Nothing in the cloud is touched (an image already asked for is left as
        it is, recorded on the run's failed backup); the server is freed for
        other runs at once instead of when a dead worker's lease expires.
        """
        return self.store.cancel_run(ref, now=self.clock.now(), reason=CANCEL_REASON)

    def wait(
        self,
        run_id: str,
        *,
        timeout: float,
        progress: Callable[[Run], None] | None = None,
    ) -> Run:
        """Drive the run ``run_id`` in this process until it ends, and only that run.

        ``progress`` is called with the run each time it is looked at. Raises
        ``WaitTimedOut`` when ``timeout`` seconds pass first: the run goes on.
        """
        if not timeout > 0:
            raise InvalidInput(f"--timeout must be more than 0 seconds, not {timeout:g}")
        runner = Runner(
            self.store,
            self.clouds,
            self.clock,
            self.settings,
            release_credential=self.release_credential,
        )
        worker = Worker(self.store, runner, self.clock, self.settings, name=f"wait:{worker_name()}")
        deadline = self.clock.now() + timedelta(seconds=timeout)
        pause = self.settings.poll_interval.total_seconds() / 4
        while True:
            run = self.store.get_run(run_id)
            if progress is not None:
                progress(run)
            if run.state.is_terminal:
                return run
            now = self.clock.now()
            if now >= deadline:
                raise WaitTimedOut(
                    f"run {run.id} is still {run.state.value} after {timeout:g} s; it goes on "
                    f"(`stackback run show {run.id}`)",
                    run_id=run.id,
                )
            if not worker.work_once(run_id=run.id):
                self.clock.sleep(min(pause, (deadline - now).total_seconds()))
