"""The real ``openstack`` command with stackback's plugin, against the plane, as tenant alpha.

The openstack client's own ``--os-cloud alpha`` (from ``OS_CLIENT_CONFIG_FILE``) is the
cloud stackback acts as; the catalogue is a temporary SQLite (``STACKBACK_DB``). A policy
for a server booted here is run (in the command, and by a ``stackback worker`` process
that opens the recorded cloud by name), its backup is listed, protected and restored as
a new server, and an error is one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.test_contract_openstack import Plane, PlaneHarness

pytest.importorskip("openstackclient")

pytestmark = pytest.mark.openstack

BIN = Path(sys.executable).parent
CLOUD = "alpha"
TIMEOUT_S = 300


@pytest.fixture
def harness(openstack_plane: Plane) -> Iterator[PlaneHarness]:
    """The plane as alpha; the servers the test boots (and restores) are deleted after."""
    harness = PlaneHarness(openstack_plane)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def env(openstack_plane: Plane, tmp_path: Path) -> dict[str, str]:
    clouds = openstack_plane.clouds_yaml
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OS_") and key not in ("STACKBACK_CLOUD", "STACKBACK_DB")
    }
    return {
        **environ,
        "OS_CLIENT_CONFIG_FILE": str(clouds),
        "STACKBACK_DB": f"sqlite:///{tmp_path / 'osc.db'}",
        "STACKBACK_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def openstack(env: dict[str, str], *args: str) -> Any:
    """``openstack --os-cloud alpha ARGS -f json``, which must succeed; its output."""
    done = run(env, str(BIN / "openstack"), "--os-cloud", CLOUD, *args, "-f", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_openstack_backup_commands_on_the_plane(harness: PlaneHarness, env: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    server = harness.create_server(f"osc-{tag}")

    helped = run(env, str(BIN / "openstack"), "--help")
    assert helped.returncode == 0, helped.stderr
    listed = ("policy create", "policy run", "run list", "list", "protect", "restore", "status")
    for command in listed:
        assert f"backup {command} " in helped.stdout

    policy = openstack(env, "backup", "policy", "create", f"osc-{tag}", "--server", server.name,
                       "--cron", "0 1 * * *", "--keep-last", "2")  # fmt: skip
    assert (policy["cloud"], policy["targets"]) == (CLOUD, [server.name])

    (first,) = openstack(env, "backup", "policy", "run", f"osc-{tag}", "--wait")
    assert (first["state"], first["target"]) == ("succeeded", server.name), first
    (backup,) = openstack(env, "backup", "list", "--policy", f"osc-{tag}")
    assert (backup["id"], backup["status"], backup["target"]) == (
        first["backup_id"], "available", server.id,
    )  # fmt: skip
    (image,) = [a["id"] for a in backup["artifacts"] if a["kind"] == "image"]
    assert harness.alpha.image.get_image(image).status == "active"
    assert openstack(env, "backup", "protect", backup["id"])["protected"] is True

    # a run the plugin queues is done by a stackback worker, reaching the cloud by its name
    (second,) = openstack(env, "backup", "policy", "run", f"osc-{tag}")
    assert second["state"] == "pending"
    deadline = time.monotonic() + TIMEOUT_S
    while openstack(env, "backup", "run", "show", second["id"])["state"] != "succeeded":
        assert time.monotonic() < deadline, "the worker did not finish the run"
        worked = run(env, str(BIN / "stackback"), "worker", "--once", "--poll-interval", "1")
        assert worked.returncode == 0, worked.stderr
    runs = openstack(env, "backup", "run", "list", "--policy", f"osc-{tag}")
    assert {r["id"]: r["state"] for r in runs} == {
        first["id"]: "succeeded", second["id"]: "succeeded",
    }  # fmt: skip

    job = openstack(env, "backup", "restore", backup["id"], "--as-new", f"osc-{tag}-again",
                    "--wait")  # fmt: skip
    if job.get("server_id"):
        harness.servers.append(job["server_id"])
    assert (job["state"], job["mode"], job["name"]) == ("succeeded", "as-new", f"osc-{tag}-again")
    restored = harness.alpha.compute.get_server(job["server_id"])
    assert restored.status == "ACTIVE"

    missing = run(env, str(BIN / "openstack"), "--os-cloud", CLOUD, "backup", "show", "0000000")
    assert missing.returncode != 0
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "Traceback" not in missing.stderr and "no backup" in missing.stderr

    for kept in openstack(env, "backup", "list", "--policy", f"osc-{tag}"):  # leave no image
        deleted = openstack(env, "backup", "delete", kept["id"], "--force")
        assert deleted["status"] in ("deleting", "deleted"), deleted
