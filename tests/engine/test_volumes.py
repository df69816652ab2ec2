"""Volume policies end to end on the simulator: Cinder snapshots, and Cinder backup chains."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import pytest

from stackback.chains import FOR_THE_CHAIN, FOREIGN_CHILD, ancestors
from stackback.engine.collector import CHILD_STILL_IN_CLOUD
from stackback.errors import InvalidInput
from stackback.policy import (
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    RunState,
)
from stackback.ports import MARKER_BACKUP, MARKER_CREATED_BY, MARKER_RUN, ArtifactRef
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from stackback.services.reconcile import Reconciler
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import BackupFilter, RunFilter, SqlStore
from tests.engine.conftest import Rig


def _runs_succeeded(rig: Rig) -> None:
    runs = rig.store.list_runs(RunFilter())
    assert runs and all(r.state is RunState.SUCCEEDED for r in runs), [
        (r.state, r.error) for r in runs
    ]


def test_volume_snapshots_of_an_in_use_volume_by_name_rotate(rig: Rig) -> None:
    server = rig.sim.create_server("db1")
    volume = rig.sim.create_volume_standalone("data1", size_gb=2, server_id=server.id)
    assert volume.status == "in-use"
    rig.policies.create(
        PolicySpec(
            name="vols",
            kind="volume-snapshot",
            volumes=("data1",),
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=2),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(days=5, hours=2))
    _runs_succeeded(rig)
    alive = rig.store.list_backups(BackupFilter(target=volume.id))
    assert [b.status for b in alive] == [BackupStatus.AVAILABLE] * 2
    assert all(b.kind is BackupKind.VOLUME_SNAPSHOT and b.target_name == "data1" for b in alive)
    snapshots = {s.id: s for s in rig.sim.snapshots()}
    assert sorted(snapshots) == sorted(b.artifacts[0].cloud_id for b in alive)
    for b in alive:
        meta = snapshots[b.artifacts[0].cloud_id].metadata
        assert meta[MARKER_CREATED_BY] == "stackback" and meta[MARKER_BACKUP] == b.id


def test_volume_selector_picks_volumes_by_metadata(rig: Rig) -> None:
    tagged = rig.sim.create_volume_standalone("a", metadata={"backup": "yes"})
    rig.sim.create_volume_standalone("b", metadata={"backup": "no"})
    rig.policies.create(
        PolicySpec(
            name="sel",
            kind="volume-backup",
            volume_selector="backup=yes",
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=3),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(days=2, hours=2))
    _runs_succeeded(rig)
    backups = rig.store.list_backups(BackupFilter())
    assert {b.target for b in backups} == {tagged.id}
    assert all(b.artifacts[0].kind is ArtifactKind.VOLUME_BACKUP for b in backups)
    assert all(b.parent_id is None for b in backups), "no chain asked for: every one is full"


def test_incremental_chains_record_cinders_parent_and_rotate_children_first(rig: Rig) -> None:
    volume = rig.sim.create_volume_standalone("chain")
    rig.policies.create(
        PolicySpec(
            name="chained",
            kind="volume-backup",
            volumes=(volume.id,),
            full_every=3,
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=2),
        )
    )
    with patch("stackback.engine.collector.log") as collector_log:
        rig.engine.drain(rig.clock.now() + timedelta(days=8, hours=2))
    _runs_succeeded(rig)
    everything = rig.store.list_backups(BackupFilter(include_deleted=True, limit=None))
    assert len(everything) >= 8
    by_age = sorted(everything, key=lambda b: b.created_at)
    # a full every 3: full, inc, inc, full, inc, inc, full...
    assert [b.parent_id is None for b in by_age] == [i % 3 == 0 for i in range(len(by_age))]
    for previous, backup in itertools.pairwise(by_age):
        if backup.parent_id is not None:
            assert backup.parent_id == previous.id, "Cinder's parent is recorded as ours"
    alive = [b for b in everything if b.status is BackupStatus.AVAILABLE]
    for kept in alive:
        for parent in ancestors(kept, everything):
            assert parent.status is BackupStatus.AVAILABLE, "a kept backup lost its parent"
    assert any(FOR_THE_CHAIN in b.reasons for b in alive)
    cloud_ids = {i.ref.id for i in rig.sim.list_marked_artifacts()}
    assert cloud_ids == {b.artifacts[0].cloud_id for b in alive}
    warnings = [c for c in collector_log.warning.call_args_list if "deleting backup" in str(c)]
    assert warnings == [], "Cinder's refusal surfaced"


def test_a_resumed_run_finds_its_own_backup_instead_of_a_second(rig: Rig) -> None:
    volume = rig.sim.create_volume_standalone("resume")
    rig.policies.create(
        PolicySpec(
            name="resume",
            kind="volume-backup",
            volumes=(volume.id,),
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=3),
        )
    )

    class Killed(BaseException):
        pass

    def die(name: str) -> None:
        if name == "after-create-volume-artifact":
            raise Killed

    with patch("stackback.engine.volumes.failpoint", die), pytest.raises(Killed):
        rig.engine.drain(rig.clock.now() + timedelta(hours=2))
    run = rig.store.list_runs(RunFilter())[0]
    assert run.state is RunState.SNAPSHOTTING
    rig.engine.drain(rig.clock.now() + timedelta(hours=3))
    _runs_succeeded(rig)
    (backup,) = rig.store.list_backups(BackupFilter())
    made = [i for i in rig.sim.list_marked_artifacts() if i.metadata[MARKER_RUN] == run.id]
    assert [i.ref.id for i in made] == [a.cloud_id for a in backup.artifacts]
    assert rig.sim.api_calls()["start_volume_backup"] == 1


def test_volume_options_need_a_volume_kind(rig: Rig) -> None:
    with pytest.raises(InvalidInput, match="--kind volume-snapshot"):
        rig.policies.create(
            PolicySpec(name="x", volumes=("v",), schedules=("0 1 * * *",), keep_all=True)
        )
    with pytest.raises(InvalidInput, match="give --volume"):
        rig.policies.create(
            PolicySpec(
                name="x",
                kind="volume-backup",
                targets=("srv",),
                schedules=("0 1 * * *",),
                keep_all=True,
            )
        )
    with pytest.raises(InvalidInput, match="full-every"):
        rig.policies.create(
            PolicySpec(
                name="x",
                kind="volume-snapshot",
                volumes=("v",),
                full_every=3,
                schedules=("0 1 * * *",),
                keep_all=True,
            )
        )


def test_a_foreign_child_blocks_its_ancestors_and_says_so(rig: Rig) -> None:
    volume = rig.sim.create_volume_standalone("shared")
    rig.policies.create(
        PolicySpec(
            name="blocked",
            kind="volume-backup",
            volumes=(volume.id,),
            full_every=2,
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=1),
        )
    )
    start = rig.clock.now()
    rig.engine.drain(start + timedelta(days=1, hours=2))  # a full, then an incremental
    ours = sorted(rig.store.list_backups(BackupFilter()), key=lambda b: b.created_at)
    full, inc = ours[-2], ours[-1]
    assert inc.parent_id == full.id
    # someone else's incremental Cinder backup, built by Cinder on stackback's newest
    theirs = rig.sim.start_volume_backup(volume.id, "theirs", {}, incremental=True)
    rig.engine.drain(start + timedelta(days=5, hours=2))
    _runs_succeeded(rig)
    now_full, now_inc = rig.store.get_backup(full.id), rig.store.get_backup(inc.id)
    assert now_inc.status is BackupStatus.AVAILABLE and now_full.status is BackupStatus.AVAILABLE
    assert now_inc.error is not None and FOREIGN_CHILD in now_inc.error
    assert now_full.reasons == (FOR_THE_CHAIN,)
    assert theirs.id in {i.ref.id for i in rig.sim.artifact_statuses([theirs]).values()}
    assert rig.sim.artifact_statuses([theirs])[theirs].status is ArtifactStatus.AVAILABLE


def test_a_parent_waits_while_cinder_still_deletes_its_child(rig: Rig) -> None:
    """Cinder deletes a backup in the background: its parent is not asked for meanwhile (a
    refusal then, read after the child had gone, would pass for a foreign child); neither a
    failure nor a foreign child, it goes on a later pass."""
    volume = rig.sim.create_volume_standalone("slow")
    rig.policies.create(
        PolicySpec(
            name="slow",
            kind="volume-backup",
            volumes=(volume.id,),
            full_every=3,
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=5),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(days=1, hours=2))
    full, inc = sorted(rig.store.list_backups(BackupFilter()), key=lambda b: b.created_at)[-2:]
    assert inc.parent_id == full.id
    rig.store.update_backup(inc.id, status=BackupStatus.DELETED)  # recorded gone, still in Cinder
    rig.store.update_backup(full.id, status=BackupStatus.DELETING)
    assert rig.engine.collector.collect([full]) == 0
    waiting = rig.store.get_backup(full.id)
    assert waiting.status is BackupStatus.DELETING and waiting.error is None
    assert waiting.artifacts[0].error == CHILD_STILL_IN_CLOUD
    assert waiting.artifacts[0].delete_attempts == 0  # not asked
    rig.sim.delete_artifact(ArtifactRef(ArtifactKind.VOLUME_BACKUP, inc.artifacts[0].cloud_id))
    assert rig.engine.collector.collect([full]) == 1
    assert rig.store.get_backup(full.id).status is BackupStatus.DELETED


def test_reconcile_imports_cinder_backups_as_volume_backups(rig: Rig, tmp_path: Path) -> None:
    volume = rig.sim.create_volume_standalone("lost")
    rig.policies.create(
        PolicySpec(
            name="lost",
            kind="volume-backup",
            volumes=(volume.id,),
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=3),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(hours=26))
    originals = rig.store.list_backups(BackupFilter())
    assert originals
    engine = create_db_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    upgrade(engine)
    fresh = SqlStore(engine)  # the database lost: the policy with it
    try:
        report = Reconciler(fresh, rig.sim, rig.clock, cloud_name=None).run(apply=True)
        assert sorted(report.imported) == sorted(b.id for b in originals)
        for original in originals:
            imported = fresh.get_backup(original.id)
            assert (imported.kind, imported.target) == (BackupKind.VOLUME_BACKUP, volume.id)
    finally:
        fresh.dispose()


def _a_full_then_a_failed_incremental(rig: Rig, name: str) -> tuple[datetime, Backup, Backup]:
    """A volume-backup policy NAME (a full every 2, keep-last 1) whose first backup, a full,
    succeeds and whose second, an incremental, fails in Cinder; (start, full, failed)."""
    volume = rig.sim.create_volume_standalone(name)
    rig.policies.create(
        PolicySpec(
            name=name,
            kind="volume-backup",
            volumes=(volume.id,),
            full_every=2,
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=1),
        )
    )
    start = rig.clock.now()
    rig.engine.drain(start + timedelta(hours=2))  # a full
    (full,) = rig.store.list_backups(BackupFilter())
    rig.sim.kill_next_volume_backup(volume.id)
    rig.engine.drain(start + timedelta(days=1, hours=2))  # its incremental fails in Cinder
    failed = next(b for b in rig.store.list_backups(BackupFilter()) if b.id != full.id)
    return start, full, failed


def test_a_failed_incremental_is_deleted_before_its_parent_when_the_chain_goes(rig: Rig) -> None:
    """Cinder counts a failed incremental (``error``) against its parent and refuses to
    delete the parent while it exists: stackback deletes its own failed child first, so the
    chain is forgotten, without a failure and without retrying the parent for ever."""
    start, full, failed = _a_full_then_a_failed_incremental(rig, "flaky")
    assert failed.status is BackupStatus.FAILED and failed.parent_id == full.id
    failed_ref = ArtifactRef(ArtifactKind.VOLUME_BACKUP, failed.artifacts[0].cloud_id)
    in_cinder = rig.sim.artifact_statuses([failed_ref])[failed_ref]
    assert in_cinder.status is ArtifactStatus.FAILED and in_cinder.parent is not None

    with patch("stackback.engine.collector.log") as collector_log:
        rig.engine.drain(start + timedelta(days=3, hours=2))  # a new chain: the first goes
    everything = rig.store.list_backups(BackupFilter(include_deleted=True, limit=None))
    assert rig.store.get_backup(full.id).status is BackupStatus.DELETED
    gone = rig.store.get_backup(failed.id)
    assert gone.status is BackupStatus.DELETED and "failed incremental" in gone.reasons[0]
    alive = [b for b in everything if b.status is not BackupStatus.DELETED]
    assert all(b.status is BackupStatus.AVAILABLE and b.error is None for b in alive)
    assert {i.ref.id for i in rig.sim.list_marked_artifacts()} == {
        b.artifacts[0].cloud_id for b in alive
    }, "everything stackback made and forgot is gone from Cinder"
    assert rig.store.backups_to_collect(limit=10) == [], "nothing left to retry"
    warnings = [c for c in collector_log.warning.call_args_list if "deleting backup" in str(c)]
    assert warnings == [], "Cinder's refusal surfaced"
    failed_runs = [r for r in rig.store.list_runs(RunFilter()) if r.state is RunState.FAILED]
    assert len(failed_runs) == 1  # only the run whose backup failed


def test_a_protected_failed_incremental_keeps_its_parent(rig: Rig) -> None:
    start, full, failed = _a_full_then_a_failed_incremental(rig, "kept")
    rig.store.update_backup(failed.id, protected=True)
    rig.engine.drain(start + timedelta(days=3, hours=2))
    assert rig.store.get_backup(failed.id).status is BackupStatus.FAILED
    assert rig.store.get_backup(full.id).status is BackupStatus.AVAILABLE
    assert rig.store.backups_to_collect(limit=10) == [], "the parent is held, not retried"
    failed_ref = ArtifactRef(ArtifactKind.VOLUME_BACKUP, failed.artifacts[0].cloud_id)
    assert rig.sim.artifact_statuses([failed_ref])[failed_ref].status is ArtifactStatus.FAILED


def test_a_failed_incremental_recorded_without_its_parent_is_found_and_deleted_first(
    rig: Rig,
) -> None:
    """A failed incremental recorded before failed ones kept their parent: Cinder's refusal
    of the parent makes the collector find it (by the parent Cinder names), not hold the
    chain for a foreign child."""
    start, full, failed = _a_full_then_a_failed_incremental(rig, "legacy")
    rig.store.update_backup(failed.id, parent_id=None)  # as an older stackback recorded it
    rig.engine.drain(start + timedelta(days=3, hours=2))
    assert rig.store.get_backup(failed.id).status is BackupStatus.DELETED
    gone = rig.store.get_backup(full.id)
    assert gone.status is BackupStatus.DELETED, gone.error
    assert rig.store.backups_to_collect(limit=10) == []
    alive = rig.store.list_backups(BackupFilter())
    assert all(b.error is None for b in alive)
    assert {i.ref.id for i in rig.sim.list_marked_artifacts()} == {
        b.artifacts[0].cloud_id for b in alive
    }
