"""Several scheduler and worker processes on one database: every occurrence exactly once.

The processes share a clock running 60 times faster than real time (one
simulated minute a second), so a minutely policy over twelve servers gives
over a thousand occurrences in a minute and a half. Occurrences the
schedulers reach too late (a loaded machine) are recorded as ``missed``:
that is allowed; an occurrence with no record, or with two, is not.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackback.clock import ScaledClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig
from stackback.policy import RunState
from stackback.ports import MARKER_RUN
from stackback.schedule import CronSchedule
from stackback.services.policies import PolicyService, PolicySpec
from stackback.store.sql import RunFilter, SqlStore
from tests.engine.processes import start, stop, wait_until

pytestmark = pytest.mark.slow

SCALE = 60.0
SERVERS = 12
SCHEDULING_SECONDS = 90.0


@pytest.mark.parametrize("workers", [2, 4])
def test_replicas_produce_each_occurrence_exactly_once(
    workers: int, store: SqlStore, db_url: str, tmp_path: Path
) -> None:
    origin = time.time()
    clock = ScaledClock(datetime.fromtimestamp(origin, UTC), SCALE)
    sim_path = tmp_path / "cloud.sqlite"
    sim = SimulatedCloud(sim_path, clock, project="demo")
    sim.configure(SimConfig(image_snapshot_seconds=1, image_base_seconds=2, image_seconds_per_gb=0))
    servers = [sim.create_server(f"s{i}") for i in range(SERVERS)]
    policy = PolicyService(store, clock).create(
        PolicySpec(
            name="minutely",
            targets=tuple(s.id for s in servers),
            schedules=("* * * * *",),
            keep_all=True,  # every image stays countable
            cloud=f"sim:{sim_path}",
        )
    )
    common = ["--db", db_url, "--os-cloud", f"sim:{sim_path}"]
    timing = ["--time-scale", str(SCALE), "--time-origin", repr(origin)]
    schedulers = [
        start([*common, "scheduler", *timing], log=tmp_path / f"scheduler{i}.log") for i in range(2)
    ]
    pool = [
        start([*common, "worker", *timing], log=tmp_path / f"worker{i}.log") for i in range(workers)
    ]
    try:
        time.sleep(SCHEDULING_SECONDS)
        assert stop(schedulers) == [0, 0]
        stopped_at = clock.now()
        wait_until(
            lambda: all(r.state.is_terminal for r in store.list_runs(RunFilter(limit=100_000))),
            180,
            what="the workers to finish every run",
        )
    finally:
        codes = stop(pool)
        stop(schedulers)
    assert codes == [0] * workers

    runs = store.list_runs(RunFilter(policy_id=policy.id, limit=100_000))
    by_target: dict[str, list[datetime]] = defaultdict(list)
    for run in runs:
        by_target[run.target].append(run.scheduled_for)
    cron = CronSchedule("* * * * *")
    first_fire = min(r.scheduled_for for r in runs)
    # A scheduler stopped mid-way may not have ticked the last seconds before its stop (one
    # simulated minute is one real second here, and a loaded machine ticks late): the
    # occurrences of the last three simulated minutes may have no record; earlier ones must.
    expected = cron.fires_between(
        first_fire - timedelta(seconds=1), stopped_at - timedelta(minutes=3)
    )
    assert len(expected) * SERVERS >= 1000, "too few occurrences to mean anything"
    for server in servers:
        fired = sorted(by_target[server.id])
        assert len(fired) == len(set(fired)), "duplicate occurrence"
        missing = set(expected) - set(fired)
        assert not missing, f"{server.name}: occurrences never recorded: {sorted(missing)[:5]}"

    states = Counter(r.state for r in runs)
    assert set(states) <= {RunState.SUCCEEDED, RunState.MISSED}, states
    assert states[RunState.SUCCEEDED] >= len(runs) // 2, states
    with sqlite3.connect(sim_path) as db:
        stamps = Counter(
            json.loads(props).get(MARKER_RUN)
            for (props,) in db.execute("SELECT properties FROM images")
        )
    assert max(stamps.values()) == 1, "a run produced two images"
    succeeded = {r.id for r in runs if r.state is RunState.SUCCEEDED}
    assert succeeded <= set(stamps), "a succeeded run has no image"
    print(f"\n{workers} workers: {len(runs)} occurrences, states {dict(states)}")
