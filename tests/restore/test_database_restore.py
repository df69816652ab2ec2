"""Restoring a database backup: a new Trove instance from it (``restorePoint``) with what was
recorded at backup time, each part overridable; recorded and resumable like a server's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from stackback.engine import restore as restore_module
from stackback.errors import InvalidInput
from stackback.policy import Backup, BackupStatus, RunState
from stackback.restoreplan import RestoreOverrides, RestoreState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.store.sql import BackupFilter
from tests.restore.conftest import RestoreRig


def database_backup(rig: RestoreRig) -> Backup:
    rig.sim.create_database("orders", datastore="mysql", version="8.0", volume_size=5)
    PolicyService(rig.store, rig.clock).create(
        PolicySpec(
            name="orders",
            targets=("orders",),
            kind="database-backup",
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=3),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(days=1))
    (backup,) = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    run = rig.store.get_run(backup.run_id or "")
    assert run.state is RunState.SUCCEEDED
    return backup


def test_a_database_backup_is_restored_with_what_was_recorded(rig: RestoreRig) -> None:
    backup = database_backup(rig)
    job = rig.restores.start(backup.id, overrides=RestoreOverrides("orders-copy"))
    done = rig.runner().drive(job.id)
    assert done.state is RestoreState.SUCCEEDED, done.error
    copy = rig.sim.get_database("orders-copy")
    assert copy.status == "ACTIVE" and done.server_id == copy.id
    assert (copy.spec.flavor, copy.spec.volume_size) == ("m1.small", 5)
    assert (copy.spec.datastore, copy.spec.datastore_version) == ("mysql", "8.0")


def test_each_recorded_part_can_be_overridden(rig: RestoreRig) -> None:
    backup = database_backup(rig)
    overrides = RestoreOverrides(
        "bigger", flavor="m1.medium", volume_size=20, datastore_version="5.7"
    )
    planned = rig.restores.plan(backup.id, overrides=overrides).plan
    assert planned.database is not None and planned.database.volume_size == 20
    done = rig.runner().drive(rig.restores.start(backup.id, overrides=overrides).id)
    assert done.state is RestoreState.SUCCEEDED, done.error
    copy = rig.sim.get_database("bigger")
    assert (copy.spec.flavor, copy.spec.volume_size) == ("m1.medium", 20)
    assert copy.spec.datastore_version == "5.7"


def test_a_taken_name_is_refused_before_anything_is_made(rig: RestoreRig) -> None:
    backup = database_backup(rig)
    with pytest.raises(InvalidInput, match="exists already"):
        rig.restores.start(backup.id, overrides=RestoreOverrides("orders"))
    assert len(rig.sim.databases()) == 1


class Crash(BaseException):
    pass


@pytest.fixture
def crash_after_create(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    armed = ["after-restore-database"]

    def failpoint(name: str) -> None:
        if name in armed:
            armed.remove(name)
            raise Crash(name)

    monkeypatch.setattr(restore_module, "failpoint", failpoint)
    yield


def test_a_resumed_restore_finds_its_instance(rig: RestoreRig, crash_after_create: None) -> None:
    backup = database_backup(rig)
    job = rig.restores.start(backup.id, overrides=RestoreOverrides("orders-copy"))
    with pytest.raises(Crash):
        rig.runner(owner="doomed").drive(job.id)
    rig.clock.advance(600)  # the lease runs out
    done = rig.runner(owner="survivor").drive(job.id)
    assert done.state is RestoreState.SUCCEEDED, done.error
    assert [d.name for d in rig.sim.databases()].count("orders-copy") == 1


def test_a_restore_that_fails_removes_its_instance(rig: RestoreRig) -> None:
    backup = database_backup(rig)
    rig.sim.fail_next_database_boot()
    done = rig.runner().drive(rig.restores.start(backup.id, overrides=RestoreOverrides("x")).id)
    assert done.state is RestoreState.FAILED and "ERROR" in (done.error or "")
    assert [d.name for d in rig.sim.databases()] == ["orders"]
