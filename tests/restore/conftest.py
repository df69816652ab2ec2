"""Restore jobs over a real store and the simulator on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from stackback.clock import VirtualClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.engine.loop import Engine
from stackback.engine.restore import RestoreRunner
from stackback.engine.settings import EngineSettings
from stackback.policy import Backup, RunState
from stackback.ports import MARKER_RESTORE
from stackback.services.backups import BackupService
from stackback.services.restores import RestoreService
from stackback.store.sql import SqlStore


@dataclass
class RestoreRig:
    store: SqlStore
    sim: SimulatedCloud
    clock: VirtualClock
    engine: Engine
    backups: BackupService
    restores: RestoreService

    def runner(self, cloud: object | None = None, owner: str = "w-restore") -> RestoreRunner:
        chosen = cloud if cloud is not None else self.sim
        return RestoreRunner(self.store, lambda _name: chosen, self.clock, owner=owner)  # type: ignore[arg-type,return-value]

    def backup(self, server: str, *, label: str | None = None, keep: int | None = None) -> Backup:
        run = self.backups.backup_now(server, label=label, keep_last=keep, cloud=None)
        self.engine.drain(self.clock.now() + timedelta(hours=1))
        run = self.store.get_run(run.id)
        assert run.state is RunState.SUCCEEDED, run.error
        assert run.backup_id is not None
        return self.store.get_backup(run.backup_id)

    def inventory(self) -> tuple[int, int]:
        """(servers, volumes) of the project, whoever made them."""
        with self.sim._db.transaction() as conn:
            servers = conn.execute("SELECT count(*) FROM servers").fetchone()[0]
            volumes = conn.execute("SELECT count(*) FROM volumes").fetchone()[0]
        return int(servers), int(volumes)

    def marked(self, restore_id: str) -> list[str]:
        return [r.kind for r in self.sim.find_restored(restore_id)]


@pytest.fixture
def rig(store: SqlStore, clock: VirtualClock, tmp_path: Path) -> Iterator[RestoreRig]:
    sim = SimulatedCloud(tmp_path / "sim.sqlite", clock, project="demo", seed=3)
    sim.configure(replace(sim.config(), server_boot_seconds=20.0, volume_create_seconds=10.0))
    engine = Engine(store, lambda _name: sim, clock, EngineSettings(), worker_name="w-test")
    clouds: Callable[[str | None], SimulatedCloud] = lambda _name: sim  # noqa: E731
    yield RestoreRig(
        store,
        sim,
        clock,
        engine,
        BackupService(store, clouds, clock),
        RestoreService(store, clouds, clock),
    )
    sim.close()


__all__ = ["MARKER_RESTORE", "RestoreRig"]
