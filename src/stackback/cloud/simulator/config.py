"""Settings of the simulated cloud: durations, limits, quotas and injected faults.

Both are stored in the simulator's SQLite file, so every process sharing one
simulated cloud runs with the same settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from stackback.errors import InvalidInput

FAKE_CONSOLE = "FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE"
"""What the simulated hypervisor prints on every console (like Nova's fake driver)."""


@dataclass(frozen=True)
class SimFaults:
    """Random faults, decided reproducibly from the simulator's seed.

    ``error_rate``: chance that any cloud call fails with a 5xx
    (:class:`~stackback.errors.CloudUnavailable`) before doing anything.
    ``busy_rate``: chance that a ``createImage`` answers 409
    (:class:`~stackback.errors.CloudBusy`) although the server is idle.
    ``kill_rate``: chance that a snapshot of an image-backed server fails (Nova then
    deletes its image).
    """

    error_rate: float = 0.0
    busy_rate: float = 0.0
    kill_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "busy_rate", "kill_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInput(f"{name} must be between 0 and 1", field=name)


@dataclass(frozen=True)
class SimConfig:
    """Durations (simulated seconds on the cloud's clock), limits and quotas.

    An image of an image-backed server stays ``queued`` while it waits for a
    per-host upload slot and for ``image_snapshot_seconds`` (the hypervisor
    snapshot), then ``saving`` for ``image_base_seconds +
    image_seconds_per_gb * disk size``, then turns ``active``.
    """

    image_snapshot_seconds: float = 2.0
    image_base_seconds: float = 5.0
    image_seconds_per_gb: float = 10.0
    volume_snapshot_seconds: float = 3.0
    volume_backup_seconds: float = 4.0
    snapshot_delete_seconds: float = 0.0
    latency_seconds: float = 0.0
    host_upload_limit: int | None = 2
    host_snapshot_capacity: int | None = None
    default_disk_gb: float = 1.0
    default_volume_gb: int = 1
    max_images: int | None = None
    max_volume_snapshots: int | None = None
    server_boot_seconds: float = 5.0
    volume_create_seconds: float = 2.0
    flavors: tuple[str, ...] = ("m1.tiny", "m1.small", "m1.medium")
    networks: tuple[str, ...] = ("private", "isolated")
    volume_types: tuple[str, ...] = ("standard",)
    security_groups: tuple[str, ...] = ("default", "web", "ssh")
    max_servers: int | None = None
    max_volumes: int | None = None
    console_output: str = FAKE_CONSOLE
    """The console log of every ACTIVE server."""
    open_ports: tuple[int, ...] = (22,)
    """TCP ports that answer on an ACTIVE server with a network."""
    db_backup_queue_seconds: float = 2.0
    """A Trove backup stays ``NEW`` this long, then ``BUILDING``."""
    db_backup_seconds: float = 20.0
    """How long a full Trove backup is ``BUILDING`` (an incremental: a quarter of it)."""
    db_boot_seconds: float = 30.0
    """How long a Trove instance (restored or created) is ``BUILD`` before ``ACTIVE``."""
    datastores: tuple[str, ...] = ("mysql:5.7", "mysql:8.0", "postgresql:13")
    """``TYPE:VERSION`` pairs the simulated Trove offers."""
    faults: SimFaults = field(default_factory=SimFaults)

    def __post_init__(self) -> None:
        durations = (
            "image_snapshot_seconds",
            "image_base_seconds",
            "image_seconds_per_gb",
            "volume_snapshot_seconds",
            "volume_backup_seconds",
            "snapshot_delete_seconds",
            "latency_seconds",
            "server_boot_seconds",
            "volume_create_seconds",
            "db_backup_queue_seconds",
            "db_backup_seconds",
            "db_boot_seconds",
        )
        for name in durations:
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0", field=name)
        for name in ("host_upload_limit", "host_snapshot_capacity"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise InvalidInput(f"{name} must be >= 1 (or None)", field=name)

    def with_faults(self, **changes: float) -> SimConfig:
        """A copy with some fault probabilities changed."""
        return replace(self, faults=replace(self.faults, **changes))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        data: dict[str, Any] = json.loads(text)
        faults = SimFaults(**data.pop("faults", {}))
        for name in (
            "flavors",
            "networks",
            "volume_types",
            "security_groups",
            "open_ports",
            "datastores",
        ):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data, faults=faults)
