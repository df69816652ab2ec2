"""End to end from the CLI against the real plane, as project alpha; beta sees nothing of it.

``stackback serve`` runs as a subprocess on a clock ten times faster than real time, so a
minutely cron fires every six seconds while Nova, Glance and Keystone run at their own pace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stackback.cloud.openstack import OpenStackCloud
from stackback.errors import CloudNotFound
from stackback.policy import RunState
from stackback.ports import CREATED_BY_VALUE, MARKER_CREATED_BY, MARKER_RUN
from stackback.store.sql import BackupFilter, RunFilter, SqlStore
from tests.cloud.test_contract_openstack import Plane, PlaneHarness
from tests.engine.processes import start, stop, wait_until

pytestmark = [pytest.mark.openstack, pytest.mark.slow]

SCALE = 10


def stackback(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "stackback", *args, "-f", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_policy_serve_rotate_protect_restart_and_isolation(
    openstack_plane: Plane, tmp_path: Path
) -> None:
    harness = PlaneHarness(openstack_plane)
    try:
        server = harness.create_server("e2e-web")
        db = f"sqlite:///{tmp_path / 'stackback.db'}"
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(openstack_plane.clouds_yaml)}
        base = ["--db", db, "--os-cloud", "alpha"]
        stackback(env, *base, "db", "upgrade")
        origin = time.time()
        timing = [
            "--time-scale",
            str(SCALE),
            "--time-origin",
            repr(origin),
            "--poll-interval",
            "10",
        ]
        policy = stackback(
            env,
            *base,
            "policy",
            "create",
            "e2e",
            "--server",
            server.id,
            "--cron",
            "* * * * *",
            "--keep-last",
            "2",
            "--disabled",
        )
        store = SqlStore.from_url(db)
        _enable_on_fast_clock(store, policy["id"], origin)
        serve = start([*base, "serve", "--no-api", *timing], env=env, log=tmp_path / "serve1.log")
        try:

            def succeeded() -> list[Any]:
                runs = store.list_runs(RunFilter(policy_id=policy["id"]))
                return [r for r in runs if r.state is RunState.SUCCEEDED]

            wait_until(lambda: len(succeeded()) >= 2, 240, what="two backups")
            first = min(succeeded(), key=lambda r: r.scheduled_for)
            stackback(env, *base, "backup", "protect", first.backup_id)

            def in_flight() -> bool:
                runs = store.list_runs(RunFilter(policy_id=policy["id"], limit=5))
                return any(r.state in (RunState.SNAPSHOTTING, RunState.WAITING) for r in runs)

            wait_until(in_flight, 120, what="a run in flight")
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
            serve = start(
                [*base, "serve", "--no-api", *timing], env=env, log=tmp_path / "serve2.log"
            )
            wait_until(lambda: len(succeeded()) >= 5, 300, what="five backups")
            stackback(env, *base, "policy", "disable", "e2e")
            wait_until(
                lambda: all(
                    r.state.is_terminal
                    for r in store.list_runs(RunFilter(policy_id=policy["id"], limit=1000))
                ),
                120,
                what="the runs in flight to finish",
            )
        finally:
            assert stop([serve]) in ([0], [-9])

        runs = store.list_runs(RunFilter(policy_id=policy["id"], limit=1000))
        assert not [r for r in runs if r.state is RunState.FAILED], [r.error for r in runs]
        glance = harness.alpha.image
        ours = [
            i
            for i in glance.images(owner=server.project_id)
            if (i.properties or {}).get(MARKER_CREATED_BY) == CREATED_BY_VALUE
        ]
        per_run: dict[str, int] = {}
        for image in ours:
            run_id = image.properties[MARKER_RUN]
            per_run[run_id] = per_run.get(run_id, 0) + 1
            assert (
                image.instance_uuid == server.id
                or image.properties.get("instance_uuid") == server.id
            )
        assert max(per_run.values()) == 1, "a run made two images"

        alive = store.list_backups(BackupFilter(target=server.id))
        assert {b.status.value for b in alive} == {"available"}, [
            (b.status, b.error) for b in alive
        ]
        protected = [b for b in alive if b.protected]
        assert [b.run_id for b in protected] == [first.id]
        assert len([b for b in alive if not b.protected]) == 2
        live_ids = {i.id for i in glance.images(owner=server.project_id)}
        assert protected[0].artifacts[0].cloud_id in live_ids
        assert {b.artifacts[0].cloud_id for b in alive} <= live_ids
        forgotten = [
            b
            for b in store.list_backups(BackupFilter(target=server.id, include_deleted=True))
            if b.status.value == "deleted"
        ]
        assert forgotten and not {b.artifacts[0].cloud_id for b in forgotten} & live_ids

        beta = OpenStackCloud(openstack_plane.connection("beta"), cloud_name="beta")
        assert beta.list_marked_artifacts() == []
        with pytest.raises(CloudNotFound):
            beta.get_server(server.id)
        beta_images = {i.id for i in openstack_plane.connection("beta").image.images()}
        assert not beta_images & {b.artifacts[0].cloud_id for b in alive}
    finally:
        for image in harness.alpha.image.images(owner=harness.alpha.current_project_id):
            if (image.properties or {}).get(MARKER_CREATED_BY) == CREATED_BY_VALUE:
                harness.alpha.image.delete_image(image, ignore_missing=True)
        harness.close()


def _enable_on_fast_clock(store: SqlStore, policy_id: str, origin: float) -> None:
    """Enable the policy with its next fire computed on the test's fast clock."""
    from datetime import UTC, datetime

    from stackback.clock import ScaledClock
    from stackback.services.policies import PolicyService

    PolicyService(store, ScaledClock(datetime.fromtimestamp(origin, UTC), SCALE)).set_enabled(
        policy_id, True
    )
