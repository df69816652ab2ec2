"""The loopback OpenStack control plane as a pytest fixture (see tests/cloud/plane/).

``openstack_plane`` (session scope) uses the plane whose clouds.yaml ``STACKBACK_PLANE_CLOUDS``
names if that plane answers; otherwise it installs and starts one in a temporary directory
and stops it when the session ends. ``STACKBACK_SKIP_OPENSTACK=1`` skips the tests that use
it; any other failure to get a plane is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openstack.config.loader import OpenStackConfig
from openstack.connection import Connection

from tests.cloud.plane import plane as plane_script

PLANE_SCRIPT = Path(plane_script.__file__)
# A cold plane (install + start) takes a few minutes: longer than the default test timeout.
PLANE_TIMEOUT_SECONDS = 900


@dataclass
class OpenStackPlane:
    clouds_yaml: Path
    run_dir: Path

    def connection(self, cloud_name: str) -> Connection:
        """A new openstacksdk connection to one of the clouds in clouds.yaml."""
        config = OpenStackConfig(config_files=[str(self.clouds_yaml)], load_envvars=False)
        return Connection(config=config.get_one(cloud_name))

    def set_snapshot_delay(self, seconds: float) -> None:
        """How long the fake hypervisor takes to upload a snapshot (plane-wide, immediate)."""
        (self.run_dir / plane_script.SNAPSHOT_DELAY_FILE).write_text(f"{seconds}\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The first test to use the plane pays for starting it: give those tests room.
    for item in items:
        if item.get_closest_marker("openstack") or item.get_closest_marker("trove"):
            item.add_marker(pytest.mark.timeout(PLANE_TIMEOUT_SECONDS))


def _plane(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(PLANE_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=PLANE_TIMEOUT_SECONDS,
    )
    if done.returncode:
        pytest.fail(
            f"`plane.py {' '.join(args)}` failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-8000:]}",
            pytrace=False,
        )


def _answers(plane: OpenStackPlane) -> bool:
    try:
        plane.connection("admin").authorize()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _client_config(plane: OpenStackPlane) -> Iterator[OpenStackPlane]:
    """Point OS_CLIENT_CONFIG_FILE at the plane (for code that reads the environment)."""
    before = os.environ.get("OS_CLIENT_CONFIG_FILE")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(plane.clouds_yaml)
    try:
        yield plane
    finally:
        if before is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = before


@pytest.fixture(scope="session")
def openstack_plane(request: pytest.FixtureRequest) -> Iterator[OpenStackPlane]:
    if os.environ.get("STACKBACK_SKIP_OPENSTACK") == "1":
        pytest.skip("STACKBACK_SKIP_OPENSTACK=1: the OpenStack control plane is not used")
    given = os.environ.get("STACKBACK_PLANE_CLOUDS")
    if given and Path(given).is_file():
        clouds = Path(given).resolve()
        plane = OpenStackPlane(clouds_yaml=clouds, run_dir=clouds.parent)
        if _answers(plane):
            with _client_config(plane):
                yield plane
            return
        warnings.warn(
            f"STACKBACK_PLANE_CLOUDS={given} does not answer: starting a plane", stacklevel=1
        )
    # /tmp rather than pytest's 0700 basetemp: PostgreSQL runs as user postgres and must
    # reach its data directory inside the run directory.
    base = Path(tempfile.mkdtemp(prefix="stackback-plane-"))
    base.chmod(0o711)
    run_dir = base / "run"
    _plane("install")
    try:
        _plane("start", "--dir", str(run_dir))
        plane = OpenStackPlane(clouds_yaml=run_dir / "clouds.yaml", run_dir=run_dir)
        with _client_config(plane):
            yield plane
    finally:
        _plane("stop", "--dir", str(run_dir))
        if request.session.testsfailed:
            print(f"\nplane logs kept in {run_dir / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
