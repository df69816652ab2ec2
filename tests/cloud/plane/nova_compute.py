"""nova-compute with a FakeDriver whose snapshots really reach Glance (plane venv only).

``nova.virt.fake.FakeDriver.snapshot`` only flips the task state, so the image of a
createImage/createBackup would stay ``queued`` forever. This launcher replaces it with what
the libvirt driver does: move the task state through ``image_pending_upload`` and
``image_uploading``, then upload a few bytes to the image. A delay before the upload lets
tests hit the busy-server 409 reliably: the number in the file named by
``STACKBACK_FAKE_SNAPSHOT_FILE`` (tests change it while the plane runs), else
``STACKBACK_FAKE_SNAPSHOT_SECONDS`` (default 0).
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any

import nova.cmd.compute  # first: applies nova's concurrency set-up (monkey patching)
from nova import exception
from nova.compute import task_states
from nova.image import glance
from nova.virt import fake

SNAPSHOT_BYTES = b"stackback fake snapshot\n"


def _snapshot_delay() -> float:
    """Seconds to sleep before the upload: the delay file if present, else the variable."""
    path = os.environ.get("STACKBACK_FAKE_SNAPSHOT_FILE")
    if path and os.path.exists(path):
        with open(path) as handle:
            return float(handle.read().strip() or 0)
    return float(os.environ.get("STACKBACK_FAKE_SNAPSHOT_SECONDS", "0") or 0)


def _snapshot(
    self: fake.FakeDriver, context: Any, instance: Any, image_id: str, update_task_state: Any
) -> None:
    if instance.uuid not in self.instances:
        raise exception.InstanceNotRunning(instance_id=instance.uuid)
    update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
    delay = _snapshot_delay()
    if delay > 0:
        time.sleep(delay)
    update_task_state(
        task_state=task_states.IMAGE_UPLOADING, expected_state=task_states.IMAGE_PENDING_UPLOAD
    )
    metadata = {"disk_format": "raw", "container_format": "bare"}
    glance.API().update(context, image_id, metadata, io.BytesIO(SNAPSHOT_BYTES), purge_props=False)


fake.FakeDriver.snapshot = _snapshot  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(nova.cmd.compute.main())
