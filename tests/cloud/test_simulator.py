"""Behaviour of the simulated cloud beyond the Cloud contract: timing, limits, faults, sharing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackback.clock import VirtualClock
from stackback.cloud.bdm import snapshot_children
from stackback.cloud.simulator import SimConfig, SimFaults, SimulatedCloud, open_simulator
from stackback.cloud.simulator.model import earliest_slot
from stackback.errors import (
    CloudBusy,
    CloudError,
    CloudNotFound,
    CloudRejected,
    CloudUnavailable,
    InvalidInput,
    QuotaExceeded,
)
from stackback.policy import ArtifactKind, ArtifactStatus, Selector
from stackback.ports import MARKER_RUN, ArtifactRef

T0 = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
TIMING = SimConfig(
    image_snapshot_seconds=2,
    image_base_seconds=5,
    image_seconds_per_gb=10,
    volume_snapshot_seconds=3,
    host_upload_limit=None,
)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def sim(tmp_path: Path, clock: VirtualClock) -> SimulatedCloud:
    cloud = SimulatedCloud(tmp_path / "cloud.sqlite", clock, project="alpha")
    cloud.configure(TIMING)
    return cloud


def status_of(sim: SimulatedCloud, ref: ArtifactRef) -> ArtifactStatus:
    return sim.artifact_statuses([ref])[ref].status


def raw_image_state(sim: SimulatedCloud, ref: ArtifactRef) -> str:
    """Glance's status of the image, ``deleted`` once Glance no longer lists it."""
    found = [image.status for image in sim.images() if image.id == ref.id]
    return found[0] if found else "deleted"


def test_image_is_queued_then_saving_then_active_as_the_clock_moves(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    server = sim.create_server("web", disk_gb=1)
    ref = sim.start_server_image(server.id, "web-1", {MARKER_RUN: "r1"})

    assert raw_image_state(sim, ref) == "queued"
    clock.advance(2)
    assert raw_image_state(sim, ref) == "saving"
    assert sim.artifact_statuses([ref])[ref].size is None
    clock.advance(14.9)
    assert status_of(sim, ref) is ArtifactStatus.PENDING
    clock.advance(0.1)
    info = sim.artifact_statuses([ref])[ref]
    assert info.status is ArtifactStatus.AVAILABLE
    assert info.size == 1024**3
    assert info.created_at == T0


def test_image_of_an_image_backed_server_carries_novas_properties(sim: SimulatedCloud) -> None:
    server = sim.create_server("web", volumes=1)
    ref = sim.start_server_image(server.id, "web-1", {MARKER_RUN: "r1", "image_type": "mine"})

    metadata = sim.artifact_statuses([ref])[ref].metadata

    assert metadata["instance_uuid"] == server.id
    assert metadata["owner_id"] == "alpha"
    assert metadata["image_location"] == "snapshot"
    assert metadata["base_image_ref"]
    assert metadata["image_type"] == "mine"
    assert metadata[MARKER_RUN] == "r1"
    assert "block_device_mapping" not in metadata
    assert sim.snapshots() == []


def test_a_snapshot_inherits_the_properties_of_the_image_its_server_booted_from(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    """As Nova: the boot image's own properties pass on; what Nova sets, and the request, win."""
    web = sim.create_server("web")
    first = sim.start_server_image(web.id, "golden", {MARKER_RUN: "r1", "os_distro": "debian"})
    clock.advance(3600)
    restored = sim.create_server("restored", image=first.id)
    second = sim.start_server_image(restored.id, "again", {MARKER_RUN: "r2"})

    metadata = sim.artifact_statuses([second])[second].metadata

    assert (metadata["os_distro"], metadata[MARKER_RUN]) == ("debian", "r2")
    assert (metadata["base_image_ref"], metadata["instance_uuid"]) == (first.id, restored.id)
    with pytest.raises(CloudNotFound):
        sim.create_server("nowhere", image="no-such-image")


def test_a_simulator_file_from_before_image_inheritance_still_opens(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE servers (id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL,"
            " status TEXT NOT NULL, metadata TEXT NOT NULL, volume_backed INTEGER NOT NULL,"
            " host TEXT NOT NULL, disk_gb REAL NOT NULL, base_image_ref TEXT,"
            " created_at REAL NOT NULL)"
        )
    cloud = SimulatedCloud(path, clock, project="alpha")
    server = cloud.create_server("web")
    ref = cloud.start_server_image(server.id, "web-1", {MARKER_RUN: "r1"})
    assert cloud.artifact_statuses([ref])[ref].metadata[MARKER_RUN] == "r1"


def test_volume_backed_server_snapshots_every_volume_and_is_not_busy(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    server = sim.create_server("db", volume_backed=True, volumes=2)

    ref = sim.start_server_image(server.id, "db-1", {MARKER_RUN: "r1"})
    second = sim.start_server_image(server.id, "db-2", {MARKER_RUN: "r2"})

    info = sim.artifact_statuses([ref])[ref]
    assert (info.status, info.size) == (ArtifactStatus.AVAILABLE, 0)
    assert info.metadata["bdm_v2"] == "True"
    assert "instance_uuid" not in info.metadata
    assert "image_type" not in info.metadata
    mapping = json.loads(info.metadata["block_device_mapping"])
    assert [entry["boot_index"] for entry in mapping] == [0, None, None]
    assert [entry["device_name"] for entry in mapping] == ["/dev/vda", "/dev/vdb", "/dev/vdc"]
    assert {entry["source_type"] for entry in mapping} == {"snapshot"}
    assert {entry["volume_size"] for entry in mapping} == {1}
    assert len(info.children) == 3
    snapshots = [s for s in sim.snapshots() if s.id in {c.id for c in info.children}]
    assert {(s.name, s.status) for s in snapshots} == {("snapshot for db-1", "creating")}
    assert status_of(sim, second) is ArtifactStatus.AVAILABLE

    clock.advance(3)
    statuses = sim.artifact_statuses(info.children)
    assert {s.status for s in statuses.values()} == {ArtifactStatus.AVAILABLE}


def test_a_snapshot_still_creating_or_already_deleting_cannot_be_deleted(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    """As Cinder: 400 "status must be available or error", which the adapter reports busy."""
    sim.configure(replace(TIMING, snapshot_delete_seconds=4))
    server = sim.create_server("db", volume_backed=True)
    image = sim.start_server_image(server.id, "db-1", {})
    (child,) = sim.artifact_statuses([image])[image].children

    with pytest.raises(CloudBusy):
        sim.delete_artifact(child)
    clock.advance(3)
    sim.delete_artifact(child)
    assert status_of(sim, child) is ArtifactStatus.DELETING
    with pytest.raises(CloudBusy):
        sim.delete_artifact(child)
    clock.advance(4)
    assert status_of(sim, child) is ArtifactStatus.DELETED
    assert sim.snapshots() == []
    sim.delete_artifact(child)  # gone: nothing to refuse


@pytest.mark.parametrize("state", ["SHUTOFF", "PAUSED", "SUSPENDED"])
def test_stopped_paused_and_suspended_servers_can_be_imaged(
    sim: SimulatedCloud, state: str
) -> None:
    server = sim.create_server("web", status=state)

    ref = sim.start_server_image(server.id, "web-1", {})

    assert status_of(sim, ref) is ArtifactStatus.PENDING


@pytest.mark.parametrize("state", ["ERROR", "BUILD", "SHELVED", "SHELVED_OFFLOADED"])
@pytest.mark.parametrize("volume_backed", [False, True])
def test_a_server_in_another_state_is_a_conflict_and_nothing_is_created(
    sim: SimulatedCloud, state: str, volume_backed: bool
) -> None:
    """Nova's InstanceInvalidState is a 409, as for a snapshot already in progress."""
    server = sim.create_server("web", volume_backed=volume_backed, volumes=1)
    sim.set_server_status(server.id, state)

    with pytest.raises(CloudBusy, match=f"vm_state {state.lower()}"):
        sim.start_server_image(server.id, "web-1", {})
    assert sim.images() == []
    assert sim.snapshots() == []


def test_deleting_an_uploading_image_frees_the_server_only_when_its_upload_would_end(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    """Nova clears the snapshot task when the upload finds its image gone, not at the delete."""
    server = sim.create_server("web")
    first = sim.start_server_image(server.id, "web-1", {})
    with pytest.raises(CloudBusy):
        sim.start_server_image(server.id, "web-2", {})

    sim.delete_artifact(first)
    with pytest.raises(CloudBusy):
        sim.start_server_image(server.id, "web-3", {})

    clock.advance(3600)
    sim.start_server_image(server.id, "web-4", {})
    assert [image.name for image in sim.images()] == ["web-4"]


def test_a_metadata_key_outside_novas_pattern_is_refused(sim: SimulatedCloud) -> None:
    server = sim.create_server("web")
    for key in ("a/b", "ключ"):
        with pytest.raises(CloudRejected, match="key pattern"):
            sim.start_server_image(server.id, "web-1", {key: "v"})
    assert sim.images() == []


def test_ambiguous_server_name_is_rejected(sim: SimulatedCloud) -> None:
    sim.create_server("twin")
    sim.create_server("twin")

    with pytest.raises(CloudRejected):
        sim.get_server("twin")


def test_image_quota(sim: SimulatedCloud) -> None:
    sim.configure(replace(TIMING, max_images=2))
    servers = [sim.create_server(f"web-{n}") for n in range(3)]
    first = sim.start_server_image(servers[0].id, "one", {})
    sim.start_server_image(servers[1].id, "two", {})

    with pytest.raises(QuotaExceeded):
        sim.start_server_image(servers[2].id, "three", {})
    assert len(sim.images()) == 2

    sim.delete_artifact(first)
    sim.start_server_image(servers[2].id, "three", {})


def test_snapshot_quota_refuses_the_whole_volume_backed_image(sim: SimulatedCloud) -> None:
    sim.configure(replace(TIMING, max_volume_snapshots=1))
    server = sim.create_server("db", volume_backed=True, volumes=1)

    with pytest.raises(QuotaExceeded):
        sim.start_server_image(server.id, "db-1", {})
    assert sim.images() == []
    assert sim.snapshots() == []


def test_uploads_beyond_the_host_limit_wait_queued(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    sim.configure(replace(TIMING, host_upload_limit=1))
    first_on_h1 = sim.create_server("a", host="h1")
    second_on_h1 = sim.create_server("b", host="h1")
    on_h2 = sim.create_server("c", host="h2")
    refs = [sim.start_server_image(s.id, s.name, {}) for s in (first_on_h1, second_on_h1, on_h2)]
    ready = {image.name: image.ready_at for image in sim.images()}

    assert ready["a"] == ready["c"] == T0 + timedelta(seconds=17)
    assert ready["b"] == T0 + timedelta(seconds=34)
    clock.advance(2)
    assert [raw_image_state(sim, ref) for ref in refs] == ["saving", "queued", "saving"]
    clock.advance(15)
    assert [raw_image_state(sim, ref) for ref in refs] == ["active", "queued", "active"]
    clock.advance(2)
    assert raw_image_state(sim, refs[1]) == "saving"


def test_earliest_slot_keeps_at_most_limit_jobs_overlapping() -> None:
    booked = [(0.0, 10.0), (0.0, 15.0), (10.0, 20.0)]

    assert earliest_slot(booked, 0.0, 5.0, 2) == 15.0
    assert earliest_slot(booked, 0.0, 5.0, 3) == 0.0
    assert earliest_slot(booked, 0.0, 5.0, None) == 0.0
    assert earliest_slot([(0.0, 4.0), (6.0, 9.0)], 0.0, 3.0, 1) == 9.0
    assert earliest_slot([(0.0, 4.0), (8.0, 9.0)], 0.0, 3.0, 1) == 4.0


def test_busy_storm_refuses_the_next_calls_on_that_server_only(sim: SimulatedCloud) -> None:
    stormy, calm = sim.create_server("stormy"), sim.create_server("calm")
    sim.busy_storm(stormy.id, 2)

    for _ in range(2):
        with pytest.raises(CloudBusy):
            sim.start_server_image(stormy.id, "refused", {})
    sim.start_server_image(calm.id, "calm-1", {})
    sim.start_server_image(stormy.id, "stormy-1", {})

    assert sorted(image.name for image in sim.images()) == ["calm-1", "stormy-1"]


def test_fail_next_raises_the_scripted_error_then_recovers(sim: SimulatedCloud) -> None:
    server = sim.create_server("web")
    sim.fail_next("start_server_image", CloudUnavailable, 2)

    for _ in range(2):
        with pytest.raises(CloudUnavailable):
            sim.start_server_image(server.id, "web-1", {})
    assert sim.images() == []
    sim.start_server_image(server.id, "web-1", {})
    with pytest.raises(InvalidInput):
        sim.fail_next("reboot_server", CloudUnavailable)


def test_a_failed_snapshot_leaves_no_image_and_frees_the_server(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    """Nova deletes the image of a snapshot that failed (``delete_image_on_error``)."""
    server = sim.create_server("web")
    sim.kill_next_image(server.id)
    doomed = sim.start_server_image(server.id, "web-1", {MARKER_RUN: "r-1"})

    assert status_of(sim, doomed) is ArtifactStatus.PENDING
    clock.advance(17)
    info = sim.artifact_statuses([doomed])[doomed]
    assert (info.status, info.detail) == (ArtifactStatus.DELETED, "not found")
    assert raw_image_state(sim, doomed) == "deleted"
    assert sim.find_artifacts({MARKER_RUN: "r-1"}) == []
    healthy = sim.start_server_image(server.id, "web-2", {})
    clock.advance(17)
    assert status_of(sim, healthy) is ArtifactStatus.AVAILABLE


def run_faulty_workload(
    cloud: SimulatedCloud, clock: VirtualClock, servers: list[str]
) -> list[str]:
    outcomes: list[str] = []
    for step in range(60):
        try:
            ref = cloud.start_server_image(servers[step % len(servers)], f"i{step}", {})
        except CloudError as error:
            outcomes.append(type(error).__name__)
            continue
        clock.advance(20)
        outcomes.append(raw_image_state(cloud, ref))
    return outcomes


def test_random_faults_are_reproducible_from_the_seed(tmp_path: Path) -> None:
    faults = SimFaults(error_rate=0.2, busy_rate=0.2, kill_rate=0.3)
    config = replace(TIMING, faults=faults)

    def workload(path: Path, seed: int) -> list[str]:
        clock = VirtualClock(T0)
        cloud = SimulatedCloud(path, clock, seed=seed)
        cloud.configure(config)
        servers = [cloud.create_server(f"s{n}").id for n in range(3)]
        return run_faulty_workload(cloud, clock, servers)

    first = workload(tmp_path / "a.sqlite", seed=7)

    assert workload(tmp_path / "b.sqlite", seed=7) == first
    assert workload(tmp_path / "c.sqlite", seed=8) != first
    assert {"CloudUnavailable", "CloudBusy", "deleted", "active"} <= set(first)


def test_two_instances_on_one_file_draw_from_one_sequence(tmp_path: Path) -> None:
    config = replace(TIMING, faults=SimFaults(error_rate=0.5))

    def outcomes(clouds: list[SimulatedCloud]) -> list[str]:
        clouds[0].configure(config)
        results = []
        for step in range(40):
            try:
                clouds[step % len(clouds)].find_artifacts({})
                results.append("ok")
            except CloudUnavailable:
                results.append("503")
        return results

    clock = VirtualClock(T0)
    shared = tmp_path / "shared.sqlite"
    interleaved = outcomes([SimulatedCloud(shared, clock, seed=3) for _ in range(2)])
    alone = outcomes([SimulatedCloud(tmp_path / "alone.sqlite", clock, seed=3)])

    assert interleaved == alone
    assert "ok" in alone and "503" in alone


def test_artifact_statuses_is_one_call_however_many_refs(sim: SimulatedCloud) -> None:
    servers = [sim.create_server(f"web-{n}") for n in range(5)]
    refs = [sim.start_server_image(s.id, s.name, {}) for s in servers]
    other = SimulatedCloud(sim.path, VirtualClock(T0), project="beta")
    other.find_artifacts({})

    statuses = sim.artifact_statuses([*refs, ArtifactRef(ArtifactKind.IMAGE, "gone")])

    assert len(statuses) == 6
    assert sim.api_calls() == {"start_server_image": 5, "artifact_statuses": 1}
    assert other.api_calls() == {"find_artifacts": 1}


def test_latency_is_spent_on_the_clock(sim: SimulatedCloud, clock: VirtualClock) -> None:
    sim.configure(replace(TIMING, latency_seconds=1.5))
    server = sim.create_server("web")

    sim.get_server(server.id)
    sim.find_artifacts({})

    assert clock.now() == T0 + timedelta(seconds=3)


def test_settings_are_shared_through_the_file(sim: SimulatedCloud, clock: VirtualClock) -> None:
    changed = replace(TIMING, max_images=7, faults=SimFaults(kill_rate=0.25))
    sim.configure(changed)

    assert SimulatedCloud(sim.path, clock, project="other").config() == changed


def test_admin_listings_are_per_project_unless_asked(sim: SimulatedCloud) -> None:
    beta = SimulatedCloud(sim.path, VirtualClock(T0), project="beta")
    sim.start_server_image(sim.create_server("a").id, "alpha-image", {})
    beta.start_server_image(beta.create_server("b").id, "beta-image", {})

    assert [i.name for i in sim.images()] == ["alpha-image"]
    assert sorted(i.name for i in sim.images(all_projects=True)) == ["alpha-image", "beta-image"]


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(InvalidInput):
        SimConfig(image_base_seconds=-1)
    with pytest.raises(InvalidInput):
        SimConfig(host_upload_limit=0)
    with pytest.raises(InvalidInput):
        SimFaults(error_rate=1.5)


def test_open_simulator_specs(tmp_path: Path, clock: VirtualClock) -> None:
    assert open_simulator("sim", clock, state_dir=tmp_path).path == tmp_path / "sim.sqlite"
    elsewhere = tmp_path / "other" / "cloud.db"
    with pytest.raises(InvalidInput, match="does not exist"):  # a typo starts no new cloud
        open_simulator(f"sim:{elsewhere}", clock, state_dir=tmp_path)
    elsewhere.parent.mkdir()
    cloud = open_simulator(f"sim:{elsewhere}", clock, state_dir=tmp_path, project="beta")
    assert (cloud.path, cloud.project) == (elsewhere, "beta")
    assert elsewhere.exists()
    for bad in ("openstack", "sim:", "simulator"):
        with pytest.raises(InvalidInput):
            open_simulator(bad, clock, state_dir=tmp_path)


def test_snapshot_children_ignore_malformed_mappings() -> None:
    entry = {"source_type": "snapshot", "snapshot_id": "s1"}

    assert snapshot_children({"block_device_mapping": json.dumps([entry])}) == (
        ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s1"),
    )
    assert snapshot_children({"block_device_mapping": "not json"}) == ()
    assert snapshot_children({"block_device_mapping": json.dumps({"a": 1})}) == ()
    assert snapshot_children({"block_device_mapping": json.dumps([{"source_type": "image"}])}) == ()


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime
    from stackback.clock import VirtualClock
    from stackback.cloud.simulator import SimulatedCloud

    path, action = sys.argv[1], sys.argv[2]
    cloud = SimulatedCloud(path, VirtualClock(datetime(2025, 3, 30, 0, 30, tzinfo=UTC)))
    if action == "image-then-die":
        shared = cloud.get_server("made-by-parent")
        cloud.start_server_image(shared.id, "made-by-child", {"stackback_run": "child-run"})
        cloud.create_server("child-server")
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        for n in range(int(action)):
            cloud.create_server(f"{os.getpid()}-{n}", metadata={"batch": "yes"})
            cloud.find_artifacts({})
    """
)


def run_child(path: Path, action: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), action],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


@pytest.mark.slow
def test_a_killed_process_leaves_its_servers_and_images_to_the_others(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    cloud = SimulatedCloud(sim.path, clock)
    cloud.create_server("made-by-parent")

    child = run_child(sim.path, "image-then-die")

    assert child.wait(timeout=120) == -9
    (image,) = cloud.find_artifacts({MARKER_RUN: "child-run"})
    assert image.name == "made-by-child"
    assert cloud.get_server("child-server").name == "child-server"
    assert cloud.api_calls() == {"get_server": 2, "start_server_image": 1, "find_artifacts": 1}


@pytest.mark.slow
def test_concurrent_processes_lose_no_writes(sim: SimulatedCloud, clock: VirtualClock) -> None:
    cloud = SimulatedCloud(sim.path, clock)

    children = [run_child(sim.path, "25") for _ in range(3)]

    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    assert cloud.api_calls() == {"find_artifacts": 75}
    assert len(cloud.find_servers(Selector("batch", "yes"))) == 75


def test_a_failed_incremental_backup_keeps_its_parent_and_blocks_its_deletion(
    sim: SimulatedCloud, clock: VirtualClock
) -> None:
    """As Cinder: a child in ``error`` still counts against its parent
    (``num_dependent_backups``), is never a parent itself, and may be deleted."""
    volume = sim.create_volume_standalone("data")
    full = sim.start_volume_backup(volume.id, "full", {}, incremental=False)
    clock.advance(3600)
    sim.kill_next_volume_backup(volume.id)
    failed = sim.start_volume_backup(volume.id, "inc", {}, incremental=True)
    clock.advance(3600)
    info = sim.artifact_statuses([failed])[failed]
    assert info.status is ArtifactStatus.FAILED and info.raw_status == "error"
    assert info.parent == full
    with pytest.raises(CloudRejected, match="Incremental backups exist"):
        sim.delete_artifact(full)
    again = sim.start_volume_backup(volume.id, "inc2", {}, incremental=True)
    assert sim.artifact_statuses([again])[again].parent == full, "never built on the failed one"
    clock.advance(3600)
    sim.delete_artifact(again)
    sim.delete_artifact(failed)
    sim.delete_artifact(full)
    assert sim.artifact_statuses([full])[full].status is ArtifactStatus.DELETED
