"""The demo scenario: months of a GFS policy on the simulator, in seconds.

Everything real but the cloud and the clock: the SQLite store, the
scheduler, the workers, the retention and the deletion collector run as in
``stackback serve``; the simulated cloud runs on a virtual clock that jumps
from one event to the next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

from stackback.clock import VirtualClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig, SimFaults
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudError, CloudUnavailable, InvalidInput
from stackback.policy import Backup, BackupKind, BackupStatus, Run, RunState
from stackback.restoreplan import RestoreJob, RestoreOverrides
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.services.restores import RestoreService
from stackback.services.verify import VerifyScheduler, VerifyService
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import BackupFilter, RunFilter, SqlStore
from stackback.verification import VerifyChecks

T = TypeVar("T")


def _retrying(start: Callable[[], T], attempts: int = 5) -> T:
    """``start``, asked again after a transient cloud error (the demo injects some)."""
    for _ in range(attempts - 1):
        try:
            return start()
        except CloudError as error:
            if not error.retryable:
                raise
    return start()


DEMO_START = datetime(2025, 11, 1, tzinfo=UTC)
GFS = RetentionPolicy(daily=7, weekly=4, monthly=12, yearly=2)
VERIFY_CRON = "0 3 1 * *"
VERIFY_NETWORK = "isolated"
DATABASE_POLICY = "orders-db"
"""The demo's Trove database: daily incremental backups on a weekly full."""
DATABASE_RETENTION = RetentionPolicy(daily=14, weekly=8)
"""GFS over chains: a kept incremental keeps its full and the incrementals between (kept
"for the chain"); a week's chain is forgotten, newest first, once none of it is kept."""
DEMO_MARK = ".stackback-demo"
"""Marks a directory the demo made: a later demo may replace its ``DEMO_FILES`` there."""
DEMO_FILES = tuple(
    f"{base}{suffix}" for base in ("stackback.db", "sim.sqlite") for suffix in ("", "-wal", "-shm")
)


@dataclass
class DemoEvent:
    day: int
    text: str


@dataclass
class DemoVerification:
    """The finale's verification of one server's newest backup."""

    server: str
    backup_id: str
    result: str
    reason: str | None
    active_seconds: float | None


@dataclass
class DemoRestore:
    """The finale's restore of a deleted server from its newest backup."""

    server: str
    backup_id: str
    restore_id: str
    state: str
    server_id: str | None
    seconds: float | None
    error: str | None = None


@dataclass
class DemoResult:
    """What the demo did, for the summary."""

    runs_by_state: Counter[str]
    kept: dict[str, list[Backup]]
    rotated: dict[str, int]
    failures: list[Run]
    missed: int
    events: list[DemoEvent] = field(default_factory=list)
    db_path: Path | None = None
    simulated_days: int = 0
    verifications: list[DemoVerification] = field(default_factory=list)
    scheduled_verifications: dict[str, int] = field(default_factory=dict)
    """Verdicts of the policy's monthly verifications, by result."""
    restored: DemoRestore | None = None
    chains: dict[str, list[list[Backup]]] = field(default_factory=dict)
    """Database targets: their kept backups as chains (a full, then its incrementals)."""
    forgotten_chains: dict[str, list[list[Backup]]] = field(default_factory=dict)
    """Database targets: their deleted backups as chains, what retention forgot."""


def chains_of(backups: list[Backup]) -> list[list[Backup]]:
    """Backups grouped by chain, oldest first: each chain's full (or its oldest kept
    member), then the incrementals built on it."""
    by_id = {b.id: b for b in backups}
    grouped: dict[str, list[Backup]] = {}
    for backup in sorted(backups, key=lambda b: b.created_at):
        root = backup
        while root.parent_id is not None and root.parent_id in by_id:
            root = by_id[root.parent_id]
        grouped.setdefault(root.id, []).append(backup)
    return list(grouped.values())


@dataclass
class Demo:
    """Sets up servers and a GFS policy, then lives through ``days`` simulated days."""

    directory: Path
    days: int = 180
    seed: int = 42

    def __post_init__(self) -> None:
        self._claim_directory()
        self.db_path = self.directory / "stackback.db"
        self.clock = VirtualClock(DEMO_START)
        engine = create_db_engine(f"sqlite:///{self.db_path}")
        upgrade(engine)
        self.store = SqlStore(engine)
        self.sim = SimulatedCloud(self.directory / "sim.sqlite", self.clock, seed=self.seed)
        self.sim.configure(SimConfig(faults=SimFaults(error_rate=0.01)))
        self.engine = Engine(
            self.store,
            lambda _name: self.sim,
            self.clock,
            EngineSettings(poll_interval=timedelta(seconds=60)),
            worker_name="demo-worker",
            verifier=VerifyScheduler(self.store, lambda _name: self.sim, self.clock),
        )
        self.events: list[DemoEvent] = []

    def _claim_directory(self) -> None:
        """Use a new or empty directory, or one an earlier demo made (its files are replaced).

        Anything else may be someone's real state: it is refused, never overwritten.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        present = {path.name for path in self.directory.iterdir()}
        if present and DEMO_MARK not in present:
            raise InvalidInput(
                f"demo directory {self.directory} is not empty and has no {DEMO_MARK} mark "
                "(demos before 2026-11-29 left none): give a new or empty directory",
                field="dir",
            )
        (self.directory / DEMO_MARK).write_text(
            f"made by `stackback demo`; a later demo here replaces {', '.join(DEMO_FILES)}\n"
        )
        for name in DEMO_FILES:
            (self.directory / name).unlink(missing_ok=True)

    def setup(self) -> None:
        self.web1 = self.sim.create_server("web-1", metadata={"backup": "gfs"})
        self.web2 = self.sim.create_server("web-2", metadata={"backup": "gfs"})
        self.db1 = self.sim.create_server(
            "db-1", metadata={"backup": "gfs"}, volume_backed=True, volumes=2
        )
        self.app1 = self.sim.create_server("app-1", metadata={"backup": "gfs"})
        PolicyService(self.store, self.clock).create(
            PolicySpec(
                name="gfs",
                selector="backup=gfs",
                schedules=("0 1 * * *",),
                timezone="Europe/Amsterdam",
                window_minutes=30,
                retention=GFS,
                verify_cron=VERIFY_CRON,
                verify_network=VERIFY_NETWORK,
                verify_pick="random-of-7",
            )
        )
        self.orders = self.sim.create_database("orders-db", datastore="mysql", version="8.0")
        PolicyService(self.store, self.clock).create(
            PolicySpec(
                name=DATABASE_POLICY,
                targets=("orders-db",),
                kind="database-backup",
                schedules=("0 2 * * *",),
                timezone="Europe/Amsterdam",
                window_minutes=30,
                retention=DATABASE_RETENTION,
                full_cron="0 0 * * 0",
            )
        )

    def _faults(self, day: int) -> None:
        if day == 20:
            self.sim.busy_storm(self.web1.id, 5)
            self.events.append(DemoEvent(day, "web-1: a storm of 409 'server busy' answers"))
        if day == 45:
            self.sim.kill_next_image(self.web2.id)
            self.events.append(
                DemoEvent(day, "web-2: the next snapshot fails (Nova deletes its image)")
            )
        if day == 75:
            self.sim.fail_next("find_servers", CloudUnavailable, count=3)
            self.events.append(
                DemoEvent(
                    day,
                    "Nova answers 503 to the server listing 3 times: the night's runs "
                    "wait and ask again (30 s, 30 s, 60 s), then run",
                )
            )
        if day == 200:
            self.sim.delete_server(self.app1.id)
            self.events.append(
                DemoEvent(day, "app-1 deleted by its owner: no more runs, its backups stay")
            )

    def run(self, progress: Callable[[int, Counter[str]], None] | None = None) -> DemoResult:
        self.setup()
        outage = range(120, 123)
        for day in range(1, self.days + 1):
            self._faults(day)
            until = DEMO_START + timedelta(days=day)
            if day in outage:
                self.clock.advance_to(until)
                if day == outage.start:
                    self.events.append(
                        DemoEvent(day, "stackback is down for 3 days: those runs are missed")
                    )
                continue
            self.engine.drain(until)
            if progress:
                progress(day, Counter(self.store.count_runs_by_state()))
        scheduled = Counter(
            job.verify_result or job.state.value for job in self.store.list_restores(limit=10_000)
        )
        verifications = self.verify_each_server()
        restored = self.restore_a_deleted_server()
        result = self.summary()
        result.scheduled_verifications = dict(scheduled)
        result.verifications = verifications
        result.restored = restored
        return result

    def _newest(self) -> dict[str, Backup]:
        newest: dict[str, Backup] = {}
        for backup in self.store.list_backups(
            BackupFilter(statuses=(BackupStatus.AVAILABLE,), limit=None)
        ):
            if backup.kind is not BackupKind.DATABASE_BACKUP:  # servers only
                newest.setdefault(backup.target, backup)
        return newest

    def _until_done(self, job_ids: list[str]) -> list[RestoreJob]:
        """Let the engine carry the jobs out (a few simulated minutes)."""
        for _ in range(100):
            jobs = [self.store.get_restore(job_id) for job_id in job_ids]
            if all(job.state.is_terminal for job in jobs):
                return jobs
            self.engine.drain(self.clock.now() + timedelta(minutes=1))
        return [self.store.get_restore(job_id) for job_id in job_ids]

    def verify_each_server(self) -> list[DemoVerification]:
        """Verify the newest backup of every server: booted on an isolated network, its
        console log and its port 22 checked, then removed."""
        service = VerifyService(self.store, lambda _name: self.sim, self.clock)
        checks = VerifyChecks(console_contains="LAST LINE", port=22)
        newest = self._newest()
        started = [
            _retrying(partial(service.start, b.id, network=VERIFY_NETWORK, checks=checks)).id
            for b in newest.values()
        ]
        self._until_done(started)
        results = []
        for target, backup in sorted(newest.items()):
            verification = self.store.get_backup(backup.id).verification
            results.append(
                DemoVerification(
                    server=backup.target_name or target,
                    backup_id=backup.id,
                    result=verification.result.value if verification else "unknown",
                    reason=verification.reason if verification else None,
                    active_seconds=verification.active_seconds if verification else None,
                )
            )
        self.events.append(
            DemoEvent(
                self.days,
                f"the newest backup of each of {len(results)} servers verified: booted on "
                "an isolated network, console and port 22 checked, then removed",
            )
        )
        return results

    def restore_a_deleted_server(self) -> DemoRestore | None:
        """web-2 is deleted by mistake; it comes back, same name, from its newest backup."""
        backup = self._newest().get(self.web2.id)
        if backup is None:
            return None
        self.sim.delete_server(self.web2.id)
        self.events.append(DemoEvent(self.days, "web-2 deleted by mistake: restored as new"))
        service = RestoreService(self.store, lambda _name: self.sim, self.clock)
        job = _retrying(lambda: service.start(backup.id, overrides=RestoreOverrides("web-2")))
        (job,) = self._until_done([job.id])
        seconds = (
            (job.finished_at - job.started_at).total_seconds()
            if job.finished_at and job.started_at
            else None
        )
        return DemoRestore(
            "web-2", backup.id, job.id, job.state.value, job.server_id, seconds, job.error
        )

    def summary(self) -> DemoResult:
        runs = self.store.list_runs(RunFilter(limit=1_000_000))
        by_state = Counter(r.state.value for r in runs)
        backups = self.store.list_backups(BackupFilter(include_deleted=True, limit=1_000_000))
        kept: dict[str, list[Backup]] = {}
        deleted: dict[str, list[Backup]] = {}
        rotated: Counter[str] = Counter()
        for backup in backups:
            name = backup.target_name or backup.target
            if backup.status is BackupStatus.AVAILABLE:
                kept.setdefault(name, []).append(backup)
            elif backup.status is BackupStatus.DELETED:
                rotated[name] += 1
                deleted.setdefault(name, []).append(backup)
        databases = {
            backup.target_name or backup.target
            for backup in backups
            if backup.kind is BackupKind.DATABASE_BACKUP
        }
        return DemoResult(
            runs_by_state=by_state,
            kept=dict(sorted(kept.items())),
            rotated=dict(rotated),
            failures=[r for r in runs if r.state is RunState.FAILED],
            missed=by_state.get(RunState.MISSED.value, 0),
            events=self.events,
            db_path=self.db_path,
            simulated_days=self.days,
            chains={name: chains_of(kept.get(name, [])) for name in sorted(databases)},
            forgotten_chains={name: chains_of(deleted.get(name, [])) for name in sorted(databases)},
        )

    def close(self) -> None:
        self.sim.close()
        self.store.dispose()
