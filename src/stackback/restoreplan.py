"""Restore jobs and their plans: pure data and the planning rules (no I/O, no clock).

A plan says what a restore will create, from which artifact, with which flavor,
networks and volumes. It is made from what was recorded at backup time
(:class:`~stackback.records.ServerSpec`), what the cloud still knows (the image's
block device mapping, the source server if it still exists) and the operator's
overrides, and it says which of those it had to use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from stackback.errors import InvalidInput
from stackback.records import NetworkSpec, ServerSpec
from stackback.verification import VerifyChecks

NAME_MAX = 255


class RestoreState(StrEnum):
    """pending → running → succeeded; failed/cancelled after ``cleaning`` removed what it made."""

    PENDING = "pending"
    RUNNING = "running"
    CLEANING = "cleaning"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RestoreState.SUCCEEDED, RestoreState.FAILED, RestoreState.CANCELLED)


ACTIVE_RESTORE_STATES = (RestoreState.PENDING, RestoreState.RUNNING, RestoreState.CLEANING)


class RestoreMode(StrEnum):
    AS_NEW = "as-new"
    IN_PLACE = "in-place"
    VERIFY = "verify"
    """A throwaway server: checked, recorded on the backup, then always removed."""


@dataclass(frozen=True)
class PlannedVolume:
    """A volume the restore makes from one Cinder snapshot of the backup."""

    snapshot_id: str
    size_gb: int
    device_name: str | None = None
    boot_index: int | None = None
    volume_type: str | None = None
    delete_on_termination: bool = False
    replaces: str | None = None
    """In place: the attached volume this one replaces (detached and kept, never deleted)."""
    from_backup: bool = False
    """``snapshot_id`` names a Cinder backup (restored into a new volume), not a snapshot."""

    @property
    def item(self) -> str:
        """Its restore-item marker: unique within one restore."""
        return f"volume:{self.device_name or self.snapshot_id}"


@dataclass(frozen=True)
class DatabasePlan:
    """A new Trove instance from a backup (``restorePoint``); its flavor is the plan's."""

    backup_ref: str
    """The Trove backup restored."""
    volume_size: int
    datastore: str
    datastore_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_ref": self.backup_ref,
            "volume_size": self.volume_size,
            "datastore": self.datastore,
            "datastore_version": self.datastore_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatabasePlan:
        return cls(
            backup_ref=str(data["backup_ref"]),
            volume_size=int(data["volume_size"]),
            datastore=str(data["datastore"]),
            datastore_version=str(data["datastore_version"]),
        )


@dataclass(frozen=True)
class RestorePlan:
    """What a restore job will do; recorded with the job, printed by ``--dry-run``."""

    mode: RestoreMode
    name: str
    flavor: str
    image_id: str | None = None
    """Image-backed: boot (or rebuild) from this image. None: boot from ``volumes``."""
    server_id: str | None = None
    """In place: the server rebuilt."""
    networks: tuple[NetworkSpec, ...] = ()
    security_groups: tuple[str, ...] = ()
    key_name: str | None = None
    availability_zone: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[PlannedVolume, ...] = ()
    notes: tuple[str, ...] = ()
    """What the plan had to take from the cloud or the command line, and what it leaves out."""
    checks: VerifyChecks | None = None
    """A verification: what must hold of the server once ACTIVE."""
    volume_only: bool = False
    """A volume policy's backup: the restore makes its ``volumes`` and no server."""
    database: DatabasePlan | None = None
    """A database backup's restore: a Trove instance, not a server."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "name": self.name,
            "flavor": self.flavor,
            "image_id": self.image_id,
            "server_id": self.server_id,
            "networks": [{"network": n.network, "fixed_ip": n.fixed_ip} for n in self.networks],
            "security_groups": list(self.security_groups),
            "key_name": self.key_name,
            "availability_zone": self.availability_zone,
            "metadata": dict(self.metadata),
            "volumes": [
                {
                    "snapshot_id": v.snapshot_id,
                    "size_gb": v.size_gb,
                    "device_name": v.device_name,
                    "boot_index": v.boot_index,
                    "volume_type": v.volume_type,
                    "delete_on_termination": v.delete_on_termination,
                    "replaces": v.replaces,
                    "from_backup": v.from_backup,
                }
                for v in self.volumes
            ],
            "notes": list(self.notes),
            "checks": self.checks.to_dict() if self.checks else None,
            "volume_only": self.volume_only,
            "database": self.database.to_dict() if self.database else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestorePlan:
        return cls(
            mode=RestoreMode(data["mode"]),
            name=str(data["name"]),
            flavor=str(data["flavor"]),
            image_id=data.get("image_id"),
            server_id=data.get("server_id"),
            networks=tuple(
                NetworkSpec(str(n["network"]), n.get("fixed_ip")) for n in data.get("networks", ())
            ),
            security_groups=tuple(data.get("security_groups", ())),
            key_name=data.get("key_name"),
            availability_zone=data.get("availability_zone"),
            metadata=dict(data.get("metadata") or {}),
            volumes=tuple(
                PlannedVolume(
                    snapshot_id=str(v["snapshot_id"]),
                    size_gb=int(v["size_gb"]),
                    device_name=v.get("device_name"),
                    boot_index=v.get("boot_index"),
                    volume_type=v.get("volume_type"),
                    delete_on_termination=bool(v.get("delete_on_termination")),
                    replaces=v.get("replaces"),
                    from_backup=bool(v.get("from_backup")),
                )
                for v in data.get("volumes", ())
            ),
            notes=tuple(data.get("notes", ())),
            checks=VerifyChecks.from_dict(data["checks"]) if data.get("checks") else None,
            volume_only=bool(data.get("volume_only")),
            database=DatabasePlan.from_dict(data["database"]) if data.get("database") else None,
        )


@dataclass(frozen=True)
class RestoreOverrides:
    """Placement given on the command line; each replaces what was recorded."""

    name: str | None = None
    flavor: str | None = None
    network: str | None = None
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    availability_zone: str | None = None
    volume_size: int | None = None
    """A database restore: the volume size (GB) instead of the recorded one."""
    datastore: str | None = None
    datastore_version: str | None = None


@dataclass(frozen=True)
class RestoreStep:
    """One entry of a restore job's journal."""

    name: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class CreatedResource:
    """Something a restore job created (also found again by its marker)."""

    kind: str
    id: str
    item: str


@dataclass(frozen=True)
class RestoreJob:
    """A recorded restore: like a run, leased by attempt and resumable after a crash."""

    id: str
    backup_id: str
    mode: RestoreMode
    state: RestoreState
    plan: RestorePlan
    created_at: datetime
    deadline_at: datetime
    cloud: str | None = None
    project: str | None = None
    """The project of the restored backup (None: of no project, seen by every-project callers)."""
    server_id: str | None = None
    created: tuple[CreatedResource, ...] = ()
    steps: tuple[RestoreStep, ...] = ()
    error: str | None = None
    error_id: str | None = None
    attempt: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    not_before: datetime | None = None
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    verify_result: str | None = None
    """A verification's verdict (``passed``/``failed``) once known; recorded on the backup too."""
    verify_reason: str | None = None
    active_seconds: float | None = None
    """Time from the job's start to its server being ACTIVE (the measured restore time)."""


def default_name(target_name: str | None, target: str, backup_id: str) -> str:
    return f"{target_name or target}-restore-{backup_id[:8]}"[:NAME_MAX]


def volumes_from_mapping(
    mapping: Sequence[Mapping[str, Any]], recorded: ServerSpec | None
) -> tuple[PlannedVolume, ...]:
    """The volumes of a volume-backed backup, from its image's ``block_device_mapping``.

    Types come from the record (matched by device name) where the mapping has none.
    """
    known = recorded.volumes if recorded else ()
    types = {v.device_name: v.volume_type for v in known if v.device_name}
    planned: list[PlannedVolume] = []
    for entry in mapping:
        if entry.get("source_type") != "snapshot" or not entry.get("snapshot_id"):
            continue
        device = entry.get("device_name")
        boot_index = entry.get("boot_index")
        planned.append(
            PlannedVolume(
                snapshot_id=str(entry["snapshot_id"]),
                size_gb=int(entry.get("volume_size") or 1),
                device_name=str(device) if device else None,
                boot_index=int(boot_index) if boot_index not in (None, -1, "-1") else None,
                volume_type=entry.get("volume_type") or types.get(str(device)),
                delete_on_termination=bool(entry.get("delete_on_termination")),
            )
        )
    return tuple(sorted(planned, key=lambda v: (v.boot_index is None, v.device_name or "")))


def build_plan(
    *,
    mode: RestoreMode,
    name: str,
    overrides: RestoreOverrides,
    recorded: ServerSpec | None,
    live: ServerSpec | None,
    image_id: str,
    volume_backed: bool,
    mapping: Sequence[Mapping[str, Any]] = (),
    server_id: str | None = None,
    data_snapshots: Sequence[tuple[str, str]] = (),
    with_volumes: bool = False,
) -> RestorePlan:
    """The plan of a restore. ``recorded``: the spec stored with the backup (None for
    backups taken before specs were recorded); ``live``: the source server's spec now
    (None: it is gone). Refuses (``InvalidInput``) what cannot be restored that way."""
    notes: list[str] = []
    spec = recorded
    if spec is None and live is not None:
        spec = live
        notes.append("no placement recorded with this backup: took it from the source server")
    elif spec is None:
        notes.append("no placement recorded with this backup and its server is gone")
    if mode is RestoreMode.IN_PLACE and volume_backed:
        raise InvalidInput(
            "in-place restore of a volume-backed server is not possible: Nova cannot rewrite "
            "a root volume from a snapshot; use --as-new",
            field="in-place",
        )
    flavor = overrides.flavor or (spec.flavor if spec else None)
    if not flavor and mode is not RestoreMode.IN_PLACE:
        raise InvalidInput(
            "the flavor of this backup's server is not known: give --flavor", field="flavor"
        )
    networks = _networks(spec, overrides, source_gone=live is None, notes=notes)
    volumes: tuple[PlannedVolume, ...] = ()
    if volume_backed:
        volumes = volumes_from_mapping(mapping, recorded)
        if not any(v.boot_index == 0 for v in volumes):
            raise InvalidInput(
                f"image {image_id} names no root volume snapshot: this backup cannot boot",
                field="backup",
            )
    elif with_volumes:
        volumes = _replacing_volumes(mode, recorded, data_snapshots, notes)
    elif data_snapshots and mode is RestoreMode.AS_NEW:
        volumes = _new_data_volumes(recorded, data_snapshots, notes)
    elif data_snapshots:
        notes.append(
            f"{len(data_snapshots)} data volume snapshot(s) of this backup are not restored: "
            "restore them with --in-place --volumes"
        )
    elif spec is not None and spec.volumes:
        devices = ", ".join(v.device_name or "?" for v in spec.volumes)
        notes.append(f"data volumes of the source ({devices}) are not part of this backup")
    for label, value in (
        ("flavor", overrides.flavor),
        ("network", overrides.network),
        ("key pair", overrides.key_name),
        ("availability zone", overrides.availability_zone),
    ):
        if value:
            notes.append(f"{label} {value} from the command line")
    if overrides.security_groups:
        notes.append("security groups from the command line")
    return RestorePlan(
        mode=mode,
        name=name,
        flavor=flavor or "",
        image_id=None if volume_backed else image_id,
        server_id=server_id,
        networks=networks,
        security_groups=overrides.security_groups or (spec.security_groups if spec else ()),
        key_name=overrides.key_name or (spec.key_name if spec else None),
        availability_zone=overrides.availability_zone or (spec.availability_zone if spec else None),
        metadata=dict(spec.metadata) if spec else {},
        volumes=volumes,
        notes=tuple(notes),
    )


def build_volume_plan(
    *,
    mode: RestoreMode,
    name: str,
    artifact_id: str,
    from_backup: bool,
    size_gb: int,
    overrides: RestoreOverrides,
) -> RestorePlan:
    """The plan of a restore of a volume policy's backup: one new volume, from the backup's
    Cinder snapshot or Cinder backup. Only ``--as-new``; server placement does not apply."""
    if mode is not RestoreMode.AS_NEW:
        raise InvalidInput(
            "a volume backup restores as a new volume only: use --as-new NAME", field="as-new"
        )
    given = [
        option
        for option, value in (
            ("--flavor", overrides.flavor),
            ("--network", overrides.network),
            ("--key-name", overrides.key_name),
            ("--security-group", overrides.security_groups),
        )
        if value
    ]
    if given:
        raise InvalidInput(
            f"{', '.join(given)}: a volume backup restores as a volume, not a server",
            field="backup",
        )
    source = "Cinder backup" if from_backup else "Cinder snapshot"
    return RestorePlan(
        mode=mode,
        name=name,
        flavor="",
        availability_zone=overrides.availability_zone,
        volumes=(
            PlannedVolume(
                snapshot_id=artifact_id, size_gb=size_gb, device_name=None, from_backup=from_backup
            ),
        ),
        notes=(f"a new volume {name} from {source} {artifact_id}",),
        volume_only=True,
    )


def _replacing_volumes(
    mode: RestoreMode,
    recorded: ServerSpec | None,
    data_snapshots: Sequence[tuple[str, str]],
    notes: list[str],
) -> tuple[PlannedVolume, ...]:
    """In place, each data volume snapshot becomes a new volume attached where the volume it
    was taken of was; that volume is detached and kept."""
    if mode is not RestoreMode.IN_PLACE:
        raise InvalidInput("--volumes goes with --in-place", field="volumes")
    if not data_snapshots:
        raise InvalidInput(
            "this backup has no data volume snapshots (only whole-server backups of "
            "image-backed servers have them)",
            field="volumes",
        )
    planned = _volumes_from_snapshots(recorded, data_snapshots, "volumes", replacing=True)
    notes.extend(
        f"volume {source} ({v.device_name or '?'}) will be detached and kept; "
        f"a new volume from snapshot {v.snapshot_id} is attached in its place"
        for v, source in planned
    )
    return tuple(v for v, _source in planned)


def _new_data_volumes(
    recorded: ServerSpec | None,
    data_snapshots: Sequence[tuple[str, str]],
    notes: list[str],
) -> tuple[PlannedVolume, ...]:
    """As new, each data volume snapshot of a whole-server backup becomes a new volume,
    attached to the new server where the volume it was taken of was."""
    planned = _volumes_from_snapshots(recorded, data_snapshots, "backup", replacing=False)
    notes.extend(
        f"data volume {source} ({v.device_name or '?'}): a new volume from "
        f"snapshot {v.snapshot_id} is attached to the new server"
        for v, source in planned
    )
    return tuple(v for v, _source in planned)


def _volumes_from_snapshots(
    recorded: ServerSpec | None,
    data_snapshots: Sequence[tuple[str, str]],
    field: str,
    *,
    replacing: bool,
) -> list[tuple[PlannedVolume, str]]:
    """A new volume from each (snapshot, volume it was taken of), with that volume's recorded
    size, device and type, by device; ``replacing``: each one takes that volume's place.
    Each comes with the id of the volume it was taken of."""
    known = {v.volume_id: v for v in (recorded.volumes if recorded else ()) if v.volume_id}
    planned: list[tuple[PlannedVolume, str]] = []
    for snapshot_id, volume_id in data_snapshots:
        source = known.get(volume_id)
        if source is None:
            raise InvalidInput(
                f"snapshot {snapshot_id} is of volume {volume_id}, which the backup's record "
                "does not name: its size and device are not known",
                field=field,
            )
        volume = PlannedVolume(
            snapshot_id=snapshot_id,
            size_gb=source.size_gb,
            device_name=source.device_name,
            volume_type=source.volume_type,
            replaces=volume_id if replacing else None,
        )
        planned.append((volume, volume_id))
    return sorted(planned, key=lambda pair: pair[0].device_name or "")


def _networks(
    spec: ServerSpec | None, overrides: RestoreOverrides, *, source_gone: bool, notes: list[str]
) -> tuple[NetworkSpec, ...]:
    """The recorded networks; their fixed IPs only when the source server is gone."""
    if overrides.network:
        return (NetworkSpec(overrides.network),)
    if spec is None:
        return ()
    if source_gone:
        if any(n.fixed_ip for n in spec.networks):
            notes.append("the source server is gone: its fixed IPs are asked for again")
        return spec.networks
    if any(n.fixed_ip for n in spec.networks):
        notes.append("the source server still exists: new fixed IPs are assigned")
    return tuple(NetworkSpec(n.network) for n in spec.networks)


def for_verification(
    plan: RestorePlan, *, network: str | None, checks: VerifyChecks
) -> RestorePlan:
    """A plan turned into a verification's: only the network the operator named (or none,
    never a recorded fixed IP), none of the source's metadata (a selector must not pick
    the throwaway server up), no key pair or security groups it does not need."""
    if checks.port is not None and network is None:
        raise InvalidInput("a --port check needs a --network to reach the server", field="port")
    notes = [n for n in plan.notes if "fixed IP" not in n]
    notes.append(f"verification on network {network}" if network else "verification: no network")
    return replace(
        plan,
        mode=RestoreMode.VERIFY,
        networks=(NetworkSpec(network),) if network else (),
        security_groups=plan.security_groups if network else (),
        key_name=None,
        metadata={},
        notes=tuple(notes),
        checks=checks,
    )
