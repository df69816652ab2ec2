"""Whole-server backups (kind server-consistent) on the simulator: artifacts, markers,
volumes attached or detached between backups, each consistency level obtained (never
recorded higher) and its fallback, and a server never left paused, even by a dead worker."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from stackback.cloud.simulator.config import SimConfig
from stackback.engine import consistent as consistent_module
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudBusy
from stackback.policy import ArtifactKind, Backup, BackupStatus, Policy, Run, RunState
from stackback.ports import (
    MARKER_BACKUP,
    MARKER_CREATED_BY,
    MARKER_POLICY,
    MARKER_RUN,
    MARKER_TARGET,
    MARKER_VOLUME,
    ServerInfo,
)
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from stackback.store.sql import RunFilter
from tests.engine.conftest import Rig

DAY = timedelta(days=1)


def policy(rig: Rig, server: str, kind: str = "server-consistent", **asked: object) -> Policy:
    return rig.policies.create(
        PolicySpec(
            name=f"p{len(rig.policies.list_policies())}",
            targets=(server,),
            kind=kind,
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=5),
            **asked,  # type: ignore[arg-type]
        )
    )


def runs(rig: Rig) -> list[Run]:
    return sorted(rig.store.list_runs(RunFilter(limit=1000)), key=lambda r: r.scheduled_for)


def one_day(rig: Rig) -> tuple[Run, Backup]:
    rig.engine.drain(rig.clock.now() + DAY)
    run = runs(rig)[-1]
    backup = rig.store.backup_for_run(run.id)
    assert backup is not None
    return run, backup


def snapshot_volumes(rig: Rig, backup: Backup) -> set[str]:
    ids = {a.cloud_id for a in backup.artifacts if a.kind is ArtifactKind.VOLUME_SNAPSHOT}
    return {s.volume_id for s in rig.sim.snapshots() if s.id in ids}


def data_server(rig: Rig, volumes: int = 2, **extra: object) -> ServerInfo:
    return rig.sim.create_server("db", volumes=volumes, **extra)  # type: ignore[arg-type]


def test_an_image_backed_server_is_backed_up_with_every_data_volume_all_stamped(
    rig: Rig,
) -> None:
    server = data_server(rig)
    made = policy(rig, server.id)
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED and backup.status is BackupStatus.AVAILABLE
    kinds = sorted(a.kind.value for a in backup.artifacts)
    assert kinds == ["image", "volume-snapshot", "volume-snapshot"]
    assert snapshot_volumes(rig, backup) == set(server.attached_volumes)
    snapshots = [s for s in rig.sim.snapshots() if s.metadata.get(MARKER_BACKUP) == backup.id]
    assert {s.metadata[MARKER_VOLUME] for s in snapshots} == set(server.attached_volumes)
    for snap in snapshots:
        assert snap.metadata[MARKER_CREATED_BY] == "stackback"
        assert snap.metadata[MARKER_RUN] == run.id
        assert snap.metadata[MARKER_TARGET] == server.id
        assert snap.metadata[MARKER_POLICY] == made.id
    (image,) = [i for i in rig.sim.images() if i.properties.get(MARKER_BACKUP) == backup.id]
    assert image.properties[MARKER_RUN] == run.id
    assert backup.consistency == "crash"
    assert "3 snapshots started within" in (backup.consistency_detail or "")
    assert rig.sim.pauses(server.id) == []


def test_the_backup_holds_what_was_attached_at_its_moment(rig: Rig) -> None:
    server = data_server(rig, volumes=1)
    policy(rig, server.id)
    _, first = one_day(rig)
    added = rig.sim.add_volume(server.id)
    _, second = one_day(rig)
    rig.sim.detach_volume(server.id, server.attached_volumes[0])
    _, third = one_day(rig)
    assert snapshot_volumes(rig, first) == {server.attached_volumes[0]}
    assert snapshot_volumes(rig, second) == {server.attached_volumes[0], added}
    assert snapshot_volumes(rig, third) == {added}
    assert all(b.status is BackupStatus.AVAILABLE for b in (first, second, third))


def test_server_image_kind_keeps_todays_backup_of_the_root_disk_only(rig: Rig) -> None:
    server = data_server(rig)
    policy(rig, server.id, kind="server-image")
    run, backup = one_day(rig)
    assert [a.kind for a in backup.artifacts] == [ArtifactKind.IMAGE]
    assert backup.consistency is None and backup.consistency_detail is None
    assert [s.name for s in rig.store.get_run(run.id).steps] == [
        "start",
        "snapshot",
        "wait",
        "rotate",
    ]


def _pause_covers_every_snapshot(rig: Rig, server: ServerInfo, backup: Backup) -> None:
    """Checked against the simulator's own record: paused before any snapshot was
    started, unpaused only once the image was taken (Nova refuses to unpause while its
    snapshot task runs) and every snapshot left creating."""
    (pause,) = rig.sim.pauses(server.id)
    assert pause.unpaused_at is not None
    ids = {a.cloud_id for a in backup.artifacts}
    images = [i for i in rig.sim.images() if i.id in ids]
    snapshots = [s for s in rig.sim.snapshots() if s.id in ids]
    for image in images:
        assert image.created_at and image.upload_at
        assert pause.paused_at <= image.created_at.timestamp()
        assert image.ready_at and image.ready_at.timestamp() <= pause.unpaused_at
    for snap in snapshots:
        assert snap.created_at and snap.ready_at
        assert pause.paused_at <= snap.created_at.timestamp()
        assert snap.ready_at.timestamp() <= pause.unpaused_at


def test_paused_pauses_the_server_while_every_snapshot_is_taken_then_unpauses(rig: Rig) -> None:
    server = data_server(rig)
    policy(rig, server.id, consistency="paused", max_pause_seconds=60)
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED
    assert backup.consistency == "paused"
    assert "server paused" in (backup.consistency_detail or "")
    _pause_covers_every_snapshot(rig, server, backup)
    assert rig.sim.server_status(server.id) == "ACTIVE"
    steps = [(s.name, s.outcome) for s in rig.store.get_run(run.id).steps]
    assert steps[:4] == [
        ("start", "ok"),
        ("pause", "requested"),
        ("pause", "ok"),
        ("unpause", "ok"),
    ]
    (pause,) = rig.sim.pauses(server.id)
    assert pause.unpaused_at is not None
    [image] = [i for i in rig.sim.images() if i.id in {a.cloud_id for a in backup.artifacts}]
    assert image.ready_at is not None
    pause_poll = 1.0  # EngineSettings.pause_poll_interval: unpaused as soon as Nova lets it
    assert pause.unpaused_at <= image.ready_at.timestamp() + pause_poll
    unpause = next(s for s in rig.store.get_run(run.id).steps if s.name == "unpause")
    assert "Nova refused to unpause until its snapshot task ended" in unpause.detail


def test_the_pause_is_bounded_and_a_pause_cut_short_is_recorded_as_crash(rig: Rig) -> None:
    fast_image = dict(image_snapshot_seconds=1.0, image_base_seconds=1.0, image_seconds_per_gb=0)
    rig.sim.configure(replace(SimConfig(), volume_snapshot_seconds=30, **fast_image))
    server = data_server(rig)
    policy(rig, server.id, consistency="paused", max_pause_seconds=5)
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED
    assert backup.consistency == "crash"
    assert "--max-pause (5s)" in (backup.consistency_detail or "")
    (pause,) = rig.sim.pauses(server.id)
    assert pause.unpaused_at is not None and pause.unpaused_at - pause.paused_at <= 5
    assert rig.sim.server_status(server.id) == "ACTIVE"


def test_an_image_still_uploading_at_max_pause_keeps_the_pause_and_the_backup_paused(
    rig: Rig,
) -> None:
    """Nova refuses to unpause while it takes the image: the pause outlasts --max-pause, every
    snapshot is taken while paused, and the backup says both (never a level it did not get)."""
    rig.sim.configure(replace(SimConfig(), volume_snapshot_seconds=1))
    server = data_server(rig)
    policy(rig, server.id, consistency="paused", max_pause_seconds=3)
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED
    assert backup.consistency == "paused"
    assert "longer than --max-pause (3s)" in (backup.consistency_detail or "")
    _pause_covers_every_snapshot(rig, server, backup)
    assert rig.sim.server_status(server.id) == "ACTIVE"


def test_a_server_nova_will_not_pause_gets_the_fallback(rig: Rig) -> None:
    server = data_server(rig)
    policy(rig, server.id, consistency="paused")
    rig.sim.fail_next("pause_server", CloudBusy, server_id=server.id)
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED
    assert backup.consistency == "crash"
    assert "refused to pause" in (backup.consistency_detail or "")
    assert rig.sim.server_status(server.id) == "ACTIVE"
    assert ("pause", "refused") in [(s.name, s.outcome) for s in rig.store.get_run(run.id).steps]


def test_fallback_fail_fails_the_run_and_takes_nothing(rig: Rig) -> None:
    server = data_server(rig, status="SHUTOFF")
    policy(rig, server.id, consistency="paused", fallback="fail")
    run, backup = one_day(rig)
    assert run.state is RunState.FAILED
    assert "consistency paused cannot be had" in (run.error or "")
    assert "SHUTOFF" in (run.error or "")
    assert backup.artifacts == () and rig.sim.images() == [] and rig.sim.snapshots() == []
    assert rig.sim.server_status(server.id) == "SHUTOFF"


def test_a_server_already_paused_is_backed_up_paused_and_left_paused(rig: Rig) -> None:
    server = data_server(rig, status="PAUSED")
    policy(rig, server.id, consistency="paused")
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED and backup.consistency == "paused"
    assert rig.sim.server_status(server.id) == "PAUSED"
    assert rig.sim.pauses(server.id) == []


def _agent_image(rig: Rig, **properties: str) -> str:
    source = rig.sim.create_server("golden")
    return rig.sim.start_server_image(source.id, "golden", properties).id


def test_quiesced_only_where_nova_quiesces_every_disk_with_the_agent(rig: Rig) -> None:
    image = _agent_image(rig, hw_qemu_guest_agent="yes", os_require_quiesce="yes")
    server = rig.sim.create_server("vb", volume_backed=True, volumes=1, image=image)
    policy(rig, server.id, consistency="quiesced")
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED
    assert backup.consistency == "quiesced"
    volume_snapshots = [a for a in backup.artifacts if a.kind is ArtifactKind.VOLUME_SNAPSHOT]
    assert len(volume_snapshots) == 2  # Nova's, from the image's block_device_mapping


@pytest.mark.parametrize(
    ("properties", "volume_backed", "why"),
    [
        ({}, True, "guest agent not enabled"),
        ({"hw_qemu_guest_agent": "yes"}, True, "quiesce not required"),
        (
            {"hw_qemu_guest_agent": "yes", "os_require_quiesce": "yes"},
            False,
            "outside Nova's quiesce",
        ),
    ],
)
def test_quiesced_falls_back_saying_why_and_is_never_recorded_higher(
    rig: Rig, properties: dict[str, str], volume_backed: bool, why: str
) -> None:
    image = _agent_image(rig, **properties) if properties else None
    server = rig.sim.create_server("srv", volume_backed=volume_backed, volumes=1, image=image)
    policy(rig, server.id, consistency="quiesced")
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED
    assert backup.consistency == "crash"
    assert why in (backup.consistency_detail or "")


class _WorkerDied(BaseException):
    """Stands for kill -9: nothing of the dying worker runs after it."""


def _die_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def failpoint(at: str) -> None:
        if at == name:
            raise _WorkerDied(at)

    monkeypatch.setattr(consistent_module, "failpoint", failpoint)


@pytest.mark.parametrize("where", ["after-pause", "after-snapshots-requested"])
def test_a_worker_dying_mid_pause_is_taken_over_and_the_server_unpaused(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    server = data_server(rig)
    policy(rig, server.id, consistency="paused")
    _die_at(monkeypatch, where)
    with pytest.raises(_WorkerDied):
        rig.engine.drain(rig.clock.now() + DAY)
    assert rig.sim.server_status(server.id) == "PAUSED"  # the dead worker left it so
    monkeypatch.undo()
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))  # the lease expires: taken over
    (run,) = runs(rig)
    backup = rig.store.get_backup(run.backup_id or "")
    assert run.state is RunState.SUCCEEDED and run.attempt > 1
    assert rig.sim.server_status(server.id) == "ACTIVE"
    assert all(p.unpaused_at is not None for p in rig.sim.pauses(server.id))
    steps = [(s.name, s.outcome) for s in rig.store.get_run(run.id).steps]
    assert ("unpause", "ok") in steps
    assert "unpaused by the takeover" in " ".join(s.detail for s in rig.store.get_run(run.id).steps)
    kinds = sorted(a.kind.value for a in backup.artifacts)
    assert kinds == ["image", "volume-snapshot", "volume-snapshot"]  # nothing taken twice
    assert len(rig.sim.images()) == 1 and len(rig.sim.snapshots()) == 2
    assert backup.consistency == "paused"


def test_a_snapshot_request_failing_mid_pause_unpauses_before_the_retry(rig: Rig) -> None:
    server = data_server(rig)
    policy(rig, server.id, consistency="paused")
    rig.sim.busy_storm(server.id, 1)  # createImage answers 409 once, while the server is paused
    run, backup = one_day(rig)
    assert run.state is RunState.SUCCEEDED and backup.consistency == "paused"
    pauses = rig.sim.pauses(server.id)
    assert len(pauses) == 2 and all(p.unpaused_at is not None for p in pauses)
    first = pauses[0]
    assert first.unpaused_at is not None
    assert first.unpaused_at - first.paused_at < 5  # not left paused until the retry
    assert rig.sim.server_status(server.id) == "ACTIVE"
    assert len(rig.sim.images()) == 1


class _NeverShownPaused:
    """The simulator, except that Nova keeps reporting the server ACTIVE after a pause."""

    def __init__(self, sim: object) -> None:
        self.sim = sim

    def __getattr__(self, name: str) -> object:
        return getattr(self.sim, name)

    def server_status(self, server_id: str) -> str:
        return "ACTIVE"


def test_a_pause_nova_never_shows_is_undone_and_falls_back(rig: Rig) -> None:
    server = data_server(rig)
    policy(rig, server.id, consistency="paused", max_pause_seconds=5)
    cloud = _NeverShownPaused(rig.sim)
    engine = Engine(rig.store, lambda _name: cloud, rig.clock, EngineSettings(), worker_name="w2")  # type: ignore[arg-type,return-value]
    engine.drain(rig.clock.now() + DAY)
    run = runs(rig)[-1]
    backup = rig.store.backup_for_run(run.id)
    assert run.state is RunState.SUCCEEDED and backup is not None
    assert backup.consistency == "crash"
    assert "not shown PAUSED" in (backup.consistency_detail or "")
    assert rig.sim.server_status(server.id) == "ACTIVE"
