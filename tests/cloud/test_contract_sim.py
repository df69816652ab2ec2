"""The Cloud contract, run against the simulator on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackback.clock import VirtualClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.ports import Cloud, GroupCloud, RestoreCloud, ServerInfo, VolumeCloud
from tests.cloud.contract import (
    CloudContract,
    CloudHarness,
    ConsistencyContract,
    GroupContract,
    RestoreContract,
    VolumeContract,
)

STEP_S = 5.0


class SimHarness:
    """A :class:`CloudHarness` over one simulator file; waiting advances virtual time."""

    def __init__(self, path: Path, clock: VirtualClock) -> None:
        self.clock = clock
        self.sim = SimulatedCloud(path, clock, project="alpha")
        self.cloud: Cloud = self.sim
        self.restore_cloud: RestoreCloud = self.sim
        self.flavor = "m1.small"
        self.network = "private"
        self.other_project_cloud: Cloud = SimulatedCloud(path, clock, project="beta")
        self.volume_cloud: VolumeCloud = self.sim
        self.backups_unavailable: str | None = None
        self.group_cloud: GroupCloud = self.sim
        self.group_artifacts: Cloud = self.sim

    def create_volume_group(self, consistent: bool, volumes: int) -> tuple[str, tuple[str, ...]]:
        specs = {"consistent_group_snapshot_enabled": "<is> True"} if consistent else {}
        group_type = self.sim.create_group_type("contract-type", specs)
        members = tuple(self.create_volume(f"contract-grouped-{i}") for i in range(volumes))
        return self.sim.create_volume_group("contract-group", group_type, members), members

    def create_volume(self, name: str, metadata: Mapping[str, str] | None = None) -> str:
        return self.sim.create_volume_standalone(name, metadata=metadata).id

    def delete_volume(self, volume_id: str) -> None:
        self.sim.delete_volume(volume_id)

    @contextmanager
    def failing_backups(self, volume_id: str) -> Iterator[None]:
        self.sim.kill_next_volume_backup(volume_id)
        yield

    def create_server(
        self,
        name: str,
        metadata: Mapping[str, str] | None = None,
        volume_backed: bool = False,
    ) -> ServerInfo:
        return self.sim.create_server(name, metadata=metadata, volume_backed=volume_backed)

    def create_server_with_data_volume(self, name: str) -> ServerInfo:
        return self.sim.create_server(name, volume_backed=True, volumes=1)

    def image_of(self, server_id: str) -> str | None:
        return self.sim.server_image(server_id)

    def delete_server(self, server_id: str) -> None:
        self.sim.delete_server(server_id)

    def attach_new_volume(self, server_id: str) -> str:
        return self.sim.add_volume(server_id)

    def set_server_metadata(self, server_id: str, metadata: Mapping[str, str]) -> None:
        self.sim.set_server_metadata(server_id, metadata)

    def delete_server_metadata(self, server_id: str, key: str) -> None:
        self.sim.delete_server_metadata(server_id, key)

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        waited = 0.0
        while not predicate():
            if waited >= timeout_s:
                raise AssertionError(f"condition not met within {timeout_s} simulated seconds")
            self.clock.advance(STEP_S)
            waited += STEP_S

    @contextmanager
    def slow_uploads(self) -> Iterator[None]:
        normal = self.sim.config()
        self.sim.configure(replace(normal, image_base_seconds=normal.image_base_seconds + 120))
        try:
            yield
        finally:
            self.sim.configure(normal)

    @contextmanager
    def slow_snapshot_deletes(self) -> Iterator[None]:
        normal = self.sim.config()
        self.sim.configure(replace(normal, snapshot_delete_seconds=60))
        try:
            yield
        finally:
            self.sim.configure(normal)


@pytest.fixture
def harness(tmp_path: Path) -> CloudHarness:
    clock = VirtualClock(datetime(2025, 3, 30, 0, 30, tzinfo=UTC))
    return SimHarness(tmp_path / "cloud.sqlite", clock)


class TestSimulatedCloudContract(
    CloudContract, RestoreContract, ConsistencyContract, VolumeContract, GroupContract
):
    pass
