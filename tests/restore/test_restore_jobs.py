"""Restore jobs: what a backup records, restoring as new and in place, resuming after a
crash without creating anything twice, cleanup that leaves nothing behind, refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from stackback.errors import CloudNotFound, CloudUnavailable, Conflict, InvalidInput
from stackback.ports import MARKER_RESTORE, MARKER_RESTORE_ITEM, BootRequest
from stackback.restoreplan import CreatedResource, RestoreMode, RestoreOverrides, RestoreState
from stackback.services.backups import BackupService
from tests.restore.conftest import RestoreRig


class Crash(BaseException):
    """A worker dying mid-step (not an error the runner could catch)."""


class CrashAfter:
    """The simulator, except that ``operation`` does its work and then the worker dies."""

    def __init__(self, cloud: Any, operation: str) -> None:
        self._cloud = cloud
        self._operation = operation

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._cloud, name)
        if name != self._operation:
            return attribute

        def crashing(*args: Any, **kwargs: Any) -> Any:
            attribute(*args, **kwargs)
            raise Crash(name)

        return crashing


def _row(rig: RestoreRig, table: str, row_id: str) -> Any:
    with rig.sim._db.transaction() as conn:
        return conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()


def _volumes_of(rig: RestoreRig, server_id: str) -> list[Any]:
    with rig.sim._db.transaction() as conn:
        return conn.execute(
            "SELECT * FROM volumes WHERE server_id = ? ORDER BY device_name", (server_id,)
        ).fetchall()


# -- what a backup records -------------------------------------------------------------


def test_a_backup_records_what_a_restore_needs(rig: RestoreRig) -> None:
    server = rig.sim.create_server("db", volume_backed=True, volumes=1, key_name="ops")
    backup = rig.backup(server.id)
    spec = rig.store.restore_source(backup.id)
    assert spec is not None
    assert spec.flavor == "m1.small"
    assert spec.key_name == "ops"
    assert spec.availability_zone == "nova"
    assert spec.security_groups == ("default",)
    assert [n.network for n in spec.networks] == ["private"]
    assert spec.networks[0].fixed_ip
    root, data = spec.volumes
    assert (root.boot_index, root.device_name, root.size_gb) == (0, "/dev/vda", 1)
    assert (data.boot_index, data.device_name, data.volume_type) == (None, "/dev/vdb", "standard")
    assert root.delete_on_termination


# -- as new ------------------------------------------------------------------------------


def test_image_backed_restore_after_the_server_is_gone_boots_the_backup_image(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("web", key_name="ops")
    backup = rig.backup(source.id)
    old_ip = rig.sim.get_server(source.id).spec.networks[0].fixed_ip  # type: ignore[union-attr]
    rig.sim.delete_server(source.id)

    job = rig.restores.start(backup.id)
    job = rig.runner().drive(job.id)

    assert job.state is RestoreState.SUCCEEDED, job.error
    restored = rig.sim.get_server(job.server_id or "")
    assert restored.status == "ACTIVE"
    assert restored.metadata[MARKER_RESTORE] == job.id
    assert restored.spec is not None
    assert (restored.spec.flavor, restored.spec.key_name) == ("m1.small", "ops")
    assert restored.spec.networks[0].fixed_ip == old_ip  # the source is gone: its IP again
    assert _row(rig, "servers", restored.id)["base_image_ref"] == backup.artifacts[0].cloud_id
    assert any("gone" in note for note in job.plan.notes)


def test_volume_backed_restore_makes_volumes_from_the_snapshots_and_boots_them(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("db", volume_backed=True, volumes=1)
    backup = rig.backup(source.id)
    rig.sim.delete_server(source.id)

    job = rig.runner().drive(rig.restores.start(backup.id, overrides=RestoreOverrides("db2")).id)

    assert job.state is RestoreState.SUCCEEDED, job.error
    restored = rig.sim.get_server(job.server_id or "")
    assert restored.name == "db2" and restored.volume_backed
    volumes = _volumes_of(rig, restored.id)
    assert [(v["device_name"], v["boot_index"]) for v in volumes] == [
        ("/dev/vda", 0),
        ("/dev/vdb", None),
    ]
    snapshots = {a.cloud_id for a in backup.artifacts if a.kind.value == "volume-snapshot"}
    assert {v["snapshot_id"] for v in volumes} == snapshots
    assert sorted(json.loads(v["metadata"])[MARKER_RESTORE_ITEM] for v in volumes) == [
        "volume:/dev/vda",
        "volume:/dev/vdb",
    ]
    assert sorted(c.kind for c in job.created) == ["server", "volume", "volume"]


def test_the_worker_loop_carries_a_restore_out(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    job = rig.restores.start(backup.id)
    rig.engine.drain(rig.clock.now() + timedelta(minutes=10))
    assert rig.store.get_restore(job.id).state is RestoreState.SUCCEEDED


# -- crash and resume ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["create_volume", "boot_server"])
def test_a_restore_resumed_after_a_crash_creates_nothing_twice(
    rig: RestoreRig, operation: str
) -> None:
    source = rig.sim.create_server("db", volume_backed=True, volumes=1)
    backup = rig.backup(source.id)
    servers_before, volumes_before = rig.inventory()
    job = rig.restores.start(backup.id)

    crashing = rig.runner(CrashAfter(rig.sim, operation), owner="doomed")
    with pytest.raises(Crash):
        for _ in range(20):
            claimed = rig.store.claim_restores(
                rig.clock.now(), "doomed", lease_seconds=300, job_id=job.id
            )
            if claimed:
                crashing.advance(claimed[0])
            rig.clock.advance(5)
    rig.clock.advance(301)  # the dead worker's lease runs out; another takes the job over

    job = rig.runner(owner="survivor").drive(job.id)

    assert job.state is RestoreState.SUCCEEDED, job.error
    assert rig.inventory() == (servers_before + 1, volumes_before + 2)
    assert sorted(rig.marked(job.id)) == ["server", "volume", "volume"]


# -- failure, timeout, cancel: cleanup -------------------------------------------------------


def test_a_failed_boot_removes_everything_the_restore_made_and_nothing_else(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("db", volume_backed=True, volumes=1)
    backup = rig.backup(source.id)
    before = rig.inventory()
    rig.sim.fail_next_boot()

    job = rig.runner().drive(rig.restores.start(backup.id).id)

    assert job.state is RestoreState.FAILED
    assert job.error and "ERROR" in job.error
    assert rig.inventory() == before
    assert rig.marked(job.id) == []
    assert rig.sim.get_server(source.id).status == "ACTIVE"  # not ours: untouched
    assert len(_volumes_of(rig, source.id)) == 2


def test_the_hard_timeout_fails_the_restore_and_cleans_up(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    before = rig.inventory()
    rig.sim.configure(replace(rig.sim.config(), server_boot_seconds=3600.0))

    job = rig.restores.start(backup.id, timeout=timedelta(minutes=5))
    job = rig.runner().drive(job.id)

    assert job.state is RestoreState.FAILED
    assert job.error and "timed out" in job.error
    assert rig.inventory() == before


def test_cancel_removes_what_the_restore_made(rig: RestoreRig) -> None:
    source = rig.sim.create_server("db", volume_backed=True, volumes=1)
    backup = rig.backup(source.id)
    before = rig.inventory()
    job = rig.restores.start(backup.id)
    runner = rig.runner()
    (claimed,) = rig.store.claim_restores(rig.clock.now(), "w", lease_seconds=60, job_id=job.id)
    runner.advance(claimed)  # the volumes exist now
    assert rig.inventory() == (before[0], before[1] + 2)

    rig.restores.cancel(job.id)
    job = runner.drive(job.id)

    assert job.state is RestoreState.CANCELLED
    assert rig.inventory() == before
    with pytest.raises(Conflict):
        rig.restores.cancel(job.id)


# -- refusals -----------------------------------------------------------------------------------


def test_a_backup_being_deleted_is_refused_and_nothing_is_created(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    rig.backup(source.id)
    backup = rig.backup(source.id)
    rig.store.update_backup(backup.id, status="deleting")  # a deletion the collector owes
    before = rig.inventory()
    with pytest.raises(InvalidInput, match="being deleted"):
        rig.restores.start(backup.id)
    assert rig.store.list_restores() == []
    assert rig.inventory() == before


def test_a_failed_backup_is_refused(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    rig.store.update_backup(backup.id, status="failed")
    with pytest.raises(InvalidInput, match="failed"):
        rig.restores.start(backup.id)


def test_a_protected_backup_is_restorable(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    rig.store.set_protected(backup.id, True)
    job = rig.runner().drive(rig.restores.start(backup.id).id)
    assert job.state is RestoreState.SUCCEEDED


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (RestoreOverrides(flavor="m9.huge"), "Flavor m9.huge"),
        (RestoreOverrides(network="nowhere"), "Network nowhere"),
        (RestoreOverrides(security_groups=("web", "open")), "Security group open"),
    ],
)
def test_what_the_cloud_does_not_have_is_refused_before_anything_is_created(
    rig: RestoreRig, overrides: RestoreOverrides, words: str
) -> None:
    source = rig.sim.create_server("db", volume_backed=True, volumes=1)
    backup = rig.backup(source.id)
    before = rig.inventory()
    with pytest.raises(InvalidInput, match=words):
        rig.restores.start(backup.id, overrides=overrides)
    assert rig.inventory() == before
    assert rig.store.list_restores() == []


def test_in_place_for_a_volume_backed_server_is_refused_naming_as_new(rig: RestoreRig) -> None:
    source = rig.sim.create_server("db", volume_backed=True)
    backup = rig.backup(source.id)
    with pytest.raises(InvalidInput, match="--as-new"):
        rig.restores.start(backup.id, mode=RestoreMode.IN_PLACE)


def test_in_place_rebuilds_an_image_backed_server_with_the_backup_image(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    before = rig.inventory()
    job = rig.runner().drive(rig.restores.start(backup.id, mode=RestoreMode.IN_PLACE).id)
    assert job.state is RestoreState.SUCCEEDED, job.error
    assert rig.inventory() == before
    assert _row(rig, "servers", source.id)["base_image_ref"] == backup.artifacts[0].cloud_id


# -- backups taken before placement was recorded -----------------------------------------------


def test_an_old_backup_asks_the_source_server_and_says_so(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    rig.store.update_backup(backup.id, restore_source=None)
    plan = rig.restores.plan(backup.id).plan
    assert plan.flavor == "m1.small"
    assert any("took it from the source server" in note for note in plan.notes)


def test_an_old_backup_of_a_gone_server_needs_a_flavor(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    rig.store.update_backup(backup.id, restore_source=None)
    rig.sim.delete_server(source.id)
    with pytest.raises(InvalidInput, match="--flavor"):
        rig.restores.plan(backup.id)
    overrides = RestoreOverrides(flavor="m1.tiny", network="private")
    job = rig.runner().drive(rig.restores.start(backup.id, overrides=overrides).id)
    assert job.state is RestoreState.SUCCEEDED


# -- retention and deletion leave a backup being restored alone --------------------------------


def test_retention_never_forgets_a_backup_a_restore_is_reading(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    oldest = rig.backup(source.id, label="pre", keep=1)
    rig.restores.start(oldest.id, timeout=timedelta(days=1))  # it reads the oldest backup
    rig.sim.configure(replace(rig.sim.config(), server_boot_seconds=10_000.0))
    rig.backup(source.id, label="pre", keep=1)
    assert rig.store.get_backup(oldest.id).status.value == "available"
    service = BackupService(rig.store, lambda _n: rig.sim, rig.clock)
    for force in (False, True):
        with pytest.raises(Conflict, match="being restored"):
            service.delete(oldest.id, force=force)


def test_the_simulator_refuses_a_boot_from_an_image_not_yet_active(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    image = rig.sim.start_server_image(source.id, "pending", {})
    with pytest.raises(Exception, match="not active"):
        rig.sim.validate_boot(BootRequest("x", "m1.small", image_id=image.id))
    with pytest.raises(CloudNotFound):
        rig.sim.validate_boot(BootRequest("x", "m1.small", image_id="nope"))


def test_a_boot_over_quota_fails_and_removes_the_volumes_it_made(rig: RestoreRig) -> None:
    source = rig.sim.create_server("db", volume_backed=True, volumes=1)
    backup = rig.backup(source.id)
    before = rig.inventory()
    rig.sim.configure(replace(rig.sim.config(), max_servers=before[0]))

    job = rig.runner().drive(rig.restores.start(backup.id).id)

    assert job.state is RestoreState.FAILED
    assert job.error and "quota" in job.error
    assert [s.name for s in job.steps].count("volume") == 2
    assert rig.inventory() == before


def test_cleanup_never_deletes_what_lacks_the_restore_marker(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    job = rig.restores.start(backup.id)
    # a record naming a server the job did not make (a bug, or a hand-edited row)
    rig.store.update_restore(job.id, 0, created=CreatedResource("server", source.id, "server"))
    rig.sim.fail_next_boot()

    job = rig.runner().drive(job.id)

    assert job.state is RestoreState.FAILED
    assert rig.sim.get_server(source.id).status == "ACTIVE"


def test_a_transient_cloud_error_is_retried_and_creates_one_server(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    servers, volumes = rig.inventory()
    rig.sim.fail_next("boot_server", count=2)

    job = rig.runner().drive(rig.restores.start(backup.id).id)

    assert job.state is RestoreState.SUCCEEDED, job.error
    assert [s.outcome for s in job.steps if s.name == "retry"] == ["waiting"]
    assert rig.inventory() == (servers + 1, volumes)


def test_a_transient_cloud_error_at_start_is_raised_as_itself_to_ask_again(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    rig.sim.fail_next("artifact_statuses", CloudUnavailable)
    with pytest.raises(CloudUnavailable):  # not InvalidInput: nothing is wrong with the backup
        rig.restores.start(backup.id)
    job = rig.runner().drive(rig.restores.start(backup.id).id)  # asked again, it goes
    assert job.state is RestoreState.SUCCEEDED, job.error
