"""The per-host limit of concurrent snapshots, through the engine and the simulator.

The simulator's hosts here take at most two snapshots at once and answer 409 to a
third (``host_snapshot_capacity``): with ``max_snapshots_per_host`` the engine never
asks for a third; without it, its runs meet the 409s (and retry them).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig
from stackback.cloud.simulator.model import SimImage
from stackback.config import load_settings
from stackback.engine.loop import Engine
from stackback.engine.runner import HOST_FULL
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudBusy, InvalidInput, WaitTimedOut
from stackback.policy import Policy, RunState
from stackback.ports import ServerInfo
from stackback.retention import RetentionPolicy
from stackback.services.container import Services
from stackback.services.policies import PolicySpec
from stackback.store.sql import RunFilter
from tests.engine.conftest import Rig

HOSTS = {"compute-a": 5, "compute-b": 2}


def _limited(rig: Rig, limit: int | None, **config: object) -> None:
    rig.sim.configure(replace(SimConfig(), **{"host_snapshot_capacity": 2, **config}))
    settings = EngineSettings(max_snapshots_per_host=limit)
    rig.engine = Engine(rig.store, lambda _name: rig.sim, rig.clock, settings, worker_name="w")


def _servers(rig: Rig, disk_gb: float = 30.0) -> list[ServerInfo]:
    return [
        rig.sim.create_server(f"{host}-{n}", host=host, disk_gb=disk_gb)
        for host, count in HOSTS.items()
        for n in range(count)
    ]


def _nightly(rig: Rig, servers: list[ServerInfo], window: int = 60) -> Policy:
    return rig.policies.create(
        PolicySpec(
            name="nightly",
            targets=tuple(s.id for s in servers),
            schedules=("0 1 * * *",),
            timezone="UTC",
            window_minutes=window,
            retention=RetentionPolicy(last=3),
        )
    )


def _next_one_am(rig: Rig) -> datetime:
    now = rig.clock.now()
    one_am = now.replace(hour=1, minute=0, second=0, microsecond=0)
    return one_am if one_am > now else one_am + timedelta(days=1)


def _most_at_once(images: list[SimImage]) -> int:
    """The most snapshots in progress at one instant on one host (from created to active)."""
    most = 0
    for image in images:
        assert image.created_at is not None and image.ready_at is not None
        at = image.created_at
        most = max(
            most,
            sum(
                1
                for other in images
                if other.host == image.host
                and other.created_at is not None
                and other.ready_at is not None
                and other.created_at <= at < other.ready_at
            ),
        )
    return most


def test_the_engine_keeps_each_host_within_its_limit(rig: Rig) -> None:
    _limited(rig, 2)
    servers = _servers(rig)
    _nightly(rig, servers)
    rig.engine.drain(_next_one_am(rig) + timedelta(hours=2))

    runs = rig.store.list_runs(RunFilter(limit=100))
    assert [r.state for r in runs] == [RunState.SUCCEEDED] * len(servers)
    images = rig.sim.images()
    assert len(images) == len(servers)
    assert _most_at_once(images) == 2
    assert {r.host for r in runs} == {s.host for s in servers}
    assert all(not any(s.outcome == "retry" for s in r.steps) for r in runs)  # no 409 met


def test_without_the_limit_the_runs_meet_the_hosts_409s(rig: Rig) -> None:
    _limited(rig, None)
    servers = _servers(rig)
    _nightly(rig, servers, window=0)
    rig.engine.drain(_next_one_am(rig) + timedelta(hours=2))

    runs = rig.store.list_runs(RunFilter(limit=100))
    retried = [r for r in runs if any(s.outcome == "retry" for s in r.steps)]
    assert retried
    assert all("cloud-busy" in s.detail for r in retried for s in r.steps if s.outcome == "retry")


def test_with_a_limit_runs_are_due_at_the_fire_time_and_paced_by_their_hosts(rig: Rig) -> None:
    _limited(rig, 2)
    servers = _servers(rig)
    _nightly(rig, servers)
    fire = _next_one_am(rig)
    rig.engine.drain(fire)

    runs = rig.store.list_runs(RunFilter(limit=100))
    assert {r.due_at for r in runs} == {fire}
    started = sorted(r.started_at for r in runs if r.state is not RunState.PENDING)
    deferred = [r for r in runs if r.state is RunState.PENDING]
    assert len(deferred) == len(servers) - 2 * len(HOSTS)
    assert all(r.host is not None and r.lease_owner is None for r in deferred)
    assert started


def test_a_run_whose_host_stays_full_past_its_window_is_missed_saying_why(rig: Rig) -> None:
    _limited(rig, 1)
    slow = [  # 100-minute uploads: the second cannot start within a 30-minute window
        rig.sim.create_server(f"slow-{n}", host="compute-a", disk_gb=600.0) for n in range(2)
    ]
    _nightly(rig, slow, window=30)
    rig.engine.drain(_next_one_am(rig) + timedelta(hours=4))

    runs = rig.store.list_runs(RunFilter(limit=10))
    assert sorted(r.state for r in runs) == sorted([RunState.SUCCEEDED, RunState.MISSED])
    [missed] = [r for r in runs if r.state is RunState.MISSED]
    assert missed.error is not None and HOST_FULL in missed.error
    assert len(rig.sim.images()) == 1


def test_hosts_are_opaque_per_project_as_nova_shows_them_to_a_tenant(
    rig: Rig, tmp_path: Path
) -> None:
    first, second = _servers(rig)[:2]
    assert first.host == second.host
    assert first.host is not None and "compute" not in first.host
    assert first.host.startswith("hostid:"), "the simulator shows a tenant's hostId"
    other = SimulatedCloud(tmp_path / "sim.sqlite", rig.clock, project="other")
    try:
        neighbour = other.create_server("neighbour", host="compute-a")
    finally:
        other.close()
    assert neighbour.host not in (None, first.host)


def test_the_simulated_host_answers_409_beyond_its_capacity(rig: Rig) -> None:
    rig.sim.configure(replace(SimConfig(), host_snapshot_capacity=2))
    servers = [rig.sim.create_server(f"s{n}", host="compute-a") for n in range(3)]
    other = rig.sim.create_server("elsewhere", host="compute-b")
    for server in [*servers[:2], other]:
        rig.sim.start_server_image(server.id, f"img-{server.name}", {})
    with pytest.raises(CloudBusy):
        rig.sim.start_server_image(servers[2].id, "img-s2", {})
    assert len(rig.sim.images()) == 3


def test_the_setting_refuses_a_limit_below_one() -> None:
    for wrong in (0, -1, True):
        with pytest.raises(InvalidInput):
            EngineSettings(max_snapshots_per_host=wrong)
    assert EngineSettings(max_snapshots_per_host=1).max_snapshots_per_host == 1


def test_a_backup_taken_in_process_waits_for_its_host_like_the_workers(rig: Rig) -> None:
    """`backup now --wait` takes its run itself: it must not start a third snapshot on a
    host limited to two (the simulated host here would take five)."""
    _limited(rig, 2, host_snapshot_capacity=5)
    slow = [rig.sim.create_server(f"slow-{n}", host="compute-a", disk_gb=60.0) for n in range(3)]
    services = Services(rig.store, lambda _name: rig.sim, rig.clock, max_snapshots_per_host=2)
    for server in slow[:2]:
        services.backups.backup_now(server.id, label=None, keep_last=None, cloud=None)
    rig.engine.drain(rig.clock.now() + timedelta(minutes=1))  # serve's workers: two uploads
    assert len(rig.sim.images()) == 2

    mine = services.backups.backup_now(slow[2].id, label=None, keep_last=None, cloud=None)
    with pytest.raises(WaitTimedOut):
        services.runs.wait(mine.id, timeout=10)
    waiting = rig.store.get_run(mine.id)
    assert waiting.state is RunState.PENDING and waiting.host == slow[2].host
    assert waiting.steps[-1].outcome == "deferred" and HOST_FULL in waiting.steps[-1].detail
    assert len(rig.sim.images()) == 2, "a third snapshot was started on the full host"

    rig.engine.drain(rig.clock.now() + timedelta(hours=1))  # the uploads end: room for it
    assert rig.store.get_run(mine.id).state is RunState.SUCCEEDED
    assert _most_at_once(rig.sim.images()) == 2


def test_the_in_process_limit_comes_from_the_serve_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKBACK_MAX_SNAPSHOTS_PER_HOST", "2")
    assert load_settings(db="sqlite://").max_snapshots_per_host == 2
    monkeypatch.setenv("STACKBACK_MAX_SNAPSHOTS_PER_HOST", "")
    assert load_settings(db="sqlite://").max_snapshots_per_host is None
    for wrong in ("0", "two", "-1"):
        monkeypatch.setenv("STACKBACK_MAX_SNAPSHOTS_PER_HOST", wrong)
        with pytest.raises(InvalidInput, match="STACKBACK_MAX_SNAPSHOTS_PER_HOST"):
            load_settings(db="sqlite://")
