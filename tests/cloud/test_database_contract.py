"""The database (Trove) contract on the simulator and on Trove's own API code in fake mode.

The Trove runs use ``tests/cloud/plane/trove_fake.py`` (a pinned ``trove`` in a cached
virtualenv, on 127.0.0.1, over SQLite with WAL and a busy timeout), started once per
session; marked ``trove`` (and ``slow``: about 2 minutes, the fake guest takes 10 s a backup).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from keystoneauth1 import adapter, session, token_endpoint

from stackback.clock import VirtualClock
from stackback.cloud.openstack import OpenStackCloud
from stackback.cloud.simulator import SimulatedCloud
from stackback.ports import Cloud, DatabaseInfo
from tests.cloud.database_contract import DatabaseContract

LAUNCHER = Path(__file__).parent / "plane" / "trove_fake.py"


class SimDatabaseHarness:
    def __init__(self, path: Path) -> None:
        self.clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
        self.sim = SimulatedCloud(path, self.clock, project="alpha")
        self.cloud: Cloud = self.sim

    def create_instance(self, name: str) -> DatabaseInfo:
        return self.sim.create_database(name)

    def wait_for(self, what: str, predicate: Callable[[], bool]) -> None:
        for _ in range(200):
            if predicate():
                return
            self.clock.advance(5)
        raise AssertionError(f"timed out waiting for {what}")


class TestSimulatedTrove(DatabaseContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[SimDatabaseHarness]:
        harness = SimDatabaseHarness(tmp_path / "sim.sqlite")
        yield harness
        harness.sim.close()


class TroveConnection:
    """What the adapter's Trove calls use of an openstacksdk connection, over a
    keystoneauth adapter with Trove's fake token (its fake mode has no Keystone)."""

    current_project_id = "admin"

    def __init__(self, endpoint: str, token: str) -> None:
        auth = token_endpoint.Token(endpoint, token)
        self.database = adapter.Adapter(session.Session(auth=auth), endpoint_override=endpoint)

    def has_service(self, name: str) -> bool:
        return name == "database"


class TroveHarness:
    def __init__(self, info: dict[str, Any]) -> None:
        conn = TroveConnection(info["endpoint"], info["token"])
        self.cloud: Cloud = OpenStackCloud(lambda: conn, cloud_name="trove-fake")  # type: ignore[arg-type,return-value]
        self.adapter = conn.database

    def create_instance(self, name: str) -> DatabaseInfo:
        body = {
            "instance": {
                "name": name,
                "flavorRef": "2",
                "volume": {"size": 1},
                "datastore": {"type": "mysql", "version": "5.7"},
            }
        }
        response = self.adapter.request("/instances", "POST", json=body)
        instance_id = str(response.json()["instance"]["id"])
        cloud = self.cloud
        assert isinstance(cloud, OpenStackCloud)
        self.wait_for(
            f"instance {name} to be ACTIVE",
            lambda: cloud.get_database(instance_id).status == "ACTIVE",
        )
        return cloud.get_database(instance_id)

    def wait_for(self, what: str, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def trove_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    rundir = tmp_path_factory.mktemp("trove-fake")
    db_url = f"sqlite:///{rundir / 'trove.sqlite'}"
    started = subprocess.run(
        [sys.executable, str(LAUNCHER), "start", "--dir", str(rundir), "--db", db_url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if started.returncode != 0:
        pytest.fail(f"trove fake mode did not start: {started.stderr[-2000:]}")
    try:
        yield json.loads(started.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run([sys.executable, str(LAUNCHER), "stop", "--dir", str(rundir)], check=False)


@pytest.mark.trove
@pytest.mark.slow
class TestTroveFakeMode(DatabaseContract):
    @pytest.fixture
    def harness(self, trove_fake: dict[str, Any]) -> TroveHarness:
        return TroveHarness(trove_fake)
