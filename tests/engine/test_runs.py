"""The backup run's guarantees, in-process on both databases with the simulator."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from stackback.cloud.simulator.config import SimConfig
from stackback.engine import runner as runner_module
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.engine.worker import Worker
from stackback.errors import CloudUnavailable, InvalidInput
from stackback.policy import (
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupStatus,
    Policy,
    Run,
    RunState,
)
from stackback.ports import MARKER_RUN, ServerInfo
from stackback.retention import RetentionPolicy
from stackback.schedule import CronSchedule
from stackback.services.backups import BackupService
from stackback.services.policies import PolicySpec
from stackback.store.sql import BackupFilter, RunFilter
from tests.engine.conftest import Rig

DAY = timedelta(days=1)


def daily(rig: Rig, *targets: str, selector: str | None = None, **keep: int) -> Policy:
    return rig.policies.create(
        PolicySpec(
            name=f"p{len(rig.policies.list_policies())}",
            targets=targets or None,
            selector=selector,
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(**keep) if keep else RetentionPolicy(last=3),
        )
    )


def live_images(rig: Rig, server_id: str | None = None) -> list[str]:
    return [
        i.id
        for i in rig.sim.images()
        if i.status != "deleted" and (server_id is None or i.server_id == server_id)
    ]


def runs(rig: Rig) -> list:  # type: ignore[type-arg]
    return sorted(rig.store.list_runs(RunFilter(limit=10_000)), key=lambda r: r.scheduled_for)


def test_each_run_snapshots_once_and_rotation_follows_the_policy(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=2)
    rig.engine.drain(rig.clock.now() + 4 * DAY + timedelta(hours=2))
    done = runs(rig)
    assert [r.state for r in done] == [RunState.SUCCEEDED] * 5
    assert rig.sim.api_calls()["start_server_image"] == 5
    for run in done[-2:]:
        stamped = [i for i in rig.sim.images() if i.properties.get(MARKER_RUN) == run.id]
        assert len(stamped) == 1
    kept = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    assert [b.run_id for b in kept] == [done[-1].id, done[-2].id]
    assert sorted(live_images(rig)) == sorted(b.artifacts[0].cloud_id for b in kept)
    steps = [s.name for s in rig.store.get_run(done[-1].id).steps]
    assert steps == ["start", "snapshot", "wait", "rotate"]


def test_busy_server_is_retried_with_backoff_then_succeeds(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    rig.sim.busy_storm(server.id, 3)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (run,) = runs(rig)
    assert run.state is RunState.SUCCEEDED
    retries = [s for s in rig.store.get_run(run.id).steps if s.outcome == "retry"]
    assert len(retries) == 3
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(retries)]
    assert gaps[0] < gaps[1]


def test_busy_beyond_the_retry_window_fails_with_the_reason_and_deletes_nothing(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    before = live_images(rig)
    assert len(before) == 1
    rig.sim.busy_storm(server.id, 1000)
    rig.engine.drain(rig.clock.now() + DAY)
    last = runs(rig)[-1]
    assert last.state is RunState.FAILED
    assert last.error is not None and "cloud-busy" in last.error and "retry window" in last.error
    assert live_images(rig) == before


def test_killed_image_fails_the_run_and_keeps_older_backups(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    good = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    rig.sim.kill_next_image(server.id)
    rig.engine.drain(rig.clock.now() + DAY)
    last = runs(rig)[-1]
    assert last.state is RunState.FAILED and "failed" in (last.error or "")
    failed = rig.store.get_backup(last.backup_id or "")
    assert failed.status is BackupStatus.FAILED
    assert rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,))) == good
    assert good[0].artifacts[0].cloud_id in live_images(rig)


def test_transient_cloud_errors_are_retried(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    rig.sim.fail_next("start_server_image", CloudUnavailable, count=2)
    rig.sim.fail_next("artifact_statuses", CloudUnavailable, count=2)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (run,) = runs(rig)
    assert run.state is RunState.SUCCEEDED
    outcomes = [s.outcome for s in rig.store.get_run(run.id).steps]
    assert outcomes.count("retry") == 4


def test_protected_backups_are_neither_counted_nor_deleted(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (first,) = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    rig.store.set_protected(first.id, True)
    rig.engine.drain(rig.clock.now() + 3 * DAY)
    available = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    assert {b.id for b in available} == {first.id, runs(rig)[-1].backup_id}
    assert first.artifacts[0].cloud_id in live_images(rig)


def test_deletion_budget_limits_what_one_run_forgets(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    policy = daily(rig, server.id, last=10)
    rig.engine.drain(rig.clock.now() + 5 * DAY + timedelta(hours=2))
    assert len(live_images(rig)) == 6
    rig.policies.update(policy.id, PolicySpec(retention=RetentionPolicy(last=1)))
    rig.engine = Engine(rig.store, lambda _n: rig.sim, rig.clock, EngineSettings(deletion_budget=2))
    rig.engine.drain(rig.clock.now() + DAY)
    assert len(live_images(rig)) == 7 - 2
    rig.engine.drain(rig.clock.now() + DAY)
    assert len(live_images(rig)) == 8 - 4


def test_downtime_runs_late_once_then_records_missed(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    rig.policies.create(
        PolicySpec(
            name="windowed",
            targets=(server.id,),
            schedules=("0 1 * * *",),
            timezone="UTC",
            window_minutes=120,
            retention=RetentionPolicy(last=5),
        )
    )
    # the scheduler is down for three days and comes back 30 minutes after a fire time
    rig.clock.advance_to(rig.clock.now() + 3 * DAY + timedelta(hours=1, minutes=30))
    rig.engine.drain(rig.clock.now() + timedelta(hours=3))
    states = [(r.scheduled_for.day, r.state) for r in runs(rig)]
    assert states == [
        (1, RunState.MISSED),
        (2, RunState.MISSED),
        (3, RunState.MISSED),
        (4, RunState.SUCCEEDED),
    ]
    assert all("did not run it within" in (r.error or "") for r in runs(rig)[:3])


def test_coalesces_late_occurrences_inside_the_window(rig: Rig) -> None:
    """A window longer than the cron's interval is refused today; a policy stored before
    that check still coalesces the occurrences that pile up inside its window."""
    server = rig.sim.create_server("web")
    spec = PolicySpec(
        name="hourly",
        targets=(server.id,),
        schedules=("*/10 * * * *",),
        timezone="UTC",
        window_minutes=10,
        retention=RetentionPolicy(last=50),
    )
    with pytest.raises(InvalidInput, match="longer than the 10 minutes"):
        rig.policies.create(replace(spec, window_minutes=60))
    older = replace(rig.policies.preview(spec), window_minutes=60)
    now = rig.clock.now()
    rig.store.create_policy(older, [CronSchedule("*/10 * * * *").next_after(now)], now=now)
    rig.clock.advance_to(rig.clock.now() + timedelta(minutes=35))
    rig.engine.drain(rig.clock.now() + timedelta(minutes=65))
    states = [r.state for r in runs(rig)[:3]]
    assert states == [RunState.MISSED, RunState.MISSED, RunState.SUCCEEDED]
    assert "coalesced" in (runs(rig)[0].error or "")


def test_selector_follows_metadata_at_each_tick(rig: Rig) -> None:
    tagged = rig.sim.create_server("a", metadata={"backup": "yes"})
    other = rig.sim.create_server("b")
    daily(rig, selector="backup=yes")
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    assert {r.target for r in runs(rig)} == {tagged.id}
    rig.sim.set_server_metadata(other.id, {"backup": "yes"})
    rig.sim.delete_server_metadata(tagged.id, "backup")
    rig.engine.drain(rig.clock.now() + DAY)
    latest = runs(rig)[-1]
    assert latest.target == other.id and latest.state is RunState.SUCCEEDED
    assert len(rig.store.list_backups(BackupFilter(target=tagged.id))) == 1


def test_deleted_server_fails_the_run_and_keeps_its_backups(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    rig.sim.delete_server(server.id)
    rig.engine.drain(rig.clock.now() + DAY)
    last = runs(rig)[-1]
    assert last.state is RunState.FAILED and "no longer exists" in (last.error or "")
    assert len(rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))) == 1


def test_volume_backed_backup_is_image_plus_snapshots_and_expires_whole(rig: Rig) -> None:
    server = rig.sim.create_server("db", volume_backed=True, volumes=2)
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (first,) = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    kinds = sorted(a.kind.value for a in first.artifacts)
    assert kinds == ["image"] + ["volume-snapshot"] * 3  # root volume and two data volumes
    assert all(a.status is ArtifactStatus.AVAILABLE for a in first.artifacts)
    rig.engine.drain(rig.clock.now() + DAY)
    gone = rig.store.get_backup(first.id)
    assert gone.status is BackupStatus.DELETED
    assert all(a.status is ArtifactStatus.DELETED for a in gone.artifacts)
    snapshot_ids = {a.cloud_id for a in first.artifacts if a.kind is ArtifactKind.VOLUME_SNAPSHOT}
    live = {s.id for s in rig.sim.snapshots() if s.status != "deleted"}
    assert not snapshot_ids & live


def test_failed_deletion_is_recorded_and_retried(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (first,) = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    rig.sim.fail_next("delete_artifact", CloudUnavailable, count=3)
    rig.engine.drain(rig.clock.now() + DAY)
    done = rig.store.get_backup(first.id)
    assert done.status is BackupStatus.DELETED
    assert done.artifacts[0].delete_attempts == 3
    assert first.artifacts[0].cloud_id not in live_images(rig)


def test_expired_lease_is_taken_over_without_a_second_snapshot(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    rig.clock.advance_to(rig.clock.now() + DAY + timedelta(hours=1, minutes=5))
    rig.engine.scheduler.tick(rig.clock.now())
    [run] = rig.store.claim_runs(rig.clock.now(), "dead-worker", lease_seconds=60)
    # the dead worker got as far as asking Nova for the image, then vanished
    rig.store.update_run(run.id, run.attempt, state=RunState.SNAPSHOTTING)
    rig.sim.start_server_image(server.id, "orphan", {MARKER_RUN: run.id})
    rig.clock.advance(30)
    survivor = Worker(rig.store, rig.engine.runner, rig.clock, name="survivor")
    assert survivor.work_once() == 0
    rig.clock.advance(31)
    assert survivor.work_once() == 1
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    done = rig.store.get_run(run.id)
    assert done.state is RunState.SUCCEEDED and done.attempt >= 2
    assert len([i for i in rig.sim.images() if i.properties.get(MARKER_RUN) == run.id]) == 1


def test_two_policies_on_one_target_never_overlap(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    rig.sim.configure(replace(SimConfig(), image_base_seconds=600))
    daily(rig, server.id)
    daily(rig, server.id)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    done = runs(rig)
    assert [r.state for r in done] == [RunState.SUCCEEDED] * 2
    first, second = sorted(done, key=lambda r: r.finished_at or r.scheduled_for)
    second_start = min(
        s.started_at
        for s in rig.store.get_run(second.id).steps
        if s.name == "start" and s.outcome == "ok"
    )
    assert first.finished_at is not None and second_start >= first.finished_at


class _Broken:
    """A cloud whose every call raises ``error`` (a misconfiguration or a bug)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> object:
        def fail(*_args: object, **_kwargs: object) -> None:
            raise self.error

        return fail


def test_a_configuration_error_fails_the_run_with_its_message(rig: Rig) -> None:
    daily(rig, "web")
    broken = _Broken(InvalidInput("cloud 'alpha' was not found in clouds.yaml"))
    rig.engine = Engine(rig.store, lambda _n: broken, rig.clock)  # type: ignore[arg-type,return-value]
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (run,) = runs(rig)
    assert run.state is RunState.FAILED
    assert "was not found in clouds.yaml" in (run.error or "")


def test_an_unexpected_error_is_recorded_retried_then_fails(rig: Rig) -> None:
    daily(rig, "web")
    broken = _Broken(RuntimeError("boom"))
    rig.engine = Engine(rig.store, lambda _n: broken, rig.clock)  # type: ignore[arg-type,return-value]
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    (run,) = runs(rig)
    assert run.state is RunState.FAILED
    assert "internal-error" in (run.error or "") and "boom" in (run.error or "")
    steps = rig.store.get_run(run.id).steps
    assert [s.outcome for s in steps].count("retry") >= 3


def test_a_transient_poll_error_late_in_a_long_upload_is_retried(rig: Rig) -> None:
    server = rig.sim.create_server("big")
    rig.sim.configure(replace(SimConfig(), image_base_seconds=3 * 3600))
    daily(rig, server.id)
    rig.engine = Engine(
        rig.store, lambda _n: rig.sim, rig.clock, EngineSettings(poll_interval=timedelta(minutes=5))
    )
    rig.engine.drain(rig.clock.now() + timedelta(hours=1, minutes=1))
    rig.engine.drain(rig.clock.now() + timedelta(minutes=44))  # 45 minutes into the upload
    assert runs(rig)[0].state is RunState.WAITING
    rig.sim.fail_next("artifact_statuses", CloudUnavailable, count=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=4))
    (run,) = runs(rig)
    assert run.state is RunState.SUCCEEDED, run.error
    assert "retry" in [s.outcome for s in rig.store.get_run(run.id).steps]


def test_a_policy_whose_cloud_is_misconfigured_does_not_stop_the_others(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    rig.policies.create(
        PolicySpec(
            name="elsewhere",
            selector="backup=yes",
            schedules=("0 1 * * *",),
            cloud="gone-from-clouds-yaml",
            keep_all=True,
        )
    )

    def clouds(name: str | None) -> object:
        if name == "gone-from-clouds-yaml":
            raise InvalidInput("cloud 'gone-from-clouds-yaml' is not defined in clouds.yaml")
        return rig.sim

    rig.engine = Engine(rig.store, clouds, rig.clock)  # type: ignore[arg-type]
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    by_target = {r.target: r for r in runs(rig)}
    assert by_target[server.id].state is RunState.SUCCEEDED
    failed = by_target["selector:backup=yes"]
    assert failed.state is RunState.FAILED and "clouds.yaml" in (failed.error or "")


def test_runs_no_worker_took_in_time_are_recorded_missed(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    scheduler_only = Engine(rig.store, lambda _n: rig.sim, rig.clock, run_worker=False)
    scheduler_only.drain(rig.clock.now() + timedelta(hours=1, minutes=5))
    rig.clock.advance(3600)  # the workers were down for an hour
    rig.engine.drain(rig.clock.now() + timedelta(minutes=5))
    (run,) = runs(rig)
    assert run.state is RunState.MISSED and "no worker took it" in (run.error or "")
    assert rig.sim.api_calls().get("start_server_image", 0) == 0


def test_a_server_name_reused_by_another_server_never_counts_as_its_backup(rig: Rig) -> None:
    """Backups are keyed by the server's id even when the policy names the server."""
    old = rig.sim.create_server("web")
    daily(rig, "web", last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    [first] = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    assert first.target == old.id
    rig.sim.delete_server(old.id)  # decommissioned: this backup is all that is left of it
    new = rig.sim.create_server("web")  # an unrelated server takes the name
    rig.engine.drain(rig.clock.now() + DAY)
    assert rig.store.get_backup(first.id).status is BackupStatus.AVAILABLE
    assert first.artifacts[0].cloud_id in live_images(rig)
    [second] = [b for b in rig.store.list_backups() if b.id != first.id]
    assert (second.target, second.status) == (new.id, BackupStatus.AVAILABLE)


def test_a_server_with_the_longest_name_nova_allows_is_backed_up(rig: Rig) -> None:
    """The image name is shortened so that Nova's and Cinder's 255-character limits hold."""
    server = rig.sim.create_server("w" * 255, volume_backed=True, volumes=1)
    daily(rig, server.name)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    [run] = runs(rig)
    assert run.state is RunState.SUCCEEDED, run.error
    [image] = [i for i in rig.sim.images() if i.server_id == server.id]
    assert image.name.startswith("stackback-www") and image.name.endswith("T0100Z")
    assert len(f"snapshot for {image.name}") == 255


def test_rotation_trouble_after_forgetting_never_fails_the_run(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's backup is good and older ones may be on their way out: it succeeds, saying so."""
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))

    def broken(_backups: object) -> int:
        raise InvalidInput("no cloud selected")

    monkeypatch.setattr(rig.engine.runner.collector, "collect", broken)
    rig.engine.drain(rig.clock.now() + DAY)
    last = runs(rig)[-1]
    assert last.state is RunState.SUCCEEDED
    assert last.error == "rotation did not finish: invalid-input: no cloud selected"
    assert [s.outcome for s in rig.store.get_run(last.id).steps][-1] == "succeeded"
    everything = rig.store.list_backups(BackupFilter(include_deleted=True))
    # the forgotten one is finished by the engine's own collection pass
    assert sorted(b.status.value for b in everything) == ["available", "deleted"]


def _oldest_on_a_cloud_gone(rig: Rig, days: int) -> tuple[Backup, Any]:
    """Daily backups of a server for ``days``; the oldest recorded on a cloud no longer
    configured; and a cloud resolver that says so for it."""
    server = rig.sim.create_server("web")
    daily(rig, server.id, last=3)
    rig.engine.drain(rig.clock.now() + days * DAY + timedelta(hours=2))
    oldest = min(rig.store.list_backups(), key=lambda b: b.created_at)
    rig.store.update_backup(oldest.id, cloud="gone")

    def clouds(name: str | None) -> object:
        if name == "gone":
            raise InvalidInput("cloud 'gone' was not found in clouds.yaml")
        return rig.sim

    return oldest, clouds


def test_one_backup_the_collector_cannot_reach_does_not_stop_the_others(rig: Rig) -> None:
    oldest, clouds = _oldest_on_a_cloud_gone(rig, days=2)
    rig.policies.update("p0", PolicySpec(retention=RetentionPolicy(last=1)))
    rig.engine = Engine(rig.store, clouds, rig.clock)
    rig.engine.drain(rig.clock.now() + DAY)  # raises nothing
    last = runs(rig)[-1]
    assert (last.state, last.error) == (RunState.SUCCEEDED, None)
    by_id = {b.id: b.status for b in rig.store.list_backups(BackupFilter(include_deleted=True))}
    assert by_id.pop(oldest.id) is BackupStatus.DELETING  # left for a later pass
    assert sorted(s.value for s in by_id.values()) == ["available", "deleted", "deleted"]


def test_backup_delete_reports_why_the_collector_could_not_delete(rig: Rig) -> None:
    oldest, clouds = _oldest_on_a_cloud_gone(rig, days=1)
    operator = BackupService(rig.store, clouds, rig.clock)
    with pytest.raises(InvalidInput, match="'gone' was not found"):
        operator.delete(oldest.id)
    assert rig.store.get_backup(oldest.id).status is BackupStatus.DELETING  # retried later


def test_a_run_taken_over_after_its_start_window_is_missed(rig: Rig) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    rig.clock.advance_to(rig.clock.now() + DAY + timedelta(hours=1, minutes=1))
    rig.engine.scheduler.tick(rig.clock.now())
    [run] = rig.store.claim_runs(rig.clock.now(), "dead-worker", lease_seconds=60)
    rig.clock.advance(2 * 3600)  # the worker died before starting; nobody noticed for 2 hours
    rig.engine.drain(rig.clock.now() + timedelta(minutes=5))
    done = rig.store.get_run(run.id)
    assert (done.state, done.attempt) == (RunState.MISSED, 2)
    assert "its worker stopped" in (done.error or "")
    assert rig.sim.api_calls().get("start_server_image", 0) == 0


def test_a_worker_whose_lease_went_after_recording_its_backup_starts_no_image(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    rig.clock.advance_to(rig.clock.now() + DAY + timedelta(hours=1, minutes=1))
    rig.engine.scheduler.tick(rig.clock.now())
    [run] = rig.store.claim_runs(rig.clock.now(), "stale", lease_seconds=60)
    record = rig.store.ensure_backup

    def record_then_stall(*args: Any, **kwargs: Any) -> Any:
        backup = record(*args, **kwargs)
        rig.clock.advance(61)  # stalled past its lease: another worker takes the run over
        [taken] = rig.store.claim_runs(rig.clock.now(), "survivor", lease_seconds=60)
        assert taken.id == run.id
        return backup

    monkeypatch.setattr(rig.store, "ensure_backup", record_then_stall)
    rig.engine.runner.advance(run)
    assert rig.sim.api_calls().get("start_server_image", 0) == 0
    monkeypatch.undo()
    rig.clock.advance(61)
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    assert rig.store.get_run(run.id).state is RunState.SUCCEEDED
    assert rig.sim.api_calls()["start_server_image"] == 1


class _Crash(BaseException):
    """A worker dying at a failpoint (not an Exception: nothing may catch it)."""


def test_a_resumed_snapshot_finds_its_server_by_id_not_by_the_name_now_taken(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = rig.sim.create_server("web")
    daily(rig, "web", last=1)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    [first] = rig.store.list_backups()

    def crash_on_the_second_backup(name: str) -> None:
        if name == "after-backup-record" and len(rig.store.list_backups()) == 2:
            raise _Crash(name)

    monkeypatch.setattr(runner_module, "failpoint", crash_on_the_second_backup)
    doomed = Engine(rig.store, lambda _n: rig.sim, rig.clock, worker_name="doomed")
    with pytest.raises(_Crash):
        doomed.drain(rig.clock.now() + DAY)
    monkeypatch.undo()
    crashed = runs(rig)[-1]
    rig.sim.delete_server(old.id)  # while the lease runs out, the name passes to another server
    rig.sim.create_server("web")
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    done = rig.store.get_run(crashed.id)
    assert done.state is RunState.FAILED and "no longer exists" in (done.error or "")
    assert rig.store.get_backup(first.id).status is BackupStatus.AVAILABLE
    assert first.artifacts[0].cloud_id in live_images(rig)
    assert live_images(rig) == [first.artifacts[0].cloud_id]  # nothing taken of the new server


def _crashed_after_start(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> tuple[ServerInfo, Run]:
    """A server "web", its nightly policy naming it, and the run whose worker died right
    after the start step resolved the server."""
    old = rig.sim.create_server("web")
    daily(rig, "web", last=1)

    def crash_after_start(name: str) -> None:
        if name == "after-start":
            raise _Crash(name)

    monkeypatch.setattr(runner_module, "failpoint", crash_after_start)
    doomed = Engine(rig.store, lambda _n: rig.sim, rig.clock, worker_name="doomed")
    with pytest.raises(_Crash):
        doomed.drain(rig.clock.now() + timedelta(hours=2))
    monkeypatch.undo()
    [crashed] = runs(rig)
    return old, crashed


def test_a_run_resumed_before_its_backup_record_keeps_the_server_its_start_resolved(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, crashed = _crashed_after_start(rig, monkeypatch)
    assert (crashed.state, crashed.server_id) == (RunState.SNAPSHOTTING, old.id)
    rig.sim.delete_server(old.id)  # while the lease runs out, the name passes to another server
    newcomer = rig.sim.create_server("web")
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    done = rig.store.get_run(crashed.id)
    assert done.state is RunState.FAILED and "no longer exists" in (done.error or "")
    assert live_images(rig, newcomer.id) == []


def test_a_run_started_before_0005_resumes_on_the_server_its_start_step_journalled(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0005 filled in the server id only of runs that had a backup record."""
    old, crashed = _crashed_after_start(rig, monkeypatch)
    rig.store.update_run(crashed.id, crashed.attempt, server_id=None)  # as 0005 left it
    rig.sim.delete_server(old.id)  # while the lease runs out, the name passes to another server
    newcomer = rig.sim.create_server("web")
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    done = rig.store.get_run(crashed.id)
    assert done.server_id == old.id
    assert done.state is RunState.FAILED and "no longer exists" in (done.error or "")
    assert live_images(rig, newcomer.id) == []


def test_a_waiting_run_started_before_0005_holds_its_server_once_resumed(rig: Rig) -> None:
    """A run 0005 left without a server id gets it from its backup record when it is next
    polled; from then on a run naming the server otherwise waits for it."""
    server = rig.sim.create_server("web", volume_backed=True)  # no 409 from Nova to hide it
    rig.sim.configure(replace(SimConfig(), volume_snapshot_seconds=600))
    backups = BackupService(rig.store, lambda _n: rig.sim, rig.clock)
    legacy = backups.backup_now("web", label="manual", keep_last=None, cloud=None)
    [claimed] = rig.store.claim_runs(rig.clock.now(), "w", lease_seconds=60)
    rig.engine.runner.advance(claimed)
    waiting = rig.store.get_run(legacy.id)
    assert waiting.state is RunState.WAITING
    rig.store.update_run(legacy.id, waiting.attempt, server_id=None)  # as 0005 left it
    rig.clock.advance(60)
    [resumed] = rig.store.claim_runs(rig.clock.now(), "w", lease_seconds=60)
    rig.engine.runner.poll([resumed])
    assert rig.store.get_run(legacy.id).server_id == server.id
    by_id = backups.backup_now(server.id, label="manual", keep_last=None, cloud=None)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    first, second = rig.store.get_run(legacy.id), rig.store.get_run(by_id.id)
    assert (first.state, second.state) == (RunState.SUCCEEDED, RunState.SUCCEEDED)
    assert "deferred" in [s.outcome for s in second.steps if s.name == "start"]
    second_start = min(
        s.started_at for s in second.steps if s.name == "start" and s.outcome == "ok"
    )
    assert first.finished_at is not None and second_start >= first.finished_at


def _retried_once(rig: Rig) -> Run:
    """A scheduled run whose first attempt got a 5xx: recorded as a retry, put back."""
    server = rig.sim.create_server("web")
    daily(rig, server.id)
    rig.clock.advance_to(rig.clock.now() + DAY + timedelta(hours=1, minutes=1))
    rig.engine.scheduler.tick(rig.clock.now())
    rig.sim.fail_next("get_server", CloudUnavailable, count=1)
    [run] = rig.store.claim_runs(rig.clock.now(), "w1", lease_seconds=60)
    rig.engine.runner.advance(run)
    assert rig.store.get_run(run.id).steps[-1].outcome == "retry"
    return run


def test_a_failing_step_backs_off_as_the_scheduler_does_with_jitter(rig: Rig) -> None:
    run = _retried_once(rig)
    first = rig.store.get_run(run.id)
    failed_at = first.steps[-1].started_at
    assert first.not_before is not None
    base = EngineSettings().retry_base
    assert failed_at + base * 0.9 <= first.not_before <= failed_at + base  # base, less jitter
    rig.clock.advance_to(first.not_before)
    rig.sim.fail_next("get_server", CloudUnavailable, count=1)
    [again] = rig.store.claim_runs(rig.clock.now(), "w1", lease_seconds=60)
    rig.engine.runner.advance(again)
    second = rig.store.get_run(run.id)
    assert second.not_before is not None and second.steps[-1].outcome == "retry"
    failing_for = rig.clock.now() - failed_at  # the streak began with the first retry
    expected = EngineSettings().retry_strategy.decide(
        now=rig.clock.now(),
        deadline=run.scheduled_for + EngineSettings().retry_window,
        failing_for=failing_for,
        key=run.id,
    )
    assert second.not_before == expected.retry_at
    plain = base + failing_for  # the wait doubles: base plus as long as it has failed
    assert rig.clock.now() + plain * 0.9 <= second.not_before <= rig.clock.now() + plain


def test_a_retried_run_whose_next_worker_died_is_missed_after_its_window(rig: Rig) -> None:
    run = _retried_once(rig)
    rig.clock.advance(600)
    [again] = rig.store.claim_runs(rig.clock.now(), "dead-worker", lease_seconds=60)
    assert again.id == run.id
    rig.clock.advance(2 * 3600)  # that worker died at once; nobody took over for 2 hours
    rig.engine.drain(rig.clock.now() + timedelta(minutes=5))
    done = rig.store.get_run(run.id)
    assert (done.state, done.attempt) == (RunState.MISSED, 3)
    assert "its worker stopped" in (done.error or "")
    assert rig.sim.api_calls().get("start_server_image", 0) == 0


def test_a_run_retried_until_its_window_ends_fails_with_the_error(rig: Rig) -> None:
    run = _retried_once(rig)
    rig.clock.advance(2 * 3600)  # the workers were down when the retry was due
    rig.engine.drain(rig.clock.now() + timedelta(minutes=5))
    done = rig.store.get_run(run.id)
    assert done.state is RunState.FAILED
    assert (done.error or "").startswith("cloud-unavailable: ")
    assert "still failing at the end of the retry window" in (done.error or "")
    assert rig.sim.api_calls().get("start_server_image", 0) == 0


def labelled_nightly_backups(
    rig: Rig, label: str, *, days: int
) -> tuple[ServerInfo, Policy, list[Backup]]:
    """A server, its nightly policy with ``label``, and the ``days`` backups it has taken."""
    web = rig.sim.create_server("web")
    policy = rig.policies.create(
        PolicySpec(
            name="nightly",
            targets=(web.id,),
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(daily=7),
            label=label,
        )
    )
    rig.engine.drain(rig.clock.now() + (days - 1) * DAY + timedelta(hours=2))
    nightly = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    assert len(nightly) == days
    return web, policy, nightly


def test_a_manual_rotation_never_forgets_the_backups_of_a_deleted_policy(rig: Rig) -> None:
    """Deleting a policy keeps its backups: a label's keep-last counts manual backups only."""
    web, policy, nightly = labelled_nightly_backups(rig, "pre-upgrade", days=3)
    rig.policies.delete([policy.id])
    manual = BackupService(rig.store, lambda _n: rig.sim, rig.clock).backup_now(
        web.id, label="pre-upgrade", keep_last=1, cloud=None
    )
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    assert rig.store.get_run(manual.id).state is RunState.SUCCEEDED
    for backup in nightly:
        assert rig.store.get_backup(backup.id).status is BackupStatus.AVAILABLE
        assert backup.artifacts[0].cloud_id in live_images(rig)


def test_a_run_never_forgets_its_own_new_backup_when_the_clock_stepped_back(rig: Rig) -> None:
    """An older backup stamped in the future (a clock later corrected) does not outrank it."""
    web = rig.sim.create_server("web")
    backups = BackupService(rig.store, lambda _n: rig.sim, rig.clock)
    first = backups.backup_now(web.id, label="manual", keep_last=1, cloud=None)
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    older = rig.store.backup_for_run(first.id)
    assert older is not None
    rig.store.update_backup(older.id, created_at=rig.clock.now() + timedelta(hours=2))
    second = backups.backup_now(web.id, label="manual", keep_last=1, cloud=None)
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    own = rig.store.backup_for_run(second.id)
    assert own is not None
    assert rig.store.get_run(second.id).state is RunState.SUCCEEDED
    assert own.status is BackupStatus.AVAILABLE
    assert own.reasons == ("this run's new backup",)
    assert own.artifacts[0].cloud_id in live_images(rig)


def test_a_server_named_by_name_and_by_id_never_has_two_active_runs(rig: Rig) -> None:
    """Run targets are strings as given; the start step also holds the server's id."""
    server = rig.sim.create_server("web", volume_backed=True)  # no 409 from Nova to hide it
    rig.sim.configure(replace(SimConfig(), image_base_seconds=600))
    backups = BackupService(rig.store, lambda _n: rig.sim, rig.clock)
    by_name = backups.backup_now("web", label="manual", keep_last=None, cloud=None)
    by_id = backups.backup_now(server.id, label="manual", keep_last=None, cloud=None)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    first, second = sorted(
        (rig.store.get_run(by_name.id), rig.store.get_run(by_id.id)),
        key=lambda r: r.finished_at or r.scheduled_for,
    )
    assert (first.state, second.state) == (RunState.SUCCEEDED, RunState.SUCCEEDED)
    second_start = min(
        s.started_at for s in second.steps if s.name == "start" and s.outcome == "ok"
    )
    assert first.finished_at is not None and second_start >= first.finished_at
    assert "deferred" in [s.outcome for s in second.steps if s.name == "start"]


def test_a_policy_deleted_while_its_run_is_under_way_lets_the_run_finish(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its backup is recorded without the policy id (gone), under the policy's name."""
    server = rig.sim.create_server("web")
    policy = daily(rig, server.id)

    def delete_the_policy_after_start(name: str) -> None:
        if name == "after-start":  # between the start step and the backup record
            rig.policies.delete([policy.id])

    monkeypatch.setattr(runner_module, "failpoint", delete_the_policy_after_start)
    rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    [run] = runs(rig)
    done = rig.store.get_run(run.id)
    assert done.state is RunState.SUCCEEDED, done.error
    assert {s.outcome for s in done.steps} == {"ok"}
    backup = rig.store.backup_for_run(run.id)
    assert backup is not None
    assert (backup.policy_id, backup.policy_name, backup.status) == (
        None,
        policy.name,
        BackupStatus.AVAILABLE,
    )
