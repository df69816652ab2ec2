"""Which server am I? The OpenStack metadata service or config drive, seen from inside.

Both serve ``openstack/latest/meta_data.json`` whose ``uuid`` is the server's id: the
metadata service over HTTP at the link-local address, the config drive as a small
filesystem labelled ``config-2``. A config drive is read where it is mounted (found in
``/proc/mounts``); stackback never mounts anything itself.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stackback.errors import IdentityUnknown, InvalidInput

DEFAULT_METADATA_URL = "http://169.254.169.254/openstack/latest/meta_data.json"
META_DATA_PATH = Path("openstack", "latest", "meta_data.json")
CONFIG_DRIVE_LABEL = "config-2"
BY_LABEL = Path("/dev/disk/by-label")
MOUNTS = Path("/proc/mounts")
TIMEOUT_SECONDS = 5.0
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Identity:
    """This server as its metadata describes it, and where that was read."""

    server_id: str
    name: str | None
    project_id: str | None
    source: str


def identify(
    *,
    metadata_url: str | None = None,
    config_drive: Path | None = None,
    timeout: float = TIMEOUT_SECONDS,
    mounts: Path = MOUNTS,
    by_label: Path = BY_LABEL,
) -> Identity:
    """This server's identity.

    ``config_drive`` (a mounted config drive) or ``metadata_url``: that source only.
    Neither: a mounted ``config-2`` filesystem if there is one, else the metadata
    service at its usual address. ``IdentityUnknown`` says what was tried.
    """
    if metadata_url is not None and config_drive is not None:
        raise InvalidInput(
            "give either a metadata URL or a config drive, not both", field="config-drive"
        )
    if config_drive is not None:
        return from_config_drive(config_drive)
    if metadata_url is not None:
        return from_metadata_service(metadata_url, timeout=timeout)
    mounted = find_config_drive(mounts=mounts, by_label=by_label)
    if mounted is not None:
        return from_config_drive(mounted)
    try:
        return from_metadata_service(DEFAULT_METADATA_URL, timeout=timeout)
    except IdentityUnknown as error:
        drive = by_label / CONFIG_DRIVE_LABEL
        hint = (
            f"; config drive {drive} is not mounted (mount it, or give --config-drive)"
            if drive.exists()
            else "; and no config drive is mounted"
        )
        raise IdentityUnknown(error.message + hint) from error


def from_metadata_service(url: str, *, timeout: float = TIMEOUT_SECONDS) -> Identity:
    """``GET`` the metadata document at ``url`` (never through a proxy)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"metadata URL {url!r} is not an http(s) URL with a host", field="metadata-url"
        )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise IdentityUnknown(
            f"metadata service {url} answered HTTP {error.code}: is this an OpenStack server?"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise IdentityUnknown(
            f"metadata service {url} cannot be reached ({reason}): is this an OpenStack server?"
        ) from None
    return _identity(body, f"metadata service {url}")


def from_config_drive(path: Path) -> Identity:
    """Read ``openstack/latest/meta_data.json`` of a mounted config drive at ``path``."""
    document = path / META_DATA_PATH
    try:
        with document.open("rb") as handle:
            body = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise IdentityUnknown(
            f"config drive {path}: cannot read {document} ({error.strerror or error})"
        ) from None
    return _identity(body, f"config drive {path}")


def find_config_drive(*, mounts: Path = MOUNTS, by_label: Path = BY_LABEL) -> Path | None:
    """Where the filesystem labelled ``config-2`` is mounted (None: nowhere, or no drive)."""
    drive = by_label / CONFIG_DRIVE_LABEL
    if not drive.exists():
        return None
    device = os.path.realpath(drive)
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and os.path.realpath(fields[0]) == device:
            return Path(fields[1].replace("\\040", " "))
    return None


def _identity(body: bytes, source: str) -> Identity:
    if len(body) > MAX_BYTES:
        raise IdentityUnknown(f"{source}: meta_data.json is larger than {MAX_BYTES} bytes")
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise IdentityUnknown(f"{source}: meta_data.json is not JSON") from None
    server_id = data.get("uuid") if isinstance(data, Mapping) else None
    if not isinstance(server_id, str) or not server_id.strip() or len(server_id) > 255:
        raise IdentityUnknown(f"{source}: meta_data.json names no server (no 'uuid')")
    return Identity(
        server_id=server_id.strip(),
        name=_text(data.get("name")),
        project_id=_text(data.get("project_id")),
        source=source,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
