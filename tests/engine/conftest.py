"""An engine over a real store (SQLite or PostgreSQL) and the simulator on a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stackback.clock import VirtualClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.services.policies import PolicyService
from stackback.store.sql import SqlStore


@dataclass
class Rig:
    store: SqlStore
    sim: SimulatedCloud
    clock: VirtualClock
    engine: Engine
    policies: PolicyService


@pytest.fixture
def rig(store: SqlStore, clock: VirtualClock, tmp_path: Path) -> Iterator[Rig]:
    sim = SimulatedCloud(tmp_path / "sim.sqlite", clock, project="demo", seed=7)
    engine = Engine(store, lambda _name: sim, clock, EngineSettings(), worker_name="w-test")
    yield Rig(store, sim, clock, engine, PolicyService(store, clock))
    sim.close()
