"""Reconcile adopts only the snapshots stackback made, not images with inherited markers.

Nova copies a server's base-image properties into every snapshot of it, so a user's own
snapshot of a server booted from (or rebuilt with) a stackback image carries that backup's
markers. The simulator models that for servers it boots from an image (``image=``); the
rebuild cases give the user's image the inherited properties by hand, as Nova would.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.policy import ArtifactKind, Backup, BackupStatus, RunState
from stackback.ports import (
    MARKER_BACKUP,
    MARKER_CREATED_BY,
    MARKER_IMAGE_ID,
    MARKER_LABEL,
    MARKER_POLICY,
    MARKER_RUN,
    MARKER_TARGET,
    NOVA_INSTANCE_UUID,
    ArtifactRef,
)
from stackback.services.backups import BackupService
from stackback.services.reconcile import Reconciler, ReconcileReport
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import BackupFilter, SqlStore
from tests.engine.conftest import Rig
from tests.engine.test_runs import DAY, daily, labelled_nightly_backups, live_images


def two_backups(rig: Rig, **server: bool | int) -> tuple[str, Backup]:
    """A server with two daily backups; the server's id and the older backup."""
    web = rig.sim.create_server("web", **server)  # type: ignore[arg-type]
    daily(rig, web.id, last=5)
    rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=2))
    backups = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
    assert len(backups) == 2
    return web.id, min(backups, key=lambda b: b.created_at)


def inherited_from(rig: Rig, backup: Backup) -> tuple[str, dict[str, str]]:
    """The backup's image and the stackback properties Nova copies from it."""
    image_id = next(a.cloud_id for a in backup.artifacts if a.kind.value == "image")
    [props] = [i.properties for i in rig.sim.images() if i.id == image_id]
    keys = (MARKER_CREATED_BY, MARKER_RUN, MARKER_TARGET, MARKER_BACKUP)
    return image_id, {k: props[k] for k in keys}


def reconcile(rig: Rig) -> ReconcileReport:
    return Reconciler(rig.store, rig.sim, rig.clock, cloud_name=None).run(apply=True)


def delete_backup(rig: Rig, backup: Backup) -> None:
    rig.clock.advance(3600)
    BackupService(rig.store, lambda _n: rig.sim, rig.clock).delete(backup.id)


def test_user_snapshot_of_a_server_restored_from_a_backup_is_skipped(rig: Rig) -> None:
    _web, old = two_backups(rig)
    own_image, inherited = inherited_from(rig, old)
    restored = rig.sim.create_server("web-restored")  # booted from the stackback image
    user_image = rig.sim.start_server_image(restored.id, "my-own-snapshot", inherited).id

    report = reconcile(rig)
    assert report.adopted_artifacts == [] and report.imported == []
    [skipped] = report.skipped
    assert (skipped.id, skipped.backup) == (user_image, old.id)
    assert restored.id in skipped.reason and "inherited" in skipped.reason
    assert {a.cloud_id for a in rig.store.get_backup(old.id).artifacts} == {own_image}

    delete_backup(rig, old)
    assert user_image in live_images(rig)  # never deleted: stackback did not create it
    assert own_image not in live_images(rig)


def test_user_snapshot_of_a_server_rebuilt_from_a_backup_is_skipped(rig: Rig) -> None:
    """``nova rebuild`` keeps the server's id: base_image_ref still shows the inheritance."""
    web, old = two_backups(rig)
    own_image, inherited = inherited_from(rig, old)
    user_image = rig.sim.start_server_image(
        web, "after-rebuild", {**inherited, "base_image_ref": own_image}
    ).id

    report = reconcile(rig)
    assert report.adopted_artifacts == []
    assert [(s.id, own_image in s.reason) for s in report.skipped] == [(user_image, True)]
    delete_backup(rig, old)
    assert user_image in live_images(rig)


def test_user_snapshot_of_a_restored_volume_backed_server_is_skipped(rig: Rig) -> None:
    """Nova sets no instance_uuid on a volume-backed server's image: its snapshots tell."""
    _db, old = two_backups(rig, volume_backed=True)
    _own_image, inherited = inherited_from(rig, old)
    restored = rig.sim.create_server("db-restored", volume_backed=True)
    user_image = rig.sim.start_server_image(restored.id, "my-own-snapshot", inherited).id

    report = reconcile(rig)
    assert report.adopted_artifacts == []
    assert [s.id for s in report.skipped] == [user_image]
    delete_backup(rig, old)
    assert user_image in live_images(rig)


def lose_the_database(rig: Rig, tmp_path: Path) -> SqlStore:
    """A fresh, empty catalogue in place of the rig's (its engine is left to the rig)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    upgrade(engine)
    return SqlStore(engine)


def test_a_copy_carrying_another_images_id_marker_is_skipped_even_with_that_image_gone(
    rig: Rig, tmp_path: Path
) -> None:
    """Nova copies every property into the snapshot, the id marker too: it names the original."""
    web, old = two_backups(rig)
    own_image = next(a.cloud_id for a in old.artifacts)
    [props] = [i.properties for i in rig.sim.images() if i.id == own_image]
    assert props[MARKER_IMAGE_ID] == own_image
    copied = {k: v for k, v in props.items() if k.startswith("stackback_")}
    user_image = rig.sim.start_server_image(
        web, "after-rebuild", {**copied, "base_image_ref": own_image}
    ).id
    rig.sim.delete_artifact(ArtifactRef(ArtifactKind.IMAGE, own_image))  # rotated away
    fresh = lose_the_database(rig, tmp_path)
    try:
        report = Reconciler(fresh, rig.sim, rig.clock, cloud_name=None).run(apply=True)
        assert [s.id for s in report.skipped] == [user_image]
        assert f"image {own_image}'s id marker" in report.skipped[0].reason
        assert old.id not in report.imported
    finally:
        fresh.dispose()


def test_a_renamed_image_is_still_imported_after_a_database_loss(rig: Rig, tmp_path: Path) -> None:
    """Its name is the operator's to change (``openstack image set --name``): not evidence."""
    _web, old = two_backups(rig)
    own_image = next(a.cloud_id for a in old.artifacts)
    with closing(sqlite3.connect(rig.sim.path)) as conn, conn:
        conn.execute("UPDATE images SET name = 'web-before-upgrade' WHERE id = ?", (own_image,))
    fresh = lose_the_database(rig, tmp_path)
    try:
        report = Reconciler(fresh, rig.sim, rig.clock, cloud_name=None).run(apply=True)
        assert report.skipped == [] and old.id in report.imported
        assert [a.cloud_id for a in fresh.get_backup(old.id).artifacts] == [own_image]
    finally:
        fresh.dispose()


def test_a_copy_of_a_recorded_image_is_skipped_once_that_image_is_gone(rig: Rig) -> None:
    """An image from an older stackback (no name marker) made from the backup's own image."""
    web, old = two_backups(rig)
    own_image, inherited = inherited_from(rig, old)
    user_image = rig.sim.start_server_image(
        web, "after-rebuild", {**inherited, "base_image_ref": own_image}
    ).id
    rig.sim.delete_artifact(ArtifactRef(ArtifactKind.IMAGE, own_image))  # out of band

    report = reconcile(rig)
    assert report.adopted_artifacts == []
    assert [(s.id, own_image in s.reason) for s in report.skipped] == [(user_image, True)]
    assert user_image not in {a.cloud_id for a in rig.store.get_backup(old.id).artifacts}
    BackupService(rig.store, lambda _n: rig.sim, rig.clock).delete(old.id)
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    assert user_image in live_images(rig)


def test_imported_backups_of_an_unknown_policy_are_not_taken_for_manual_ones(
    rig: Rig, tmp_path: Path
) -> None:
    """After a database loss, a label's keep-last must not forget a policy's backups."""
    web, _policy, nightly = labelled_nightly_backups(rig, "daily", days=2)
    fresh = lose_the_database(rig, tmp_path)
    try:
        Reconciler(fresh, rig.sim, rig.clock, cloud_name=None).run(apply=True)
        imported = fresh.get_backup(nightly[0].id)
        assert imported.policy_id is None
        assert imported.policy_name == f"unknown policy {nightly[0].policy_id}"
        engine = Engine(fresh, lambda _n: rig.sim, rig.clock, EngineSettings(), worker_name="w")
        manual = BackupService(fresh, lambda _n: rig.sim, rig.clock).backup_now(
            web.id, label="daily", keep_last=1, cloud=None
        )
        engine.drain(rig.clock.now() + timedelta(hours=1))
        assert fresh.get_run(manual.id).state is RunState.SUCCEEDED
        for backup in nightly:
            assert fresh.get_backup(backup.id).status is BackupStatus.AVAILABLE
    finally:
        fresh.dispose()


def test_a_second_image_stackback_made_for_the_backup_is_still_adopted(rig: Rig) -> None:
    """E.g. a stale worker's duplicate createImage: same server, same markers."""
    web, old = two_backups(rig)
    _own_image, markers = inherited_from(rig, old)
    duplicate = rig.sim.start_server_image(web, "stackback-web-duplicate", markers).id

    report = reconcile(rig)
    assert (report.adopted_artifacts, report.skipped) == ([duplicate], [])
    delete_backup(rig, old)
    assert duplicate not in live_images(rig)


def test_a_volume_backed_image_with_an_inherited_instance_uuid_is_still_adopted(rig: Rig) -> None:
    """A boot volume made from another server's snapshot gives its image that instance_uuid."""
    db, old = two_backups(rig, volume_backed=True)
    _own_image, markers = inherited_from(rig, old)
    duplicate = rig.sim.start_server_image(
        db, "stackback-db-duplicate", {**markers, NOVA_INSTANCE_UUID: "the-build-vm"}
    )
    [info] = rig.sim.artifact_statuses([duplicate]).values()
    assert info.metadata[NOVA_INSTANCE_UUID] == "the-build-vm" and info.children
    for child in info.children:  # as the runner stamps them
        rig.sim.set_artifact_metadata(child, markers)

    report = reconcile(rig)
    assert report.skipped == []
    assert set(report.adopted_artifacts) == {duplicate.id} | {c.id for c in info.children}


def test_a_backup_of_a_server_restored_from_a_labelled_backup_has_its_own_markers(
    rig: Rig, tmp_path: Path
) -> None:
    """Nova passes the restored-from image's markers on; stackback's own overwrite them all."""
    web = rig.sim.create_server("web")
    manual = BackupService(rig.store, lambda _n: rig.sim, rig.clock).backup_now(
        web.id, label="pre-upgrade", keep_last=None, cloud=None
    )
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    source = rig.store.backup_for_run(manual.id)
    assert source is not None
    restored = rig.sim.create_server("restored", image=source.artifacts[0].cloud_id)
    policy = daily(rig, restored.id)
    rig.engine.drain(rig.clock.now() + DAY)
    [own] = rig.store.list_backups(BackupFilter(target=restored.id))
    [props] = [i.properties for i in rig.sim.images() if i.id == own.artifacts[0].cloud_id]
    assert props["base_image_ref"] == source.artifacts[0].cloud_id  # it was inherited from
    assert (props[MARKER_BACKUP], props[MARKER_POLICY], props[MARKER_LABEL]) == (
        own.id,
        policy.id,
        "",
    )

    engine = create_db_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    upgrade(engine)
    fresh = SqlStore(engine)
    try:
        Reconciler(fresh, rig.sim, rig.clock, cloud_name=None).run(apply=True)
        rebuilt = fresh.get_backup(own.id)
        assert (rebuilt.label, rebuilt.target) == (None, restored.id)
        assert fresh.get_backup(source.id).label == "pre-upgrade"
    finally:
        fresh.dispose()
