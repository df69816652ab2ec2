"""Smoke tests of the loopback OpenStack plane: what stackback relies on, observed for real."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openstack import exceptions
from openstack.connection import Connection

from tests.cloud.conftest import OpenStackPlane

pytestmark = pytest.mark.openstack

FLAVOR = "m1.tiny"
IMAGE = "stackback-tiny"
MARKER = {"stackback_created_by": "stackback"}


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def wait_image(conn: Connection, image_id: str, timeout: float = 120) -> Any:
    def active() -> Any:
        image = conn.image.get_image(image_id)
        assert image.status not in ("killed", "deleted"), f"image {image_id}: {image.status}"
        return image if image.status == "active" else None

    return wait_until(f"image {image_id} active", active, timeout)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Cleanup:
    """Deletes what a test created, newest first, even when the test fails."""

    def __init__(self) -> None:
        self.actions: list[Callable[[], None]] = []

    def add(self, action: Callable[[], None]) -> None:
        self.actions.append(action)

    def run(self) -> None:
        for action in reversed(self.actions):
            with contextlib.suppress(exceptions.NotFoundException):
                action()


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    done = Cleanup()
    yield done
    done.run()


@pytest.fixture
def alpha(openstack_plane: OpenStackPlane) -> Connection:
    return openstack_plane.connection("alpha")


def boot(conn: Connection, cleanup: Cleanup, **kwargs: Any) -> Any:
    flavor = conn.compute.find_flavor(FLAVOR, ignore_missing=False)
    server = conn.compute.create_server(
        name=unique("smoke"), flavor_id=flavor.id, networks="none", **kwargs
    )

    def delete() -> None:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120)

    cleanup.add(delete)
    return conn.compute.wait_for_server(server, status="ACTIVE", wait=120)


def delete_image(conn: Connection, image_id: str) -> Callable[[], None]:
    return lambda: conn.image.delete_image(image_id)


def delete_snapshot(conn: Connection, snapshot_id: str) -> Callable[[], None]:
    def delete() -> None:
        # The volume cannot be deleted while it has snapshots: wait until this one is gone.
        snapshot = conn.block_storage.get_snapshot(snapshot_id)
        conn.block_storage.delete_snapshot(snapshot_id)
        conn.block_storage.wait_for_delete(snapshot, wait=120)

    return delete


def test_create_image_of_a_server(
    openstack_plane: OpenStackPlane, alpha: Connection, cleanup: Cleanup
) -> None:
    image = alpha.image.find_image(IMAGE, ignore_missing=False)
    server = boot(alpha, cleanup, image_id=image.id)

    # A slow upload keeps the server busy: a second createImage meanwhile is refused.
    openstack_plane.set_snapshot_delay(6)
    cleanup.add(lambda: openstack_plane.set_snapshot_delay(0))
    name = unique("snap")
    first = alpha.compute.create_server_image(server, name, metadata=MARKER)
    cleanup.add(delete_image(alpha, first.id))
    refused_name = unique("refused")
    with pytest.raises(exceptions.ConflictException) as refused:
        alpha.compute.create_server_image(server, refused_name, metadata=MARKER)
    assert refused.value.status_code == 409
    openstack_plane.set_snapshot_delay(0)

    snap = wait_image(alpha, first.id)
    assert snap.name == name
    assert snap.size and snap.size > 0
    props = {**snap.properties, **{k: v for k, v in snap.to_dict().items() if v is not None}}
    assert props["instance_uuid"] == server.id
    assert props["image_type"] == "snapshot"
    assert props["stackback_created_by"] == "stackback"
    # A refused request creates no image.
    assert alpha.image.find_image(refused_name) is None

    # Another project sees neither the server nor its image.
    beta = openstack_plane.connection("beta")
    with pytest.raises(exceptions.NotFoundException):
        beta.compute.get_server(server.id)
    with pytest.raises(exceptions.NotFoundException):
        beta.image.get_image(snap.id)
    assert snap.id not in {i.id for i in beta.image.images()}
    assert server.id not in {s.id for s in beta.compute.servers()}

    # The project's reader sees both but may not snapshot.
    reader = openstack_plane.connection("alpha-reader")
    assert reader.compute.get_server(server.id).id == server.id
    assert reader.image.get_image(snap.id).id == snap.id
    with pytest.raises(exceptions.ForbiddenException):
        reader.compute.create_server_image(server, unique("reader"))


def test_create_image_of_a_volume_backed_server(alpha: Connection, cleanup: Cleanup) -> None:
    image = alpha.image.find_image(IMAGE, ignore_missing=False)
    volume = alpha.block_storage.create_volume(name=unique("boot"), size=1, image_id=image.id)
    cleanup.add(lambda: alpha.block_storage.delete_volume(volume.id))
    volume = alpha.block_storage.wait_for_status(
        volume, status="available", failures=["error"], wait=120
    )
    assert volume.is_bootable

    server = boot(
        alpha,
        cleanup,
        block_device_mapping=[
            {
                "boot_index": 0,
                "uuid": volume.id,
                "source_type": "volume",
                "destination_type": "volume",
                "delete_on_termination": False,
            }
        ],
    )
    snap = alpha.compute.create_server_image(server, unique("bfv"), metadata=MARKER)
    cleanup.add(delete_image(alpha, snap.id))
    snap = wait_image(alpha, snap.id)
    assert snap.size in (0, None)
    props = snap.properties
    assert props["stackback_created_by"] == "stackback"
    mapping = json.loads(props["block_device_mapping"])
    snapshot_ids = [entry["snapshot_id"] for entry in mapping]
    assert snapshot_ids and all(snapshot_ids)
    for snapshot_id in snapshot_ids:
        # Deleting the image would not delete these: the test does.
        cleanup.add(delete_snapshot(alpha, snapshot_id))
        snapshot = alpha.block_storage.wait_for_status(
            alpha.block_storage.get_snapshot(snapshot_id),
            status="available",
            failures=["error"],
            wait=120,
        )
        assert snapshot.volume_id == volume.id
