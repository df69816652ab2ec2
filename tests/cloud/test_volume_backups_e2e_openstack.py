"""A volume-backup policy from the CLI on the real plane: Cinder's backup service (posix
driver) over volumes that hold data (the plane's ``file_volume.py``).

Full, incremental, incremental, full, incremental (a full every 3, keep-last 2): the
parents stackback records are the ones Cinder wrote in its own database; after the fourth
run the first chain is kept whole for the incremental retention keeps; after the fifth it
is forgotten, newest first, without a failure; the newest incremental restores as a new
volume holding exactly the data the volume held when it was taken.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.test_contract_openstack import Plane, PlaneHarness
from tests.cloud.test_e2e_openstack import stackback

pytestmark = [pytest.mark.openstack, pytest.mark.slow]

MIB = 1024**2
#: Where each run's new data goes: one MiB written at a different offset before each run.
OFFSETS = (0, 200 * MIB, 500 * MIB, 800 * MIB, 1000 * MIB)


def volume_file(plane: Plane, volume_id: str) -> Path:
    return plane.run_dir / "cinder" / "file-volumes" / f"volume-{volume_id}"


def write_block(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_block(path: Path, offset: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(MIB)


def cinder_parents(plane: Plane, backup_ids: list[str]) -> dict[str, str | None]:
    """The parent of each backup as Cinder recorded it (its database: the API shows it to
    no one)."""
    psql = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    query = "SELECT id, coalesce(parent_id, '') FROM backups WHERE id IN ({})".format(
        ",".join(f"'{backup_id}'" for backup_id in backup_ids)
    )
    done = subprocess.run(
        [
            *("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", str(psql)),
            *("-h", str(plane.run_dir / "pg" / "sock"), "-d", "cinder", "-Atc", query),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = (line.split("|") for line in done.stdout.splitlines())
    return {backup_id: parent or None for backup_id, parent in rows}


def preview_kept(preview: Any) -> set[str]:
    rows = preview["backups"] if isinstance(preview, dict) else preview
    return {row["backup"] for row in rows if row["action"] == "keep"}


def test_a_volume_backup_chain_is_recorded_rotated_and_restored_with_its_data(
    openstack_plane: Plane, tmp_path: Path
) -> None:
    harness = PlaneHarness(openstack_plane)
    restored: list[str] = []
    volume_id = ""
    try:
        volume_id = harness.create_volume("vb-e2e")
        data_file = volume_file(openstack_plane, volume_id)
        assert data_file.exists(), "the plane's volume driver keeps a file per volume"
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(openstack_plane.clouds_yaml)}
        base = ["--db", f"sqlite:///{tmp_path / 'stackback.db'}", "--os-cloud", "alpha"]
        stackback(env, *base, "db", "upgrade")
        stackback(
            env,
            *base,
            *("policy", "create", "vb", "--kind", "volume-backup", "--volume", volume_id),
            *("--full-every", "3", "--keep-last", "2", "--cron", "0 1 * * *"),
        )
        written: list[bytes] = []
        took: list[float] = []
        for number, offset in enumerate(OFFSETS, start=1):
            written.append(os.urandom(MIB))
            write_block(data_file, offset, written[-1])
            start = time.monotonic()
            (run,) = stackback(env, *base, "policy", "run", "vb", "--wait", "--timeout", "600")
            took.append(time.monotonic() - start)
            assert run["state"] == "succeeded", run
            if number == 4:
                preview = stackback(env, *base, "retention", "preview", "vb")
            time.sleep(1.1)  # Cinder orders backups by their times, to the second
        collected = time.monotonic() + 180
        while True:
            backups = stackback(env, *base, "backup", "list", "--all")
            if not any(b["status"] == "deleting" for b in backups):
                break
            assert time.monotonic() < collected, backups
            subprocess.run(
                [sys.executable, "-m", "stackback", *base, "worker", "--once"],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            time.sleep(1)

        made = sorted(backups, key=lambda b: b["created_at"])
        assert len(made) == 5, made
        ids = [b["id"] for b in made]
        cloud_ids = {b["id"]: b["artifacts"][0]["id"] for b in made}
        truth = cinder_parents(openstack_plane, list(cloud_ids.values()))
        for backup in made:
            recorded = backup["parent_id"] and cloud_ids[backup["parent_id"]]
            assert (recorded or None) == truth[cloud_ids[backup["id"]]], (backup, truth)
        assert [b["parent_id"] for b in made] == [None, ids[0], ids[1], None, ids[3]]

        # After the fourth run: the second incremental is kept, and its chain with it.
        print(f"\nretention preview after the fourth run: {preview}")
        assert preview_kept(preview) == set(ids[:4]), preview

        # keep-last 2 keeps the second chain; the first is forgotten, newest first.
        why = [(b["id"][:8], b["status"], b.get("error")) for b in made]
        assert [b["status"] for b in made] == ["deleted"] * 3 + ["available"] * 2, why
        assert not any(b.get("error") for b in made), made
        left = {b.id for b in harness.alpha.block_storage.backups() if b.volume_id == volume_id}
        assert left == {cloud_ids[ids[3]], cloud_ids[ids[4]]}

        # The last incremental restores (Cinder applies the full, then it): every block.
        restore = stackback(
            env,
            *base,
            *("restore", "start", ids[4], "--as-new", "vb-restored"),
            *("--wait", "--timeout", "600"),
        )
        assert restore["state"] == "succeeded", restore
        (new_volume,) = [r["id"] for r in restore["created"] if r["kind"] == "volume"]
        restored.append(new_volume)
        copy = volume_file(openstack_plane, new_volume)
        for offset, data in zip(OFFSETS, written, strict=True):
            assert read_block(copy, offset) == data, f"block at {offset // MIB} MiB differs"
        print(f"\nvolume backups on the plane: {', '.join(f'{t:.1f}s' for t in took)} per run")
    finally:
        for volume in restored:
            with contextlib.suppress(Exception):
                harness.delete_volume(volume)
        cinder = harness.alpha.block_storage
        if volume_id:
            made_here = [b for b in cinder.backups(details=True) if b.volume_id == volume_id]
            for backup in sorted(made_here, key=lambda b: str(b.created_at), reverse=True):
                with contextlib.suppress(Exception):
                    cinder.delete_backup(backup.id, ignore_missing=True)
                    cinder.wait_for_delete(backup, interval=1, wait=60)
        harness.close()
