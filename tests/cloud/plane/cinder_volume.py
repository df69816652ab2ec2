"""cinder-volume with ``cinder.tests.fake_driver`` able to make volumes from images.

The fake driver inherits LVM's image path (qemu-img on a device that does not exist), so a
volume created from an image ends in ``error``. Claiming the image was cloned makes the
volume ``available`` and bootable, carrying the image's metadata. Plane venv only.
"""

from __future__ import annotations

import sys
from typing import Any

import cinder.cmd.volume  # first: applies cinder's monkey patching
from cinder.tests import fake_driver


def _clone_image(
    self: Any, context: Any, volume: Any, image_location: Any, image_meta: Any, image_service: Any
) -> tuple[None, bool]:
    return None, True


fake_driver.FakeLoggingVolumeDriver.clone_image = _clone_image  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cinder.cmd.volume.main())
