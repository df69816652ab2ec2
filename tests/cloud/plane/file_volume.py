"""A Cinder volume driver for the plane whose volumes are sparse files (plane venv only).

Cinder's ``FakeLoggingVolumeDriver`` keeps no data and answers ``initialize_connection`` with
an iSCSI target that does not exist, so ``cinder-backup`` (which reads and writes a volume
through os-brick) cannot serve it. This driver keeps everything the fake driver does (its
pools, groups and replication answers) and backs each volume and snapshot with a sparse
file under ``<state_path>/file-volumes``, attached through os-brick's ``LocalConnector``
(``driver_volume_type 'local'`` with the file as ``device_path``). Snapshots and clones are
sparse copies, so Cinder's backup service reads what the volume held when it was taken.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from cinder.tests import fake_driver
from oslo_config import cfg

GIB = 1024**3


def _file_dir() -> str:
    path = os.path.join(cfg.CONF.state_path, "file-volumes")
    os.makedirs(path, exist_ok=True)
    return path


def _sized(path: str, size_gb: int) -> str:
    """PATH, created empty or grown to SIZE_GB gigabytes (sparse); never shrunk."""
    with open(path, "ab") as handle:
        if handle.tell() < size_gb * GIB:
            handle.truncate(size_gb * GIB)
    return path


def _sparse_copy(source: str, target: str) -> None:
    subprocess.run(["cp", "--sparse=always", source, target], check=True)


class FileVolumeDriver(fake_driver.FakeLoggingVolumeDriver):
    """The fake driver with data: one sparse file per volume and per snapshot."""

    def _volume_path(self, volume: Any) -> str:
        return os.path.join(_file_dir(), f"volume-{volume['id']}")

    def _snapshot_path(self, snapshot: Any) -> str:
        return os.path.join(_file_dir(), f"snapshot-{snapshot['id']}")

    def local_path(self, volume: Any, vg: Any = None) -> str:
        return _sized(self._volume_path(volume), volume["size"])

    def create_volume(self, volume: Any) -> Any:
        update = super().create_volume(volume)
        self.local_path(volume)
        return update

    def delete_volume(self, volume: Any) -> None:
        Path(self._volume_path(volume)).unlink(missing_ok=True)

    def create_snapshot(self, snapshot: Any) -> None:
        _sparse_copy(self.local_path(snapshot.volume), self._snapshot_path(snapshot))

    def delete_snapshot(self, snapshot: Any) -> None:
        Path(self._snapshot_path(snapshot)).unlink(missing_ok=True)

    def create_volume_from_snapshot(self, volume: Any, snapshot: Any) -> None:
        source = _sized(self._snapshot_path(snapshot), snapshot["volume_size"])
        _sparse_copy(source, self._volume_path(volume))
        self.local_path(volume)

    def create_cloned_volume(self, volume: Any, src_vol: Any) -> None:
        _sparse_copy(self.local_path(src_vol), self._volume_path(volume))
        self.local_path(volume)

    def extend_volume(self, volume: Any, new_size: int) -> None:
        _sized(self._volume_path(volume), new_size)

    def validate_connector(self, connector: Any) -> None:
        """A local file needs nothing of the connector (LVM's iSCSI target wants an initiator)."""

    def initialize_connection(self, volume: Any, connector: Any) -> dict[str, Any]:
        answer: dict[str, Any] = super().initialize_connection(volume, connector)
        answer["driver_volume_type"] = "local"
        answer["data"]["device_path"] = self.local_path(volume)
        return answer

    def initialize_connection_snapshot(self, snapshot: Any, connector: Any) -> dict[str, Any]:
        path = _sized(self._snapshot_path(snapshot), snapshot["volume_size"])
        return {"driver_volume_type": "local", "data": {"device_path": path}}
