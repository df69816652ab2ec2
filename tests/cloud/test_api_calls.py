"""How many HTTP requests a backup costs through :class:`OpenStackCloud`, on the real plane.

Every request the adapter's keystoneauth session sends is counted. A backup here is
``get_server`` + ``start_server_image`` + its share of the batched status polling of
N in-flight backups; deletions are counted and printed but not part of the budget.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from stackback.cloud.openstack import OpenStackCloud
from stackback.policy import ArtifactKind, ArtifactStatus
from stackback.ports import CREATED_BY_VALUE, MARKER_CREATED_BY, MARKER_RUN, ArtifactRef
from tests.cloud.test_contract_openstack import Plane, PlaneHarness

pytestmark = pytest.mark.openstack

N = 5
POLL_INTERVAL_S = 2.0
UPLOAD_S = 4.0
TIMEOUT_S = 300.0
BUDGET_PER_BACKUP = 4


class RequestCounter:
    """Counts the requests a keystoneauth session sends, by method and path shape."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.sent: list[tuple[str, dict[str, Any], Any]] = []

    def wrap(self, session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        original = session.request

        def request(url: str, method: str, *args: Any, **kwargs: Any) -> Any:
            key = f"{method} {shape(url)}"
            self.requests[key] += 1
            response = original(url, method, *args, **kwargs)
            self.sent.append((key, dict(kwargs.get("params") or {}), response))
            return response

        monkeypatch.setattr(session, "request", request)

    def take(self) -> Counter[str]:
        taken, self.requests = self.requests, Counter()
        return taken


def shape(url: str) -> str:
    """``/servers/<uuid>/action`` for ``/servers/1f0c.../action``: ids collapsed."""
    parts = ["<id>" if len(part) >= 32 else part for part in urlsplit(url).path.split("/")]
    return "/".join(parts) or "/"


@pytest.fixture
def plane_harness(openstack_plane: Plane) -> Iterator[PlaneHarness]:
    harness = PlaneHarness(openstack_plane)
    try:
        yield harness
    finally:
        openstack_plane.set_snapshot_delay(0)
        harness.close()


def test_requests_per_backup_with_batched_polling(
    plane_harness: PlaneHarness,
    openstack_plane: Plane,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = f"api-calls-{uuid.uuid4().hex[:8]}"
    booting = [plane_harness.boot(f"{run}-{n}") for n in range(N)]
    servers = [plane_harness.wait_active(server) for server in booting]
    conn = openstack_plane.connection("alpha")
    cloud = OpenStackCloud(conn, cloud_name="alpha")
    counter = RequestCounter()
    counter.wrap(conn.session, monkeypatch)
    cloud.get_server(servers[0].id)
    cloud.artifact_statuses([ArtifactRef(ArtifactKind.IMAGE, str(uuid.uuid4()))])
    warm_up = counter.take()
    openstack_plane.set_snapshot_delay(UPLOAD_S)

    refs = []
    for server in servers:
        cloud.get_server(server.id)
        markers = {MARKER_CREATED_BY: CREATED_BY_VALUE, MARKER_RUN: run}
        refs.append(cloud.start_server_image(server.id, f"{run}-{server.name}", markers))
    started = counter.take()
    polls = 0
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        polls += 1
        statuses = cloud.artifact_statuses(refs)
        if all(info.status is not ArtifactStatus.PENDING for info in statuses.values()):
            break
        assert time.monotonic() < deadline, "images still pending"
        time.sleep(POLL_INTERVAL_S)
    polled = counter.take()
    for ref in refs:
        cloud.delete_artifact(ref)
    deleted = counter.take()

    per_backup = (sum(started.values()) + sum(polled.values())) / N
    with capsys.disabled():
        print(f"\n[api-calls] warm-up (auth, discovery): {sum(warm_up.values())} {dict(warm_up)}")
        print(f"[api-calls] get_server + createImage for {N}: {dict(started)}")
        print(f"[api-calls] {polls} poll rounds: {dict(polled)}")
        print(f"[api-calls] deletions: {dict(deleted)}")
        print(f"[api-calls] per backup (excluding deletions): {per_backup:.2f}")
    assert {info.status for info in statuses.values()} == {ArtifactStatus.AVAILABLE}
    assert sum(started.values()) == 2 * N
    assert sum(polled.values()) == polls
    assert sum(deleted.values()) == N
    assert per_backup <= BUDGET_PER_BACKUP


def test_find_artifacts_lets_glance_filter_on_the_run_marker(
    plane_harness: PlaneHarness, openstack_plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = [plane_harness.boot(f"api-find-{n}-{uuid.uuid4().hex[:6]}") for n in range(2)]
    conn = openstack_plane.connection("alpha")
    cloud = OpenStackCloud(conn, cloud_name="alpha")
    runs = [f"api-find-{uuid.uuid4().hex[:8]}" for _ in servers]
    refs = [
        cloud.start_server_image(
            plane_harness.wait_active(server).id,
            f"{run}-image",
            {MARKER_CREATED_BY: CREATED_BY_VALUE, MARKER_RUN: run},
        )
        for server, run in zip(servers, runs, strict=True)
    ]
    try:
        counter = RequestCounter()
        counter.wrap(conn.session, monkeypatch)

        found = cloud.find_artifacts({MARKER_RUN: runs[0]})

        image_listings = [(params, resp) for key, params, resp in counter.sent if "/images" in key]
        assert [info.ref for info in found] == [refs[0]]
        assert [params.get(MARKER_RUN) for params, _ in image_listings] == [runs[0]]
        assert [len(resp.json()["images"]) for _, resp in image_listings] == [1]
    finally:
        plane_harness.wait_until(
            lambda: (
                ArtifactStatus.PENDING
                not in {info.status for info in cloud.artifact_statuses(refs).values()}
            ),
            TIMEOUT_S,
        )
        for ref in refs:
            cloud.delete_artifact(ref)
