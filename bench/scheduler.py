#!/usr/bin/env python
"""Benchmark (not a test) of the scheduler tick: stackback vs APScheduler 3.11.

N cron policies (default 100,000), each with one explicit target, of which a
fraction (default 1%) is due at the tick instant ``now``. Measured, each in a
fresh interpreter so that RSS and CPU figures do not mix:

* stackback on SQLite and on a private PostgreSQL: population by bulk insert
  (reported apart), one ``Scheduler.tick(now)`` at 1% due (wall, process CPU,
  runs inserted; PostgreSQL server CPU too), the idle tick (0 due), RSS;
* APScheduler 3.11 with a MemoryJobStore and with a SQLAlchemyJobStore on
  SQLite: adding the same jobs (same expressions, same zones), one
  ``_process_jobs()`` wakeup at 1% due and idle, RSS;
* the SQLite floor: the same reads and writes as the tick through bare
  ``sqlite3`` in one transaction, and the ratio tick / floor at 0.1%, 1% and
  10% due (``--sweep``), WAL checkpoints timed apart.

Run ``python bench/scheduler.py --help``; the method is in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, cast

import psutil

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# A Tuesday, on a whole minute: every fire of a 5-field cron is on a whole minute.
DEFAULT_NOW = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
ZONES = ("UTC", "Europe/Amsterdam", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
INSERT_CHUNK = 5000
IDLE_REPEAT = 20
TARGET_FLOOR_RATIO = 2.0
DEFAULT_SWEEP = "0.001,0.01,0.1"
TARGET_CPU_RATIO = 5.0

Result = dict[str, Any]


# -- the workload (identical in every phase: a pure function of the options) ---------------


@dataclass(frozen=True)
class Workload:
    crons: list[str]
    zones: list[str]
    due: list[bool]

    @property
    def due_count(self) -> int:
        return sum(self.due)


def _weekday_field(rng: random.Random, must_include: int | None) -> str:
    """A day-of-week field with names (cronsim and APScheduler agree on names, not numbers)."""
    choice = rng.random()
    if choice < 0.5:
        return "*"
    if choice < 0.7:
        return "MON-FRI" if must_include is None or 1 <= must_include <= 5 else "SAT,SUN"
    days = set(rng.sample(range(7), rng.randint(1, 3)))
    if must_include is not None:
        days.add(must_include)
    return ",".join(WEEKDAYS[d] for d in sorted(days))


def _hour_field(rng: random.Random, must_include: int | None) -> str:
    choice = rng.random()
    if choice < 0.5:
        hours = {must_include if must_include is not None else rng.randrange(24)}
    elif choice < 0.85:
        hours = set(rng.sample(range(24), rng.randint(2, 4)))
        if must_include is not None:
            hours.add(must_include)
    else:
        steps = [s for s in (2, 3, 4, 6, 8, 12) if must_include is None or must_include % s == 0]
        if steps:
            return f"*/{rng.choice(steps)}"
        hours = {must_include} if must_include is not None else {rng.randrange(24)}
    return ",".join(str(h) for h in sorted(hours))


def make_workload(count: int, due_fraction: float, seed: int, now: datetime) -> Workload:
    """Seeded crons; the due ones (exactly round(count * fraction)) fire at ``now``.

    Day-of-month and month stay ``*`` so that cron's "either day field" rule (cronsim) and
    APScheduler's "both day fields" rule cannot disagree.
    """
    from zoneinfo import ZoneInfo

    rng = random.Random(seed)
    due_count = round(count * due_fraction)
    due_indices = set(rng.sample(range(count), due_count))
    crons: list[str] = []
    zones: list[str] = []
    due: list[bool] = []
    for index in range(count):
        zone = rng.choice(ZONES)
        is_due = index in due_indices
        if is_due:
            local = now.astimezone(ZoneInfo(zone))
            weekday = (local.weekday() + 1) % 7  # cron numbering: 0 = Sunday
            minute = str(local.minute)
            hour = _hour_field(rng, local.hour)
            dow = _weekday_field(rng, weekday)
        else:
            minute = str(rng.randrange(60))
            hour = _hour_field(rng, None)
            dow = _weekday_field(rng, None)
        crons.append(f"{minute} {hour} * * {dow}")
        zones.append(zone)
        due.append(is_due)
    return Workload(crons, zones, due)


# -- measuring -------------------------------------------------------------------------------


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def server_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of a server process and all its children so far."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@dataclass
class Sample:
    wall_ms: float
    cpu_ms: float
    server_cpu_ms: float
    count: int


@contextmanager
def measured(samples: list[Sample], server_pid: int | None = None) -> Iterator[list[int]]:
    """Time the block (wall + this process's CPU + optional server CPU); yield a count cell."""
    cell = [0]
    gc.collect()
    server_before = server_cpu(server_pid)
    cpu_before = time.process_time()
    wall_before = time.perf_counter()
    yield cell
    wall = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    server = server_cpu(server_pid) - server_before
    samples.append(Sample(wall * 1000, cpu * 1000, server * 1000, cell[0]))


def summary(samples: Sequence[Sample]) -> Result:
    def stats(values: list[float]) -> Result:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "n": len(samples),
        "wall_ms": stats([s.wall_ms for s in samples]),
        "cpu_ms": stats([s.cpu_ms for s in samples]),
        "server_cpu_ms": stats([s.server_cpu_ms for s in samples]),
        "count": sorted({s.count for s in samples}),
    }


class WalCheckpoints:
    """Moves the WAL checkpoint of a SQLite measurement out of wherever it would fall.

    SQLite checkpoints the WAL in the commit that takes it past 1,000 pages.
    Which measured or unmeasured commit that is depends on what ran before
    (before this was accounted for, the floor's checkpoint fell in its re-arm and the
    tick's in its second batch). So autocheckpoint is off on the measured
    connections, every measurement starts from an empty WAL (``empty``, not
    measured) and the checkpoint of what it wrote is measured apart (``run``);
    the report shows each figure with and without it. Nothing on PostgreSQL.
    """

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.enabled = engine.dialect.name == "sqlite"
        if self.enabled:
            engine.dispose()  # pooled connections made before the listener would keep it on

            @event.listens_for(engine, "connect")
            def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    def _checkpoint(self, mode: str) -> int:
        if not self.enabled:
            return 0
        raw = self.engine.raw_connection()
        try:
            busy, frames, _done = raw.driver_connection.execute(
                f"PRAGMA wal_checkpoint({mode})"
            ).fetchone()
            assert busy == 0, "a checkpoint was blocked"
            return int(frames)
        finally:
            raw.close()

    def empty(self) -> None:
        self._checkpoint("TRUNCATE")

    def run(self) -> int:
        """Checkpoint the WAL; returns how many pages (frames) it held."""
        return self._checkpoint("PASSIVE")


# -- stackback phases ------------------------------------------------------------------------


def phase_populate(options: argparse.Namespace) -> Result:
    """Create the schema and bulk-insert the policies and schedules."""
    from sqlalchemy import insert

    from stackback.schedule import CronSchedule
    from stackback.store.database import create_db_engine, upgrade
    from stackback.store.models import PolicyRow, ScheduleRow

    now: datetime = options.now
    rss_start = rss_mb()
    engine = create_db_engine(options.url)
    upgrade(engine)
    workload = make_workload(options.policies, options.due_fraction, options.seed, now)
    rng = random.Random(options.seed + 1)

    started = time.perf_counter()
    cron_seconds = 0.0
    insert_seconds = 0.0
    for first in range(0, options.policies, INSERT_CHUNK):
        chunk = range(first, min(first + INSERT_CHUNK, options.policies))
        before = time.perf_counter()
        policies: list[dict[str, Any]] = []
        schedules: list[dict[str, Any]] = []
        for index in chunk:
            policy_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            cron = CronSchedule(workload.crons[index], workload.zones[index])
            next_fire = now if workload.due[index] else cron.next_after(now)
            policies.append(
                {
                    "id": policy_id,
                    "name": f"bench-{index:06d}",
                    "kind": "server-image",
                    "cloud": None,
                    "project": None,
                    "targets": [f"server-{index:06d}"],
                    "selector_key": None,
                    "selector_value": None,
                    "timezone": workload.zones[index],
                    "window_minutes": 30,
                    "retention": {"last": 7},
                    "enabled": True,
                    "label": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            schedules.append(
                {
                    "policy_id": policy_id,
                    "position": 0,
                    "cron": cron.expr,
                    "next_fire_at": next_fire,
                    "last_fired_at": None,
                }
            )
        middle = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(insert(PolicyRow.__table__), policies)
            connection.execute(insert(ScheduleRow.__table__), schedules)
        cron_seconds += middle - before
        insert_seconds += time.perf_counter() - middle
    total = time.perf_counter() - started
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return {
        "policies": options.policies,
        "due": workload.due_count,
        "distinct_crons": len(set(zip(workload.crons, workload.zones, strict=True))),
        "populate_s": total,
        "cron_s": cron_seconds,
        "insert_s": insert_seconds,
        "rss_start_mb": rss_start,
        "rss_after_populate_mb": rss_mb(),
    }


def _never_called(cloud: str | None) -> Any:
    raise AssertionError(f"the benchmark's policies have explicit targets (cloud {cloud!r})")


def phase_tick(options: argparse.Namespace) -> Result:
    """In a process that only runs the scheduler: due ticks (re-armed) and idle ticks."""
    from sqlalchemy import delete, func, select, update

    from stackback.engine.scheduler import Scheduler
    from stackback.engine.settings import EngineSettings
    from stackback.store.models import RunRow, ScheduleRow
    from stackback.store.sql import SqlStore

    now: datetime = options.now
    pg_pid: int | None = options.pg_pid
    rss_start = rss_mb()
    store = SqlStore.from_url(options.url)
    settings = (
        EngineSettings()
        if options.tick_batch is None
        else EngineSettings(tick_batch=options.tick_batch)
    )
    scheduler = Scheduler(store, _never_called, settings)
    engine = store.engine
    checkpoints = WalCheckpoints(engine)

    with engine.begin() as connection:
        due_ids = list(
            connection.scalars(select(ScheduleRow.id).where(ScheduleRow.next_fire_at <= now))
        )
    # Warm up connection, statement caches and imports on an idle tick (nothing due yet at
    # now - 1 s; every due schedule fires at exactly now).
    for _ in range(3):
        assert scheduler.tick(now - timedelta(seconds=1)).schedules == 0
    rss_warm = rss_mb()

    def rearm() -> None:
        with engine.begin() as connection:
            connection.execute(delete(RunRow))
            connection.execute(
                update(ScheduleRow)
                .where(ScheduleRow.id.in_(due_ids))
                .values(next_fire_at=now, last_fired_at=None)
            )
        checkpoints.empty()

    due_samples: list[Sample] = []
    checkpoint_samples: list[Sample] = []
    schedules_seen: set[int] = set()
    for _ in range(options.repeat):
        rearm()
        with measured(due_samples, pg_pid) as cell:
            result = scheduler.tick(now)
            cell[0] = result.runs
        with measured(checkpoint_samples) as cell:
            cell[0] = checkpoints.run()
        schedules_seen.add(result.schedules)
    rss_after_due = rss_mb()
    with engine.begin() as connection:
        still_due = connection.scalar(
            select(func.count()).select_from(ScheduleRow).where(ScheduleRow.next_fire_at <= now)
        )
        runs = connection.scalar(select(func.count()).select_from(RunRow))
    idle_samples: list[Sample] = []
    for _ in range(IDLE_REPEAT):
        with measured(idle_samples, pg_pid) as cell:
            cell[0] = scheduler.tick(now).runs
    store.dispose()
    first = due_samples[0]
    return {
        "due": len(due_ids),
        "tick_batch": settings.tick_batch,
        # The first due tick of the process: nothing of the due schedules is cached yet (parsed
        # cron expressions, the zone list); later repeats tick the same schedules again.
        "first_due_tick": {"wall_ms": first.wall_ms, "cpu_ms": first.cpu_ms},
        "schedules_processed": sorted(schedules_seen),
        "runs_in_table": runs,
        "still_due_after_tick": still_due,
        "due_tick": summary(due_samples),
        "checkpoint": summary(checkpoint_samples),
        "idle_tick": summary(idle_samples),
        "rss_start_mb": rss_start,
        "rss_warm_mb": rss_warm,
        "rss_after_ticks_mb": rss_after_due,
        "rss_end_mb": rss_mb(),
    }


_FLOOR_DUE_QUERY = (
    "SELECT s.id, s.policy_id, s.cron, s.next_fire_at, s.last_fired_at, s.deferred_fire_at, "
    "p.name, p.timezone, p.window_minutes, p.targets, p.selector_key, p.selector_value, "
    "p.enabled, p.cloud, p.label FROM schedules s JOIN policies p ON p.id = s.policy_id "
    "WHERE s.next_fire_at <= ? ORDER BY s.next_fire_at"
)
_LEGACY_DUE_QUERY = (
    "SELECT s.id, s.policy_id, p.name, p.targets FROM schedules s "
    "JOIN policies p ON p.id = s.policy_id WHERE s.next_fire_at <= ? "
    "ORDER BY s.next_fire_at"
)
_LEGACY_INSERT = (
    "INSERT INTO runs (id, policy_id, policy_name, target, scheduled_for, due_at, "
    "state, attempt, \"trigger\", created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, "
    "'schedule', ?) ON CONFLICT (policy_id, target, scheduled_for) DO NOTHING"
)


def phase_sqlite_floor(options: argparse.Namespace) -> Result:
    """The tick's SQL alone through bare ``sqlite3``: no planning, no cron, no SQLAlchemy.

    On the database the tick phase used, after it: its due schedules (those it
    fired at ``now``) are re-armed before each measurement, then one ``BEGIN
    IMMEDIATE`` transaction with stackback's connection settings runs

    * ``same``: the tick's due query (the same 15 columns), one executemany
      INSERT of the very run rows the tick's last due tick wrote (every column
      it writes; fresh ids made in the measurement) and one executemany UPDATE
      writing the next fire, last fired and deferred values the tick wrote. The
      same writes as the tick, in one transaction: the floor of the ratio.
    * ``legacy``: the floor of earlier sessions, kept for comparison: 4
      columns read, 7-column runs, every next fire set to ``now + 1 day`` (all
      in one place of the ``next_fire_at`` index, so fewer pages are written).

    WAL checkpoints are measured apart (``WalCheckpoints``), as in the tick phase.
    """
    import sqlite3

    from stackback.store.database import create_db_engine
    from stackback.store.sql.tick import _TICK_RUN_COLUMNS

    now: datetime = options.now
    path = options.url.removeprefix("sqlite:///")
    engine = create_db_engine(options.url)  # same PRAGMAs as stackback (WAL, synchronous)
    checkpoints = WalCheckpoints(engine)
    raw = engine.raw_connection()
    connection = cast(sqlite3.Connection, raw.driver_connection)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    later = (now + timedelta(days=1)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    run_columns = ", ".join(_TICK_RUN_COLUMNS)
    tick_runs = connection.execute(f"SELECT {run_columns} FROM runs").fetchall()
    advanced = connection.execute(
        "SELECT id, next_fire_at, last_fired_at, deferred_fire_at FROM schedules "
        "WHERE last_fired_at = ?",
        (stamp,),
    ).fetchall()
    assert tick_runs and len(tick_runs) == len(advanced), "run the tick phase first"
    due_ids = [row[0] for row in advanced]
    advances = [(nxt, last, deferred, sid) for sid, nxt, last, deferred in advanced]
    insert_runs = (
        f"INSERT INTO runs ({run_columns}) VALUES ({', '.join('?' * len(_TICK_RUN_COLUMNS))}) "
        "ON CONFLICT (policy_id, target, scheduled_for) DO NOTHING"
    )

    def rearm() -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("DELETE FROM runs")
        connection.executemany(
            "UPDATE schedules SET next_fire_at = ?, last_fired_at = NULL, "
            "deferred_fire_at = NULL WHERE id = ?",
            [(stamp, i) for i in due_ids],
        )
        connection.execute("COMMIT")
        checkpoints.empty()

    def same(marks: list[float]) -> int:
        connection.execute("BEGIN IMMEDIATE")
        due = connection.execute(_FLOOR_DUE_QUERY, (stamp,)).fetchall()
        marks.append(time.perf_counter())
        rows = [(str(uuid.uuid4()), *run[1:]) for run in tick_runs]
        count = connection.executemany(insert_runs, rows).rowcount
        marks.append(time.perf_counter())
        connection.executemany(
            "UPDATE schedules SET next_fire_at = ?, last_fired_at = ?, deferred_fire_at = ? "
            "WHERE id = ?",
            advances,
        )
        marks.append(time.perf_counter())
        connection.execute("COMMIT")
        assert len(due) == len(advances)
        return count

    def legacy(marks: list[float]) -> int:
        connection.execute("BEGIN IMMEDIATE")
        due = connection.execute(_LEGACY_DUE_QUERY, (stamp,)).fetchall()
        marks.append(time.perf_counter())
        rows = [
            (str(uuid.uuid4()), policy_id, name, f"t-{schedule_id}", stamp, stamp, stamp)
            for schedule_id, policy_id, name, _targets in due
        ]
        count = connection.executemany(_LEGACY_INSERT, rows).rowcount
        marks.append(time.perf_counter())
        connection.executemany(
            "UPDATE schedules SET next_fire_at = ?, last_fired_at = ? WHERE id = ?",
            [(later, stamp, row[0]) for row in due],
        )
        marks.append(time.perf_counter())
        connection.execute("COMMIT")
        return count

    variants: dict[str, Callable[[list[float]], int]] = {"same": same, "legacy": legacy}
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    checkpoint_samples: dict[str, list[Sample]] = {name: [] for name in variants}
    parts: dict[str, dict[str, list[float]]] = {
        name: {"select": [], "insert": [], "update": [], "commit": []} for name in variants
    }
    for _ in range(options.repeat):
        for name, variant in variants.items():
            rearm()
            with measured(samples[name]) as cell:
                marks = [time.perf_counter()]
                cell[0] = variant(marks)
                marks.append(time.perf_counter())
            with measured(checkpoint_samples[name]) as cell:
                cell[0] = checkpoints.run()
            for part, (before, after) in zip(parts[name], pairwise(marks), strict=True):
                parts[name][part].append((after - before) * 1000)
    raw.close()
    engine.dispose()
    return {
        "path": path,
        **{
            name: {
                "due_tick": summary(samples[name]),
                "checkpoint": summary(checkpoint_samples[name]),
                "parts_ms": {part: statistics.median(v) for part, v in parts[name].items()},
            }
            for name in variants
        },
    }


# -- APScheduler phases ----------------------------------------------------------------------
# -- APScheduler phases ----------------------------------------------------------------------


def _noop(target: str) -> None:
    """The job function; never called (the executor only records the submission)."""


class _FrozenClock(datetime):
    """Stands in for ``datetime`` inside ``apscheduler.schedulers.base`` (its only clock)."""

    instant: ClassVar[datetime] = DEFAULT_NOW

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return cls.instant.astimezone(tz) if tz is not None else cls.instant


def _aps_scheduler(store: str, url: str | None) -> tuple[Any, Any, Any]:
    """A started APScheduler whose wakeups we drive by hand, with a no-op executor."""
    import apscheduler.schedulers.base as aps_base
    from apscheduler.executors.base import BaseExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    class ManualScheduler(aps_base.BaseScheduler):  # type: ignore[misc]
        """BlockingScheduler's loop minus the waiting: we call ``_process_jobs`` ourselves."""

        def wakeup(self) -> None:
            pass

        def shutdown(self, wait: bool = True) -> None:
            super().shutdown(wait)

    class NoopExecutor(BaseExecutor):  # type: ignore[misc]
        """Accepts a submission and reports it finished at once (no thread, no call)."""

        def __init__(self) -> None:
            super().__init__()
            self.submitted = 0

        def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
            self.submitted += 1
            self._run_job_success(job.id, [])

    aps_base.datetime = _FrozenClock  # type: ignore[attr-defined,misc]
    if store == "memory":
        jobstore: Any = MemoryJobStore()
    else:
        from stackback.store.database import create_db_engine

        assert url is not None
        # The same connection settings as stackback's SQLite (WAL, synchronous=NORMAL).
        jobstore = SQLAlchemyJobStore(engine=create_db_engine(url))
    executor = NoopExecutor()
    scheduler = ManualScheduler(
        timezone="UTC",
        jobstores={"default": jobstore},
        executors={"default": executor},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    scheduler.start()
    return scheduler, jobstore, executor


def _aps_add_jobs(options: argparse.Namespace, scheduler: Any) -> tuple[float, int]:
    from apscheduler.triggers.cron import CronTrigger

    now: datetime = options.now
    workload = make_workload(options.policies, options.due_fraction, options.seed, now)
    # While adding, "now" is just after the tick instant: APScheduler computes the first fire
    # time itself for the jobs not due (at or after now + 1 s, like next_after(now)); the due
    # ones get next_run_time=now, as stackback's due schedules get next_fire_at=now.
    _FrozenClock.instant = now + timedelta(microseconds=1)
    started = time.perf_counter()
    for index in range(options.policies):
        trigger = CronTrigger.from_crontab(workload.crons[index], timezone=workload.zones[index])
        extra: dict[str, Any] = {"next_run_time": now} if workload.due[index] else {}
        scheduler.add_job(
            _noop,
            trigger,
            args=(f"server-{index:06d}",),
            id=f"bench-{index:06d}",
            **extra,
        )
    return time.perf_counter() - started, workload.due_count


def _aps_measure(
    options: argparse.Namespace, scheduler: Any, jobstore: Any, executor: Any
) -> Result:
    now: datetime = options.now
    due_ids = [job.id for job in jobstore.get_due_jobs(now)]
    _FrozenClock.instant = now - timedelta(seconds=1)
    for _ in range(3):
        scheduler._process_jobs()
    assert executor.submitted == 0
    rss_warm = rss_mb()
    _FrozenClock.instant = now
    due_samples: list[Sample] = []
    for _ in range(options.repeat):
        for job_id in due_ids:
            scheduler.modify_job(job_id, next_run_time=now)
        submitted_before = executor.submitted
        with measured(due_samples) as cell:
            scheduler._process_jobs()
            cell[0] = executor.submitted - submitted_before
    rss_after_due = rss_mb()
    still_due = len(jobstore.get_due_jobs(now))
    idle_samples: list[Sample] = []
    for _ in range(IDLE_REPEAT):
        submitted_before = executor.submitted
        with measured(idle_samples) as cell:
            scheduler._process_jobs()
            cell[0] = executor.submitted - submitted_before
    return {
        "due": len(due_ids),
        "still_due_after_tick": still_due,
        "due_tick": summary(due_samples),
        "idle_tick": summary(idle_samples),
        "rss_warm_mb": rss_warm,
        "rss_after_ticks_mb": rss_after_due,
        "rss_end_mb": rss_mb(),
    }


def _dump_jobs(jobs: list[Any], url: str) -> float:
    """Bulk-insert job states into a SQLAlchemyJobStore table (as its add_job would write)."""
    import pickle

    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.util import datetime_to_utc_timestamp

    from stackback.store.database import create_db_engine

    engine = create_db_engine(url)
    table = SQLAlchemyJobStore(engine=engine).jobs_t
    table.create(engine, checkfirst=True)
    started = time.perf_counter()
    for first in range(0, len(jobs), INSERT_CHUNK):
        rows = [
            {
                "id": job.id,
                "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                "job_state": pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL),
            }
            for job in jobs[first : first + INSERT_CHUNK]
        ]
        with engine.begin() as connection:
            connection.execute(table.insert(), rows)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def phase_aps_memory(options: argparse.Namespace) -> Result:
    """MemoryJobStore; afterwards (not measured) the jobs seed the SQLAlchemyJobStore phase."""
    rss_start = rss_mb()
    scheduler, jobstore, executor = _aps_scheduler("memory", None)
    add_seconds, due = _aps_add_jobs(options, scheduler)
    gc.collect()
    rss_after_add = rss_mb()
    result = _aps_measure(options, scheduler, jobstore, executor)
    result.update(
        populate_s=add_seconds,
        rss_start_mb=rss_start,
        rss_after_populate_mb=rss_after_add,
    )
    if options.url is not None:
        for index, is_due in enumerate(
            make_workload(options.policies, options.due_fraction, options.seed, options.now).due
        ):
            if is_due:
                scheduler.modify_job(f"bench-{index:06d}", next_run_time=options.now)
        assert len(jobstore.get_due_jobs(options.now)) == due
        result["sql_populate_s"] = _dump_jobs(jobstore.get_all_jobs(), options.url)
    return result


def phase_aps_sql_tick(options: argparse.Namespace) -> Result:
    rss_start = rss_mb()
    scheduler, jobstore, executor = _aps_scheduler("sql", options.url)
    result = _aps_measure(options, scheduler, jobstore, executor)
    result["rss_start_mb"] = rss_start
    return result


def phase_check_agreement(options: argparse.Namespace) -> Result:
    """Do cronsim (stackback) and APScheduler agree on the next fire of a sample?"""
    from apscheduler.triggers.cron import CronTrigger

    from stackback.schedule import CronSchedule

    now: datetime = options.now
    workload = make_workload(options.policies, options.due_fraction, options.seed, now)
    indices = random.Random(options.seed + 2).sample(
        range(options.policies), min(2000, options.policies)
    )
    mismatches: list[str] = []
    for index in indices:
        expr, zone = workload.crons[index], workload.zones[index]
        ours = CronSchedule(expr, zone).next_after(now)
        trigger = CronTrigger.from_crontab(expr, timezone=zone)
        theirs = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        if theirs is None or theirs.astimezone(UTC) != ours:
            mismatches.append(f"{expr} {zone}: stackback {ours}, APScheduler {theirs}")
    return {"checked": len(indices), "mismatches": len(mismatches), "examples": mismatches[:5]}


PHASES: dict[str, Callable[[argparse.Namespace], Result]] = {
    "populate": phase_populate,
    "tick": phase_tick,
    "sqlite-floor": phase_sqlite_floor,
    "aps-memory": phase_aps_memory,
    "aps-sql-tick": phase_aps_sql_tick,
    "agreement": phase_check_agreement,
}


# -- the driver ------------------------------------------------------------------------------


def run_phase(phase: str, options: argparse.Namespace, url: str | None = None) -> Result:
    """Run one phase in a fresh interpreter; it prints its result as the last stdout line."""
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        phase,
        "--policies",
        str(options.policies),
        "--due-fraction",
        str(options.due_fraction),
        "--repeat",
        str(options.repeat),
        "--seed",
        str(options.seed),
        "--now",
        options.now.isoformat(),
    ]
    if url is not None:
        argv += ["--url", url]
    if options.pg_pid is not None:
        argv += ["--pg-pid", str(options.pg_pid)]
    if options.tick_batch is not None:
        argv += ["--tick-batch", str(options.tick_batch)]
    print(f"  [{phase}] running ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise RuntimeError(f"phase {phase} failed (exit {completed.returncode})")
    result: Result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"  [{phase}] done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return result


def start_postgres() -> tuple[Any, str, int | None] | str:
    """Start a private PostgreSQL; returns (cluster, url, postmaster pid) or why not."""
    try:
        from tests.support.pgcluster import PgCluster

        cluster = PgCluster().start()
        url = cluster.create_database("bench_scheduler")
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    pid: int | None = None
    if cluster.data_dir is not None:
        pid_file = Path(cluster.data_dir) / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
    return cluster, url, pid


def _ms(stats: Result) -> str:
    return f"{stats['median']:9.1f} {stats['min']:9.1f}"


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "n/a"


def sweep_ratios(entry: Result) -> dict[str, float]:
    """tick / floor ('same' writes), wall and CPU medians, without and with WAL checkpoints."""
    tick, floor = entry["tick"], entry["floor"]["same"]

    def med(block: Result, measure: str) -> float:
        return float(block[measure]["median"])

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator > 0 else float("nan")

    tick_wall, floor_wall = med(tick["due_tick"], "wall_ms"), med(floor["due_tick"], "wall_ms")
    tick_ckpt, floor_ckpt = med(tick["checkpoint"], "wall_ms"), med(floor["checkpoint"], "wall_ms")
    return {
        "wall": ratio(tick_wall, floor_wall),
        "wall_ckpt": ratio(tick_wall + tick_ckpt, floor_wall + floor_ckpt),
        "cpu": ratio(med(tick["due_tick"], "cpu_ms"), med(floor["due_tick"], "cpu_ms")),
        "legacy_wall": ratio(tick_wall, med(entry["floor"]["legacy"]["due_tick"], "wall_ms")),
    }


def sweep_table(options: argparse.Namespace, sweep: Result) -> list[str]:
    """The SQLite tick against its floor at each due fraction (growth with the due count)."""
    lines = [
        f"SQLite tick / bare-sqlite3 floor for the same writes, by due count "
        f"(medians of {options.repeat}; ms; ckpt = the WAL checkpoint of what it wrote):",
        f"{'due':>7} {'%':>6} {'tick wall':>9} {'+ckpt':>7} {'tick CPU':>8} "
        f"{'floor wall':>10} {'+ckpt':>7} {'floor CPU':>9} {'us/due':>6} "
        f"{'ratio wall':>10} {'+ckpt':>6} {'CPU':>5} {'vs legacy floor':>15}",
    ]
    for fraction in sorted(sweep, key=float):
        entry = sweep[fraction]
        tick, floor = entry["tick"], entry["floor"]["same"]
        ratios = sweep_ratios(entry)
        due = max(tick["due"], 1)
        tick_wall = tick["due_tick"]["wall_ms"]["median"]
        floor_wall = floor["due_tick"]["wall_ms"]["median"]
        lines.append(
            f"{tick['due']:>7,} {float(fraction):>6.1%} {tick_wall:>9.1f} "
            f"{tick_wall + tick['checkpoint']['wall_ms']['median']:>7.1f} "
            f"{tick['due_tick']['cpu_ms']['median']:>8.1f} {floor_wall:>10.1f} "
            f"{floor_wall + floor['checkpoint']['wall_ms']['median']:>7.1f} "
            f"{floor['due_tick']['cpu_ms']['median']:>9.1f} {tick_wall / due * 1000:>6.0f} "
            f"{ratios['wall']:>9.2f}x {ratios['wall_ckpt']:>5.2f}x {ratios['cpu']:>4.2f}x "
            f"{ratios['legacy_wall']:>14.2f}x"
        )
    return lines


def report(options: argparse.Namespace, results: Result) -> list[str]:
    lines: list[str] = []
    due = round(options.policies * options.due_fraction)
    lines.append(
        f"scheduler tick benchmark: {options.policies:,} cron policies, {due:,} due "
        f"({options.due_fraction:.2%}) at {options.now.isoformat()}, repeat {options.repeat} "
        f"(idle: {IDLE_REPEAT}), Python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs"
    )
    agreement = results.get("agreement")
    if agreement:
        lines.append(
            f"next-fire agreement stackback/APScheduler on a sample: "
            f"{agreement['checked'] - agreement['mismatches']}/{agreement['checked']}"
        )
    lines.append("")
    header = (
        f"{'system':<28} {'populate s':>10} {'tick wall med/min ms':>20} "
        f"{'tick CPU med/min ms':>20} {'srv CPU ms':>10} {'runs':>6} "
        f"{'idle wall med ms':>16} {'idle CPU med ms':>15} {'RSS MB':>7}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    labels = {
        "sqlite": "stackback SQLite",
        "postgres": "stackback PostgreSQL",
        "aps_memory": "APScheduler MemoryJobStore",
        "aps_sql": "APScheduler SQLAlchemy/SQLite",
    }
    for key, label in labels.items():
        entry = results.get(key)
        if entry is None:
            continue
        if "skipped" in entry:
            lines.append(f"{label:<28} skipped: {entry['skipped']}")
            continue
        tick, idle = entry["tick"], entry["tick"]["idle_tick"]
        due_tick = tick["due_tick"]
        runs = ",".join(str(c) for c in due_tick["count"])
        lines.append(
            f"{label:<28} {entry['populate']['populate_s']:10.1f} "
            f"{_ms(due_tick['wall_ms']):>20} {_ms(due_tick['cpu_ms']):>20} "
            f"{due_tick['server_cpu_ms']['median']:10.1f} {runs:>6} "
            f"{idle['wall_ms']['median']:16.2f} {idle['cpu_ms']['median']:15.2f} "
            f"{entry['rss_mb']:7.0f}"
        )
    lines.append("")
    lines.append(
        "RSS MB = resident set of the process that ticks, after its ticks (stackback: a fresh "
        "process on the populated database; APScheduler memory store: after adding its jobs)."
    )
    for key in ("sqlite", "postgres", "aps_memory", "aps_sql"):
        entry = results.get(key)
        if entry and "populate" in entry and "cron_s" in entry["populate"]:
            populate = entry["populate"]
            lines.append(
                f"{labels[key]} population: {populate['populate_s']:.1f} s "
                f"(cron parse + next fire {populate['cron_s']:.1f} s, "
                f"inserts {populate['insert_s']:.1f} s), "
                f"{populate['distinct_crons']:,} distinct (cron, zone) pairs"
            )
        elif entry and "populate" in entry and entry["populate"].get("bulk"):
            lines.append(
                f"{labels[key]} population: {entry['populate']['populate_s']:.1f} s "
                "(bulk insert of the memory store's pickled job states, as add_job writes them)"
            )
        elif entry and "populate" in entry:
            lines.append(
                f"{labels[key]} population: {entry['populate']['populate_s']:.1f} s "
                "(CronTrigger.from_crontab + add_job of every job)"
            )
    for key in ("sqlite", "postgres", "aps_memory", "aps_sql"):
        entry = results.get(key)
        if entry and "tick" in entry:
            populate, tick = entry["populate"], entry["tick"]
            lines.append(
                f"{labels[key]} RSS MB: bare interpreter {tick['rss_interpreter_mb']:.0f}, "
                f"populating process {populate['rss_after_populate_mb']:.0f}, "
                f"ticking process after warm-up {tick['rss_warm_mb']:.0f}, "
                f"after due ticks {tick['rss_after_ticks_mb']:.0f}, "
                f"at end {tick['rss_end_mb']:.0f}"
            )
    for key in ("sqlite", "postgres"):
        entry = results.get(key)
        if not entry or "tick" not in entry:
            continue
        tick = entry["tick"]
        due_tick, batch, count = tick["due_tick"], tick["tick_batch"], max(tick["due"], 1)
        batches = -(-count // batch)
        cpu, wall = due_tick["cpu_ms"]["median"], due_tick["wall_ms"]["median"]
        lines.append(
            f"{labels[key]} due tick: {cpu / count * 1000:.0f} us CPU / "
            f"{wall / count * 1000:.0f} us wall per due schedule; "
            f"{batches} transactions of {batch}: "
            f"{cpu / batches:.1f} ms CPU / {wall / batches:.1f} ms wall per transaction; "
            f"first (cold-cache) due tick {tick['first_due_tick']['wall_ms']:.1f} ms wall / "
            f"{tick['first_due_tick']['cpu_ms']:.1f} ms CPU"
        )
    floor = results.get("sqlite_floor")
    if floor:
        for name, what in (
            ("same", "the tick's reads and writes"),
            ("legacy", "earlier sessions' floor: 4 columns read, 7-column runs, next = now + 1 d"),
        ):
            variant = floor[name]
            parts = ", ".join(f"{part} {ms:.1f}" for part, ms in variant["parts_ms"].items())
            lines.append(
                f"SQLite floor '{name}' ({what}; bare sqlite3, one transaction, "
                f"{','.join(str(c) for c in variant['due_tick']['count'])} runs): "
                f"{variant['due_tick']['wall_ms']['median']:.1f} ms wall / "
                f"{variant['due_tick']['cpu_ms']['median']:.1f} ms CPU median ({parts} ms); "
                f"its WAL checkpoint {variant['checkpoint']['wall_ms']['median']:.1f} ms wall "
                f"({','.join(str(c) for c in variant['checkpoint']['count'])} pages)"
            )
    lines.append("")
    sweep = results.get("sweep") or {}
    headline: float | None = None
    if sweep:
        lines.extend(sweep_table(options, sweep))
        main = sweep.get(str(options.due_fraction))
        if main is not None:
            headline = sweep_ratios(main)["wall_ckpt"]
    lines.append("")
    sqlite = results.get("sqlite")
    memory = results.get("aps_memory")
    verdicts: list[str] = []
    if headline is not None:
        ok = headline <= TARGET_FLOOR_RATIO
        verdicts.append(
            f"SQLite tick at {options.due_fraction:.1%} due / floor for the same writes "
            f"(wall medians, WAL checkpoints included) {headline:.2f}x "
            f"{'<=' if ok else '>'} {TARGET_FLOOR_RATIO:.0f}x: {'MET' if ok else 'NOT MET'}"
        )
    for key in ("sqlite", "postgres"):
        ours = results.get(key)
        if not ours or "tick" not in ours:
            continue
        our_cpu = ours["tick"]["due_tick"]["cpu_ms"]["median"]
        our_total = our_cpu + ours["tick"]["due_tick"]["server_cpu_ms"]["median"]
        for other_key in ("aps_memory", "aps_sql"):
            other = results.get(other_key)
            if not other or "tick" not in other:
                continue
            their_cpu = other["tick"]["due_tick"]["cpu_ms"]["median"]
            their_idle = other["tick"]["idle_tick"]["cpu_ms"]["median"]
            our_idle = ours["tick"]["idle_tick"]["cpu_ms"]["median"]
            total = (
                f", incl. PostgreSQL server CPU {_ratio(their_cpu, our_total)}"
                if (key == "postgres")
                else ""
            )
            lines.append(
                f"ratio {labels[other_key]} / {labels[key]}: due-tick CPU "
                f"{_ratio(their_cpu, our_cpu)}{total}; idle CPU {_ratio(their_idle, our_idle)}; "
                f"RSS {_ratio(other['rss_mb'], ours['rss_mb'])}"
            )
    if sqlite and memory and "tick" in sqlite and "tick" in memory:
        ratio = (
            memory["tick"]["due_tick"]["cpu_ms"]["median"]
            / sqlite["tick"]["due_tick"]["cpu_ms"]["median"]
        )
        ok = ratio >= TARGET_CPU_RATIO
        verdicts.append(
            f"APScheduler (memory store) / stackback SQLite due-tick CPU {ratio:.2f}x "
            f"{'>=' if ok else '<'} {TARGET_CPU_RATIO:.0f}x: {'MET' if ok else 'NOT MET'}"
        )
    lines.append("")
    lines.append("VERDICT: " + ("; ".join(verdicts) if verdicts else "no target evaluated"))
    return lines


def drive(options: argparse.Namespace) -> int:
    results: Result = {}
    workdir = Path(tempfile.mkdtemp(prefix="stackback-bench-"))
    options.pg_pid = None
    try:
        if not options.no_apscheduler:
            results["agreement"] = run_phase("agreement", options)

        sqlite_url = f"sqlite:///{workdir / 'stackback.db'}"
        populate = run_phase("populate", options, sqlite_url)
        tick = run_phase("tick", options, sqlite_url)
        results["sqlite"] = {"populate": populate, "tick": tick, "rss_mb": tick["rss_end_mb"]}
        results["sqlite_floor"] = run_phase("sqlite-floor", options, sqlite_url)
        results["sweep"] = {
            str(options.due_fraction): {"tick": tick, "floor": results["sqlite_floor"]}
        }
        for fraction in options.sweep:
            if fraction == options.due_fraction or round(options.policies * fraction) < 1:
                continue
            swept = argparse.Namespace(**{**vars(options), "due_fraction": fraction})
            url = f"sqlite:///{workdir / f'sweep-{fraction}.db'}"
            run_phase("populate", swept, url)
            results["sweep"][str(fraction)] = {
                "tick": run_phase("tick", swept, url),
                "floor": run_phase("sqlite-floor", swept, url),
            }
            for leftover in workdir.glob(f"sweep-{fraction}.db*"):
                leftover.unlink()

        if options.no_postgres:
            results["postgres"] = {"skipped": "--no-postgres"}
        else:
            started = start_postgres()
            if isinstance(started, str):
                results["postgres"] = {"skipped": f"PostgreSQL could not start ({started})"}
            else:
                cluster, pg_url, pg_pid = started
                try:
                    populate = run_phase("populate", options, pg_url)
                    options.pg_pid = pg_pid
                    tick = run_phase("tick", options, pg_url)
                    options.pg_pid = None
                    results["postgres"] = {
                        "populate": populate,
                        "tick": tick,
                        "rss_mb": tick["rss_end_mb"],
                    }
                finally:
                    cluster.stop()

        if options.no_apscheduler:
            results["aps_memory"] = {"skipped": "--no-apscheduler"}
        else:
            aps_url = f"sqlite:///{workdir / 'apscheduler.db'}"
            memory = run_phase("aps-memory", options, aps_url)
            results["aps_memory"] = {
                "populate": memory,
                "tick": memory,
                "rss_mb": memory["rss_end_mb"],
            }
            tick = run_phase("aps-sql-tick", options, aps_url)
            sql_populate = {
                "populate_s": memory["sql_populate_s"],
                "rss_after_populate_mb": memory["rss_end_mb"],
                "bulk": True,
            }
            results["aps_sql"] = {
                "populate": sql_populate,
                "tick": tick,
                "rss_mb": tick["rss_end_mb"],
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("\n".join(report(options, results)))
    if options.json:
        options_json = {
            "policies": options.policies,
            "due_fraction": options.due_fraction,
            "repeat": options.repeat,
            "tick_batch": options.tick_batch,
            "seed": options.seed,
            "now": options.now.isoformat(),
            "sweep": options.sweep,
        }
        print(json.dumps({"options": options_json, "results": results}, sort_keys=True))
    return 0


def _fractions(text: str) -> list[float]:
    try:
        fractions = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of fractions: {text!r}") from None
    if not all(0.0 < f <= 1.0 for f in fractions):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1]: {text!r}")
    return fractions


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--policies", type=int, default=100_000, help="cron policies (100,000)")
    parser.add_argument(
        "--due-fraction", type=float, default=0.01, help="fraction due at the tick (0.01)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="due ticks per system (5)")
    parser.add_argument(
        "--sweep",
        type=_fractions,
        default=_fractions(DEFAULT_SWEEP),
        help=f"due fractions of the SQLite tick/floor table ({DEFAULT_SWEEP}; '' for none)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--no-apscheduler", action="store_true", help="skip APScheduler")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--tick-batch",
        type=int,
        default=None,
        help="stackback schedules per tick transaction (EngineSettings.tick_batch, default 500)",
    )
    parser.add_argument("--seed", type=int, default=20250304, help=argparse.SUPPRESS)
    parser.add_argument(
        "--now", type=datetime.fromisoformat, default=DEFAULT_NOW, help=argparse.SUPPRESS
    )
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pg-pid", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.policies < 1:
        parser.error("--policies must be at least 1")
    if not 0.0 <= options.due_fraction <= 1.0:
        parser.error("--due-fraction must be between 0 and 1")
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    if options.tick_batch is not None and options.tick_batch < 1:
        parser.error("--tick-batch must be at least 1")
    if options.now.tzinfo is None:
        parser.error("--now must be timezone-aware")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.phase is not None:
        interpreter_rss = rss_mb()  # a bare interpreter with psutil, before the phase's imports
        result = PHASES[options.phase](options)
        result["rss_interpreter_mb"] = interpreter_rss
        print(json.dumps(result))
        return 0
    return drive(options)


if __name__ == "__main__":
    sys.exit(main())
