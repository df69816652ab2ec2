"""Restores end to end on the real plane, as the tenant alpha (a member, not an admin).

Back up an image-backed server and a volume-backed one with a data volume, delete both,
restore each as a new server from the CLI, rebuild a server in place; and a restore
worker killed (``kill -9``) just after Nova accepted its boot, whose job another worker
takes over and finishes once, with no second server or volume.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from openstack.connection import Connection

from stackback.cli import main
from stackback.clock import SystemClock
from stackback.cloud.openstack import OpenStackCloud
from stackback.engine.restore import RestoreRunner
from stackback.errors import LeaseLost
from stackback.ports import CREATED_BY_VALUE, MARKER_CREATED_BY, MARKER_RESTORE
from stackback.restoreplan import RestoreState
from stackback.store.sql import SqlStore
from tests.cloud.test_contract_openstack import FLAVOR, Plane, PlaneHarness

pytestmark = pytest.mark.openstack

CLOUD = "alpha"
POLL = timedelta(seconds=1)
DOOMED_LEASE_S = 3.0
WORKER = Path(__file__).with_name("restore_worker.py")


@pytest.fixture
def harness(openstack_plane: Plane) -> Iterator[PlaneHarness]:
    """The plane as alpha; afterwards every server, stackback image and snapshot, and
    volume the test made is deleted (servers, then images and snapshots, then volumes)."""
    harness = PlaneHarness(openstack_plane)
    had = {v.id for v in harness.alpha.block_storage.volumes()}
    try:
        yield harness
    finally:
        harness.close()
        _remove_made(harness.alpha, had)


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = f"sqlite:///{tmp_path / 'stackback.db'}"
    stackback(capsys, "--db", url, "db", "upgrade")
    return url


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """``restore --wait`` looks at the cloud every second (the fake hypervisor is quick)."""
    monkeypatch.setattr("stackback.cli.restore.WAIT_POLL", POLL)


def stackback(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """``stackback ARGS -f json`` in this process; it must succeed."""
    capsys.readouterr()
    code = main([*args, "-f", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def counts(conn: Connection) -> tuple[int, int]:
    """How many servers and volumes the project has."""
    return len(list(conn.compute.servers())), len(list(conn.block_storage.volumes()))


def delete_and_wait(harness: PlaneHarness, *server_ids: str) -> None:
    """Delete servers and wait until the project no longer lists them. Their volumes stay
    (delete-on-termination or not): Cinder keeps a volume that has snapshots."""
    for server_id in server_ids:
        harness.delete_server(server_id)
    conn = harness.alpha
    deadline = time.monotonic() + 120
    while {s.id for s in conn.compute.servers()} & set(server_ids):
        assert time.monotonic() < deadline, f"servers {server_ids} not deleted in 120 s"
        time.sleep(1)


def _remove_made(conn: Connection, had: set[str]) -> None:
    """Restored servers, stackback's images and snapshots, then the volumes not in ``had``
    (a source server's volumes outlive it while they have snapshots)."""
    restored = [s for s in conn.compute.servers() if MARKER_RESTORE in (s.metadata or {})]
    for server in restored:
        conn.compute.delete_server(server, ignore_missing=True)
    for server in restored:
        conn.compute.wait_for_delete(server, interval=1, wait=120)
    for image in conn.image.images(owner=conn.current_project_id):
        if (image.properties or {}).get(MARKER_CREATED_BY) == CREATED_BY_VALUE:
            conn.image.delete_image(image, ignore_missing=True)
    snapshots = [
        s
        for s in conn.block_storage.snapshots()
        if (s.metadata or {}).get(MARKER_CREATED_BY) == CREATED_BY_VALUE
    ]
    for snapshot in snapshots:
        conn.block_storage.delete_snapshot(snapshot, ignore_missing=True)
    for snapshot in snapshots:
        conn.block_storage.wait_for_delete(snapshot, interval=1, wait=120)
    for volume in conn.block_storage.volumes():
        if volume.id not in had:
            conn.block_storage.wait_for_status(
                volume, "available", failures=["error"], interval=1, wait=120
            )
            conn.block_storage.delete_volume(volume, ignore_missing=True)


def _attached(conn: Connection, server_id: str) -> dict[str, Any]:
    """The server's volumes by device name."""
    server = conn.compute.get_server(server_id)
    volumes = [conn.block_storage.get_volume(v["id"]) for v in server.attached_volumes or ()]
    return {
        attachment["device"]: volume
        for volume in volumes
        for attachment in volume.attachments or ()
        if attachment.get("server_id") == server_id
    }


def _snapshots(backup: dict[str, Any]) -> set[str]:
    return {a["id"] for a in backup["artifacts"] if a["kind"] == "volume-snapshot"}


def _image(backup: dict[str, Any]) -> str:
    (image,) = [a["id"] for a in backup["artifacts"] if a["kind"] == "image"]
    return str(image)


def test_backups_of_deleted_servers_restore_as_new_and_a_server_rebuilds_in_place(
    harness: PlaneHarness, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = harness.alpha
    base = ["--db", db, "--os-cloud", CLOUD]
    web = harness.create_server("e2e-restore-web")
    data = harness.create_server_with_data_volume("e2e-restore-db")
    backups = {}
    for server in (web, data):
        run = stackback(capsys, *base, "backup", "now", server.id, "--wait")
        assert run["state"] == "succeeded", run
        backups[server.name] = stackback(capsys, *base, "backup", "show", run["backup_id"])
    assert len(_snapshots(backups[data.name])) == 2
    devices = sorted(_attached(conn, data.id))
    delete_and_wait(harness, web.id, data.id)
    before = counts(conn)
    for wrong in (("--flavor", "m9.nowhere"), ("--network", "nowhere")):
        capsys.readouterr()
        code = main([*base, "restore", backups[web.name]["id"], *wrong, "--wait"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and wrong[1] in err, err
    assert stackback(capsys, *base, "restore", "list") == []
    assert counts(conn) == before

    web_job = stackback(capsys, *base, "restore", backups[web.name]["id"], "--wait")
    data_job = stackback(
        capsys, *base, "restore", backups[data.name]["id"], "--as-new", "db-again", "--wait"
    )

    assert (web_job["state"], data_job["state"]) == ("succeeded", "succeeded")
    assert counts(conn) == (before[0] + 2, before[1] + 2)
    web_again = conn.compute.get_server(web_job["server_id"])
    assert web_again.status == "ACTIVE"
    assert web_again.flavor.original_name == FLAVOR
    assert harness.image_of(web_again.id) == _image(backups[web.name])
    db_again = conn.compute.get_server(data_job["server_id"])
    assert (db_again.status, db_again.name) == ("ACTIVE", "db-again")
    assert db_again.flavor.original_name == FLAVOR
    assert harness.image_of(db_again.id) is None
    volumes = _attached(conn, db_again.id)
    assert sorted(volumes) == devices
    assert {v.snapshot_id for v in volumes.values()} == _snapshots(backups[data.name])
    assert all(v.metadata.get(MARKER_RESTORE) == data_job["id"] for v in volumes.values())

    run = stackback(capsys, *base, "backup", "now", web_again.id, "--wait")
    again = stackback(capsys, *base, "backup", "show", run["backup_id"])
    rebuilt = stackback(capsys, *base, "restore", again["id"], "--in-place", "--wait")

    assert rebuilt["state"] == "succeeded"
    assert rebuilt["server_id"] == web_again.id
    assert harness.image_of(web_again.id) == _image(again)
    assert conn.compute.get_server(web_again.id).status == "ACTIVE"
    assert counts(conn) == (before[0] + 2, before[1] + 2)


@pytest.mark.slow
def test_a_worker_killed_right_after_its_boot_is_taken_over_and_the_restore_ends_once(
    harness: PlaneHarness, db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The worst moment: Nova has the server, the job's record does not. The next worker
    finds the server (and the volumes) by the job's marker and creates nothing twice."""
    conn = harness.alpha
    base = ["--db", db, "--os-cloud", CLOUD]
    source = harness.create_server_with_data_volume("e2e-restore-killed")
    run = stackback(capsys, *base, "backup", "now", source.id, "--wait")
    delete_and_wait(harness, source.id)
    before = counts(conn)
    job = stackback(capsys, *base, "restore", run["backup_id"], "--as-new", "killed-again")
    assert job["state"] == "pending"

    doomed = subprocess.run(
        [sys.executable, str(WORKER), db, CLOUD, job["id"], str(DOOMED_LEASE_S)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert doomed.returncode == -9, doomed.stderr
    store = SqlStore.from_url(db)
    try:
        stale = store.get_restore(job["id"])
        assert stale.state is RestoreState.RUNNING
        assert stale.lease_owner == "doomed"
        assert [c.kind for c in stale.created] == ["volume", "volume"]  # not the server
        cloud = OpenStackCloud(harness.plane.connection(CLOUD), cloud_name=CLOUD)
        (booted,) = [r for r in cloud.find_restored(job["id"]) if r.kind == "server"]

        survivor = RestoreRunner(store, lambda _: cloud, SystemClock(), owner="survivor", poll=POLL)
        done = survivor.drive(job["id"])

        assert done.state is RestoreState.SUCCEEDED, (done.error, done.steps)
        assert done.server_id == booted.id
        assert done.attempt > stale.attempt
        assert counts(conn) == (before[0] + 1, before[1] + 2)
        assert sorted(r.kind for r in cloud.find_restored(job["id"])) == [
            "server", "volume", "volume",
        ]  # fmt: skip
        doomed_runner = RestoreRunner(store, lambda _: cloud, SystemClock(), owner="doomed")
        with pytest.raises(LeaseLost):
            doomed_runner.advance(stale)
    finally:
        store.dispose()


def test_a_verification_boots_the_backup_checks_it_and_leaves_nothing_behind(
    harness: PlaneHarness, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = harness.alpha
    base = ["--db", db, "--os-cloud", CLOUD]
    web = harness.create_server("e2e-verify-web")
    run = stackback(capsys, *base, "backup", "now", web.id, "--wait")
    assert run["state"] == "succeeded", run
    before = counts(conn)
    job = stackback(
        capsys, *base, "verify", run["backup_id"], "--flavor", FLAVOR, "--no-network",
        "--console-contains", "FAKE CONSOLE OUTPUT", "--wait",
    )  # fmt: skip
    assert job["state"] == "succeeded", job
    assert job["verify_result"] == "passed"
    assert counts(conn) == before  # the throwaway server is gone, nothing else was made
    verified = stackback(capsys, *base, "backup", "show", run["backup_id"])["verification"]
    assert verified["result"] == "passed" and verified["active_seconds"] is not None
    failed = ["verify", run["backup_id"], "--flavor", FLAVOR, "--console-contains", "NEVER"]
    capsys.readouterr()
    code = main([*base, *failed, "--timeout", "20", "--wait"])
    assert code == 1, capsys.readouterr().err
    assert counts(conn) == before
    verdict = stackback(capsys, *base, "backup", "show", run["backup_id"])["verification"]
    assert verdict["result"] == "failed" and "NEVER" in (verdict["reason"] or "")
