#!/usr/bin/env python
"""Benchmark (not a test) of the backup window at scale: 1,000 servers due at 01:00.

Servers spread evenly over compute hosts of the simulator, each host taking at
most ``--capacity`` snapshots at once (beyond that its ``createImage`` answers
409, ``SimConfig.host_snapshot_capacity``) and uploading ``--upload-slots`` at a
time. Measured in one run, on the same servers:

* **stackback** with ``max_snapshots_per_host = --limit``: one policy, cron
  ``0 1 * * *``, a ``--window``-minute window, served by ``--replicas`` engines
  (threads, each its own store and cloud connections; all tick and work) on the
  project's ``ScaledClock`` (``--time-scale`` simulated seconds per real one).
  Makespan: from 01:00 until the last image turned active (the simulator's
  instants) and until the last run finished (the engine's view). Lower bound:
  max over hosts of (sum of that host's snapshot durations) / limit.
* **naive cron**: every server's cron job calls ``createImage`` at 01:00:00, as
  the cron-script guides do, and gives up on an error (no retry): its 409s.

Run ``python bench/window.py --help``; the method is in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from stackback.clock import ScaledClock, VirtualClock  # noqa: E402
from stackback.cloud.simulator import SimulatedCloud  # noqa: E402
from stackback.cloud.simulator.config import SimConfig  # noqa: E402
from stackback.cloud.simulator.model import SimImage  # noqa: E402
from stackback.engine.loop import Engine  # noqa: E402
from stackback.engine.settings import EngineSettings  # noqa: E402
from stackback.errors import CloudBusy  # noqa: E402
from stackback.policy import RunState  # noqa: E402
from stackback.retention import RetentionPolicy  # noqa: E402
from stackback.services.policies import PolicyService, PolicySpec  # noqa: E402
from stackback.store.database import create_db_engine, upgrade  # noqa: E402
from stackback.store.sql import RunFilter, SqlStore  # noqa: E402

FIRE = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
TARGET_RATIO = 1.10


@dataclass(frozen=True)
class Server:
    name: str
    host: str
    disk_gb: float


def workload(options: argparse.Namespace) -> list[Server]:
    """Servers round-robin over the hosts, disks drawn from a seeded uniform range."""
    draw = random.Random(options.seed)
    return [
        Server(
            f"srv-{n:04d}",
            f"compute-{n % options.hosts:02d}",
            round(draw.uniform(options.disk_min, options.disk_max), 1),
        )
        for n in range(options.servers)
    ]


def sim_config(options: argparse.Namespace) -> SimConfig:
    return replace(
        SimConfig(),
        host_snapshot_capacity=options.capacity,
        host_upload_limit=options.upload_slots,
    )


def snapshot_seconds(config: SimConfig, disk_gb: float) -> float:
    """How long a host is busy with one snapshot when it does not wait for a slot."""
    return (
        config.image_snapshot_seconds
        + config.image_base_seconds
        + config.image_seconds_per_gb * disk_gb
    )


def lower_bound(options: argparse.Namespace, servers: Sequence[Server]) -> float:
    """Max over hosts of the host's snapshot work divided by the per-host concurrency."""
    config = sim_config(options)
    work: dict[str, float] = defaultdict(float)
    for server in servers:
        work[server.host] += snapshot_seconds(config, server.disk_gb)
    return max(work.values()) / options.limit


def populate(path: Path, options: argparse.Namespace, clock: VirtualClock) -> list[str]:
    sim = SimulatedCloud(path, clock, project="bench", seed=options.seed)
    try:
        sim.configure(sim_config(options))
        return [
            sim.create_server(s.name, host=s.host, disk_gb=s.disk_gb).id for s in workload(options)
        ]
    finally:
        sim.close()


def most_at_once(images: Sequence[SimImage]) -> int:
    """The most snapshots in progress on one host at one instant (created → active)."""
    events: dict[str | None, list[tuple[float, int]]] = defaultdict(list)
    for image in images:
        assert image.created_at is not None and image.ready_at is not None
        events[image.host] += [(image.created_at.timestamp(), 1), (image.ready_at.timestamp(), -1)]
    most = 0
    for points in events.values():
        level = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):
            level += step
            most = max(most, level)
    return most


def run_stackback(workdir: Path, options: argparse.Namespace) -> dict[str, object]:
    sim_path, url = workdir / "sim.sqlite", f"sqlite:///{workdir / 'stackback.db'}"
    upgrade(create_db_engine(url))
    setup_clock = VirtualClock(FIRE - timedelta(minutes=10))
    server_ids = populate(sim_path, options, setup_clock)
    store = SqlStore.from_url(url)
    PolicyService(store, setup_clock).create(
        PolicySpec(
            name="nightly",
            targets=tuple(server_ids),
            schedules=("0 1 * * *",),
            timezone="UTC",
            window_minutes=options.window,
            retention=RetentionPolicy(last=7),
        ),
        offline=True,
    )
    settings = EngineSettings(
        max_snapshots_per_host=options.limit,
        poll_interval=timedelta(seconds=options.poll),
    )
    start_at = FIRE - timedelta(seconds=options.lead)
    factor = options.time_scale
    # ScaledClock reads origin + (real time - origin) * factor: the origin for which it
    # reads ``start_at`` now.
    real_now = time.time()
    origin = (factor * real_now - start_at.timestamp()) / (factor - 1)
    clock = ScaledClock(datetime.fromtimestamp(origin, UTC), factor)
    clouds = [SimulatedCloud(sim_path, clock, project="bench") for _ in range(options.replicas)]
    stores = [SqlStore.from_url(url) for _ in range(options.replicas)]
    engines = [
        Engine(stores[i], lambda _name, c=clouds[i]: c, clock, settings, worker_name=f"r{i}")
        for i in range(options.replicas)
    ]
    stop = threading.Event()
    threads = [
        threading.Thread(target=e.serve, args=(stop,), kwargs={"idle_max": 0.5}, daemon=True)
        for e in engines
    ]
    real_start = time.perf_counter()
    for thread in threads:
        thread.start()
    deadline = FIRE + timedelta(minutes=options.window) + timedelta(hours=3)
    try:
        while clock.now() < deadline:
            time.sleep(1.0)
            if clock.now() < FIRE:
                continue
            counts = store.count_runs_by_state()
            if sum(counts.values()) >= len(server_ids) and all(
                RunState(state).is_terminal for state in counts
            ):
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    real_seconds = time.perf_counter() - real_start
    runs = store.list_runs(RunFilter(limit=len(server_ids) + 10))
    images = clouds[0].images()
    for cloud in clouds:
        cloud.close()
    states: dict[str, int] = defaultdict(int)
    for run in runs:
        states[run.state.value] += 1
    busy_retries = sum(
        1 for r in runs for s in r.steps if s.outcome == "retry" and "cloud-busy" in s.detail
    )
    busy_failures = sum(
        1 for r in runs if r.state is RunState.FAILED and "cloud-busy" in (r.error or "")
    )
    deferrals = sum(1 for r in runs for s in r.steps if s.outcome == "deferred")
    finished = [r.finished_at for r in runs if r.finished_at is not None]
    ready = [i.ready_at for i in images if i.ready_at is not None]
    first_start = min((i.created_at for i in images if i.created_at is not None), default=None)
    return {
        "runs": len(runs),
        "states": dict(states),
        "images": len(images),
        "busy_retries": busy_retries,
        "busy_failures": busy_failures,
        "deferrals": deferrals,
        "makespan_s": (max(ready) - FIRE).total_seconds() if ready else None,
        "engine_makespan_s": (max(finished) - FIRE).total_seconds() if finished else None,
        "first_snapshot_s": (first_start - FIRE).total_seconds() if first_start else None,
        "most_at_once": most_at_once(images),
        "real_s": real_seconds,
    }


def run_naive(workdir: Path, options: argparse.Namespace) -> dict[str, object]:
    """Every server's cron calls createImage at 01:00:00 and gives up on an error."""
    clock = VirtualClock(FIRE - timedelta(minutes=10))
    server_ids = populate(workdir / "naive.sqlite", options, clock)
    clock.advance_to(FIRE)
    sim = SimulatedCloud(workdir / "naive.sqlite", clock, project="bench", seed=options.seed)
    try:
        refused = 0
        for server_id in server_ids:
            try:
                sim.start_server_image(server_id, f"cron-{server_id}", {})
            except CloudBusy:
                refused += 1
        images = sim.images()
    finally:
        sim.close()
    ready = [i.ready_at for i in images if i.ready_at is not None]
    return {
        "servers": len(server_ids),
        "busy_failures": refused,
        "images": len(images),
        "makespan_s": (max(ready) - FIRE).total_seconds() if ready else None,
        "most_at_once": most_at_once(images),
    }


def _minutes(seconds: object) -> str:
    return "-" if not isinstance(seconds, float) else f"{seconds / 60:.1f} min"


def report(options: argparse.Namespace, ours: dict[str, object], naive: dict[str, object]) -> None:
    servers = workload(options)
    bound = lower_bound(options, servers)
    config = sim_config(options)
    durations = [snapshot_seconds(config, s.disk_gb) for s in servers]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"workload: {options.servers} servers on {options.hosts} hosts, disks "
        f"{options.disk_min:g}-{options.disk_max:g} GB (snapshot "
        f"{min(durations) / 60:.1f}-{max(durations) / 60:.1f} min, mean "
        f"{sum(durations) / len(durations) / 60:.1f} min); all due at 01:00, window "
        f"{options.window} min"
    )
    print(
        f"simulated host: {options.upload_slots} upload slots, 409 beyond "
        f"{options.capacity} snapshots in progress; engine: max_snapshots_per_host "
        f"{options.limit}, {options.replicas} replicas, poll {options.poll:g} s, clock x"
        f"{options.time_scale:g}"
    )
    print(f"lower bound (max over hosts of work / {options.limit}): {_minutes(bound)}")
    makespan = ours["makespan_s"]
    ratio = makespan / bound if isinstance(makespan, float) else float("nan")
    print(
        f"stackback: makespan {_minutes(makespan)} (last image active; last run finished "
        f"{_minutes(ours['engine_makespan_s'])}), {ratio:.3f}x the lower bound; "
        f"first snapshot at +{ours['first_snapshot_s']:.1f} s; runs {ours['states']}; "
        f"images {ours['images']}; most snapshots at once on a host {ours['most_at_once']}; "
        f"409 retries {ours['busy_retries']}, failures caused by 409 {ours['busy_failures']}; "
        f"starts deferred for a full host {ours['deferrals']}; real time "
        f"{ours['real_s']:.0f} s"
    )
    print(
        f"naive cron at 01:00: {naive['busy_failures']} of {naive['servers']} createImage "
        f"calls answered 409 (failed, no backup); {naive['images']} images, the last active "
        f"after {_minutes(naive['makespan_s'])}; most at once on a host "
        f"{naive['most_at_once']}"
    )
    met = ratio <= TARGET_RATIO and ours["busy_failures"] == 0
    print(
        f"VERDICT: makespan / lower bound {ratio:.3f} "
        f"{'<=' if ratio <= TARGET_RATIO else '>'} {TARGET_RATIO:.2f}, failures caused by 409 "
        f"{ours['busy_failures']}: {'MET' if met else 'NOT MET'}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--servers", type=int, default=1000, help="servers (1000)")
    add("--hosts", type=int, default=50, help="compute hosts (50)")
    add("--limit", type=int, default=2, help="stackback's max_snapshots_per_host (2)")
    add("--capacity", type=int, default=4, help="simulated host: 409 beyond this many (4)")
    add("--upload-slots", type=int, default=2, help="simulated host: parallel uploads (2)")
    add("--window", type=int, default=60, help="the policy's window, minutes (60)")
    add("--disk-min", type=float, default=10.0, help="smallest disk, GB (10)")
    add("--disk-max", type=float, default=40.0, help="largest disk, GB (40)")
    add("--replicas", type=int, default=2, help="engines serving the store (2)")
    add("--poll", type=float, default=15.0, help="engine poll interval, seconds (15)")
    add("--time-scale", type=float, default=10.0, help="simulated seconds per real one (10)")
    add("--lead", type=float, default=20.0, help="start the clock this long before 01:00 (s)")
    add("--seed", type=int, default=20260302, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.time_scale <= 1:
        parser.error("--time-scale must be above 1")
    if min(options.servers, options.hosts, options.limit, options.replicas) < 1:
        parser.error("--servers, --hosts, --limit and --replicas must be at least 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stackback-window-") as tmp:
        workdir = Path(tmp)
        naive = run_naive(workdir, options)
        ours = run_stackback(workdir, options)
    report(options, ours, naive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
