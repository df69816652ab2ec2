"""Value objects that cross the Store port: schedule states, tick plans, filters, step notes.

Pure data (no database, no I/O): the engine builds and reads them, every Store
implementation accepts and returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import Enum, StrEnum
from functools import cached_property
from itertools import count
from operator import attrgetter
from typing import Any, Protocol

from stackback.policy import Backup, BackupKind, BackupStatus, RunState, Selector


@dataclass(frozen=True)
class ScheduleState:
    """A policy's cron schedule and where it stands.

    ``deferred_fire_at`` is an occurrence whose targets the cloud could not
    list yet (a transient error); ``next_fire_at`` is then when the scheduler
    asks again, not the next cron time.
    """

    id: int
    policy_id: str
    cron: str
    next_fire_at: datetime | None
    last_fired_at: datetime | None
    deferred_fire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DuePolicy:
    """What the tick needs of a policy to plan its due schedules (not a full ``Policy``).

    Loaded with the due schedule in one query; retention, kind and the policy's
    other schedules are not read (the tick does not use them).
    """

    id: str
    name: str
    timezone: str
    window_minutes: int
    targets: tuple[str, ...] = ()
    selector: Selector | None = None
    enabled: bool = True
    cloud: str | None = None
    label: str | None = None
    project: str | None = None
    kind: BackupKind = BackupKind.SERVER_IMAGE
    """What its targets are: servers, Cinder volumes (volume kinds) or Trove instances."""


@dataclass(frozen=True)
class DueSchedule:
    """A schedule whose next fire time has come, with what the tick needs of its policy."""

    schedule: ScheduleState
    policy: DuePolicy


@dataclass(frozen=True)
class NewRun:
    """A run the scheduler wants to exist (inserted unless it already does)."""

    target: str
    scheduled_for: datetime
    due_at: datetime
    state: RunState = RunState.PENDING
    target_name: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class TickPlan:
    """What the scheduler decided for one due schedule."""

    runs: list[NewRun] = field(default_factory=list)
    next_fire_at: datetime | None = None
    fired_at: datetime | None = None
    deferred_fire_at: datetime | None = None
    """An occurrence kept for later (``next_fire_at`` is then when to try it again)."""


@dataclass(frozen=True)
class StepNote:
    """A step to append to a run's journal in the same transaction as a run update."""

    name: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str = ""


@dataclass(frozen=True)
class RunFilter:
    """Which runs ``list_runs`` returns (newest first)."""

    policy_id: str | None = None
    target: str | None = None
    state: RunState | None = None
    limit: int = 200
    project: str | None = None
    """Only this project's runs (None: every project's)."""
    marker: str | None = None
    """Only runs after this one in the list's order (the last run of the previous page)."""
    since: datetime | None = None
    """Only runs scheduled at or after this time."""
    until: datetime | None = None
    """Only runs scheduled before this time."""


@dataclass(frozen=True)
class BackupFilter:
    """Which backups ``list_backups`` returns (newest first; deleted ones only if asked)."""

    target: str | None = None
    policy_id: str | None = None
    label: str | None = None
    statuses: tuple[BackupStatus, ...] = ()
    include_deleted: bool = False
    limit: int | None = 1000
    """At most this many (None: all of them, as retention needs)."""
    project: str | None = None
    """Only this project's backups (None: every project's)."""
    marker: str | None = None
    """Only backups after this one in the list's order (the last of the previous page)."""
    since: datetime | None = None
    """Only backups created at or after this time."""
    until: datetime | None = None
    """Only backups created before this time."""


class Unchanged(Enum):
    """A field a :class:`BackupChange` leaves as it is."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


@dataclass(frozen=True)
class BackupChange:
    """A write a safety decision asks for on one backup; other fields stay as they are."""

    backup_id: str
    status: BackupStatus | Unchanged = UNCHANGED
    protected: bool | Unchanged = UNCHANGED
    reasons: tuple[str, ...] | Unchanged = UNCHANGED
    error: str | Unchanged | None = UNCHANGED
    deletion_guarded: bool | Unchanged = UNCHANGED
    deletion_run_id: str | Unchanged | None = UNCHANGED

    def values(self) -> dict[str, object]:
        """The fields to write, by ``Backup`` field name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "backup_id" and getattr(self, f.name) is not UNCHANGED
        }


class Decision(Protocol):
    """What a decision taken with a target's backups locked asks the store to write."""

    @property
    def changes(self) -> tuple[BackupChange, ...]: ...


@dataclass(frozen=True)
class TargetBackups:
    """A target's backups as a safety decision sees them (read with them locked, newest first).

    ``backups`` holds the target's live backups (available or being deleted), its failed
    incremental backups (with a parent), the
    backups the decision asked for by id, and the own backup of ``run_id`` (the
    run the decision is for, if any). ``forgotten_by_run`` are the backups that run
    asked to delete, in any attempt and whatever their status now, oldest first.
    """

    target: str
    backups: tuple[Backup, ...]
    run_id: str | None = None
    forgotten_by_run: tuple[Backup, ...] = ()
    being_restored: frozenset[str] = frozenset()
    """Backups an unfinished restore job reads: never deleted while it does."""

    @cached_property
    def _positions(self) -> dict[str, int] | None:
        """Where each backup id is in ``backups`` (None when an id appears twice)."""
        positions = dict(zip(map(attrgetter("id"), self.backups), count()))
        return positions if len(positions) == len(self.backups) else None

    @cached_property
    def parent_ids(self) -> frozenset[str]:
        """The ids these backups name as their parent: a backup whose id is not here has no
        increment among them (one pass, kept across ``with_changes``: no change moves a
        parent)."""
        return frozenset(b.parent_id for b in self.backups if b.parent_id is not None)

    def find(self, backup_id: str) -> Backup | None:
        """The backup with this id, if the decision sees it."""
        positions = self._positions
        if positions is None:
            return next((b for b in self.backups if b.id == backup_id), None)
        position = positions.get(backup_id)
        return None if position is None else self.backups[position]

    def with_changes(self, changes: Sequence[BackupChange]) -> TargetBackups:
        """These backups as they are once ``changes`` are written (what the store would read)."""
        by_id = {change.backup_id: change for change in changes}
        if not by_id:
            return self
        positions = self._positions
        if positions is None:
            return self._with_changes_scanning(by_id)
        changed = list(self.backups)
        for backup_id, change in by_id.items():
            position = positions.get(backup_id)
            if position is not None:
                changed[position] = replace(changed[position], **change.values())  # type: ignore[arg-type]
        backups = tuple(changed)
        earlier = [
            backups[positions[b.id]] if b.id in positions else b for b in self.forgotten_by_run
        ]
        known = {b.id for b in earlier}
        newly = [
            backups[positions[backup_id]]
            for backup_id in by_id
            if self.run_id is not None
            and backup_id in positions
            and backup_id not in known
            and backups[positions[backup_id]].deletion_run_id == self.run_id
        ]
        forgotten = sorted([*earlier, *newly], key=lambda b: (b.created_at, b.id))
        result = replace(self, backups=backups, forgotten_by_run=tuple(forgotten))
        result.__dict__["_positions"] = positions  # the same ids in the same places
        if "parent_ids" in self.__dict__:
            result.__dict__["parent_ids"] = self.__dict__["parent_ids"]
        return result

    def _with_changes_scanning(self, by_id: Mapping[str, BackupChange]) -> TargetBackups:
        """``with_changes`` when an id appears twice: every copy is changed."""
        backups = tuple(
            replace(b, **by_id[b.id].values()) if b.id in by_id else b  # type: ignore[arg-type]
            for b in self.backups
        )
        current = {b.id: b for b in backups}
        earlier = [current.get(b.id, b) for b in self.forgotten_by_run]
        known = {b.id for b in earlier}
        newly = [
            b
            for b in backups
            if self.run_id is not None
            and b.id in by_id
            and b.id not in known
            and b.deletion_run_id == self.run_id
        ]
        forgotten = sorted([*earlier, *newly], key=lambda b: (b.created_at, b.id))
        return replace(self, backups=backups, forgotten_by_run=tuple(forgotten))


@dataclass(frozen=True)
class NetworkSpec:
    """One network a server is on, and the fixed IP it had there (None: any)."""

    network: str
    fixed_ip: str | None = None


@dataclass(frozen=True)
class VolumeSpec:
    """One volume of a server as a restore must recreate it."""

    size_gb: int
    device_name: str | None = None
    boot_index: int | None = None
    volume_type: str | None = None
    delete_on_termination: bool = False
    volume_id: str | None = None
    """The source volume (a snapshot names it)."""


@dataclass(frozen=True)
class ServerSpec:
    """What a restore needs of a server, recorded at backup time (the server may be gone later).

    ``volumes`` lists every attached volume, the root volume of a volume-backed
    server (boot index 0) first.
    """

    flavor: str | None = None
    networks: tuple[NetworkSpec, ...] = ()
    security_groups: tuple[str, ...] = ()
    key_name: str | None = None
    availability_zone: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[VolumeSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the store's column, the CLI's output)."""
        return {
            "flavor": self.flavor,
            "networks": [
                {"network": net.network, "fixed_ip": net.fixed_ip} for net in self.networks
            ],
            "security_groups": list(self.security_groups),
            "key_name": self.key_name,
            "availability_zone": self.availability_zone,
            "metadata": dict(self.metadata),
            "volumes": [
                {
                    "size_gb": vol.size_gb,
                    "device_name": vol.device_name,
                    "boot_index": vol.boot_index,
                    "volume_type": vol.volume_type,
                    "delete_on_termination": vol.delete_on_termination,
                    "volume_id": vol.volume_id,
                }
                for vol in self.volumes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerSpec:
        """The inverse of :meth:`to_dict`; unknown keys are ignored, absent ones default."""
        return cls(
            flavor=data.get("flavor"),
            networks=tuple(
                NetworkSpec(str(net["network"]), net.get("fixed_ip"))
                for net in data.get("networks") or ()
            ),
            security_groups=tuple(str(name) for name in data.get("security_groups") or ()),
            key_name=data.get("key_name"),
            availability_zone=data.get("availability_zone"),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
            volumes=tuple(
                VolumeSpec(
                    size_gb=int(vol["size_gb"]),
                    device_name=vol.get("device_name"),
                    boot_index=vol.get("boot_index"),
                    volume_type=vol.get("volume_type"),
                    delete_on_termination=bool(vol.get("delete_on_termination")),
                    volume_id=vol.get("volume_id"),
                )
                for vol in data.get("volumes") or ()
            ),
        )


#: A policy's ``cloud`` naming one of its stored credentials instead of a clouds.yaml entry.
CREDENTIAL_REF_PREFIX = "credential:"


class CredentialKind(StrEnum):
    """How stackback acts for a project: a Keystone trust, or the tenant's app credential."""

    TRUST = "trust"
    APPLICATION_CREDENTIAL = "application-credential"


BEING_REVOKED = "being revoked"
"""A revoked credential's detail until Keystone has been told (see ``Credential.interrupted``)."""


class CredentialState(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"
    """No policy uses it any more, but backups made through it still need it (to be
    rotated, deleted or restored): it still opens its cloud, and no new policy or run may
    use it. Revoked once the last of them is gone."""
    REVOKED = "revoked"
    """Given up: the trust deleted in Keystone (or the app credential's secret forgotten)."""
    REVOKE_FAILED = "revoke-failed"
    """Given up, but Keystone could not be told (``detail`` says why): the trust may remain."""

    @property
    def opens(self) -> bool:
        """Whether workers may still act through it (on what already needs it, if retired)."""
        return self in (CredentialState.ACTIVE, CredentialState.RETIRED)


@dataclass(frozen=True)
class Credential:
    """What workers act through for a policy created by a project's user.

    ``keystone_id`` is the trust's or application credential's id (not secret);
    ``sealed_secret`` the application credential's secret, encrypted (never in clear here).
    """

    id: str
    kind: CredentialKind
    project_id: str
    user_id: str
    keystone_id: str
    created_at: datetime
    sealed_secret: str | None = field(default=None, repr=False)
    state: CredentialState = CredentialState.ACTIVE
    revoked_at: datetime | None = None
    detail: str | None = None
    retired_at: datetime | None = None

    @property
    def cloud_ref(self) -> str:
        """The value a policy's ``cloud`` holds to act through this credential."""
        return credential_ref(self.id)

    @property
    def interrupted(self) -> bool:
        """Recorded revoked before Keystone was told, and left so (the process stopped in
        between): Keystone may still honour it, so the revocation is taken up again."""
        return self.state is CredentialState.REVOKED and self.detail == BEING_REVOKED


@dataclass(frozen=True)
class CredentialUsage:
    """What still acts through a credential: the policies naming it (by name), and the
    backups not yet deleted, runs not yet finished and restores in progress naming it."""

    policies: tuple[str, ...] = ()
    backups: int = 0
    runs: int = 0
    restores: int = 0

    @property
    def needed(self) -> bool:
        """Whether revoking it would leave something unmanageable."""
        return bool(self.policies or self.backups or self.runs or self.restores)

    def describe(self) -> str:
        """``"policy nightly, 3 backups, 1 run"``; ``"nothing"`` when nothing needs it."""
        parts = [f"policy {name}" for name in self.policies]
        for number, noun in (
            (self.backups, "backup"),
            (self.runs, "run in progress"),
            (self.restores, "restore in progress"),
        ):
            if number:
                parts.append(f"{number} {noun}" if number == 1 else f"{number} {_plural(noun)}")
        return ", ".join(parts) or "nothing"


def _plural(noun: str) -> str:
    head, _, tail = noun.partition(" ")
    return f"{head}s {tail}".strip()


def credential_ref(credential_id: str) -> str:
    return f"{CREDENTIAL_REF_PREFIX}{credential_id}"


def credential_id_of(cloud: str | None) -> str | None:
    """The credential a policy's ``cloud`` refers to; None for a clouds.yaml entry or none."""
    if cloud is None or not cloud.startswith(CREDENTIAL_REF_PREFIX):
        return None
    return cloud[len(CREDENTIAL_REF_PREFIX) :] or None
