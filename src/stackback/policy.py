"""The domain model: policies, runs, backups and their cloud artifacts.

Pure data: no database, cloud or clock access. A *policy* says what to back up
(explicit targets or a metadata selector), how (its kind), when (cron
schedules in one IANA time zone, spread over a start window) and how long to
keep it (a retention policy). A *run* is one occurrence for one target; a
*backup* is one recovery point made of one or more cloud *artifacts*.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from stackback.consistency import DEFAULT_MAX_PAUSE_SECONDS, ConsistencyLevel, Fallback
from stackback.errors import InvalidInput
from stackback.retention import MAX_KEEP_COUNT, Duration
from stackback.verification import Verification, VerifySettings

if TYPE_CHECKING:
    from stackback.retention import RetentionPolicy


class BackupKind(StrEnum):
    """What a policy backs up and with which cloud primitive."""

    SERVER_IMAGE = "server-image"
    SERVER_CONSISTENT = "server-consistent"
    VOLUME_SNAPSHOT = "volume-snapshot"
    VOLUME_BACKUP = "volume-backup"
    DATABASE_BACKUP = "database-backup"


IMPLEMENTED_KINDS = frozenset(
    {
        BackupKind.SERVER_IMAGE,
        BackupKind.SERVER_CONSISTENT,
        BackupKind.VOLUME_SNAPSHOT,
        BackupKind.VOLUME_BACKUP,
        BackupKind.DATABASE_BACKUP,
    }
)
VOLUME_KINDS = frozenset({BackupKind.VOLUME_SNAPSHOT, BackupKind.VOLUME_BACKUP})
"""Kinds whose targets are Cinder volumes (by id or name, or a volume metadata selector)."""
CHAINED_KINDS = frozenset({BackupKind.VOLUME_BACKUP, BackupKind.DATABASE_BACKUP})
"""Kinds whose backups may be incremental (``--full-every``, ``--full-cron``)."""
MAX_FULL_EVERY = 1000


class RunState(StrEnum):
    """States of a run; the engine moves a run through them and records each step."""

    PENDING = "pending"
    SNAPSHOTTING = "snapshotting"
    WAITING = "waiting"
    ROTATING = "rotating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MISSED = "missed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.MISSED, RunState.CANCELLED}
)
ACTIVE_RUN_STATES = frozenset({RunState.SNAPSHOTTING, RunState.WAITING, RunState.ROTATING})


class BackupStatus(StrEnum):
    """Life of a recovery point."""

    CREATING = "creating"
    AVAILABLE = "available"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


class ArtifactKind(StrEnum):
    """A cloud object that is part of a backup."""

    IMAGE = "image"
    VOLUME_SNAPSHOT = "volume-snapshot"
    VOLUME_BACKUP = "volume-backup"
    DATABASE_BACKUP = "database-backup"
    GROUP_SNAPSHOT = "group-snapshot"
    """A Cinder group snapshot; its member volume snapshots are recorded as artifacts too."""


class ArtifactStatus(StrEnum):
    """An artifact as stackback sees it, normalised over the cloud services' states."""

    PENDING = "pending"
    AVAILABLE = "available"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


NAME_MAX = 255
"""Longest server name, server id, cron expression or cloud name stackback records (Nova's)."""
LABEL_MAX = 64
"""Longest label (``--label``, ``backup now --type``)."""


def check_length(value: str, limit: int, option: str) -> str:
    """``value`` if it has at most ``limit`` characters, else ``InvalidInput`` naming ``option``."""
    if len(value) > limit:
        raise InvalidInput(
            f"{option} is {len(value)} characters long; at most {limit} are allowed",
            field=option.lstrip("-"),
        )
    return value


def check_given(value: str | None, option: str) -> str | None:
    """``value``, unless it was given empty: a blank filter would silently match everything."""
    if value is not None and not value.strip():
        raise InvalidInput(f"{option} needs a value, not an empty one", field=option.lstrip("-"))
    return value


def server_label(server_id: str, name: str | None) -> str:
    """A server as messages name it: by name, its id in brackets (the id alone if no name)."""
    if not name or name == server_id:
        return server_id
    return f"{name} [{server_id}]"


_SELECTOR_RE = re.compile(r"^(?P<key>[A-Za-z0-9_.:\-]{1,255})=(?P<value>.{0,255})$")


@dataclass(frozen=True)
class Selector:
    """Select every server carrying metadata ``key=value``, resolved at each tick."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Selector:
        match = _SELECTOR_RE.match(text.strip())
        if not match:
            raise InvalidInput(
                f"invalid selector {text!r}: expected KEY=VALUE (metadata key and value)",
                field="selector",
            )
        selector = cls(match["key"], match["value"])
        check_length(selector.run_target, NAME_MAX, "--selector with its 'selector:' prefix")
        return selector

    def matches(self, metadata: dict[str, str]) -> bool:
        return metadata.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key}={self.value}"

    @property
    def run_target(self) -> str:
        """The target of a run recorded for an occurrence whose servers were never listed."""
        return f"selector:{self}"


class OrphanMode(StrEnum):
    """What becomes of the backups of a target that no longer exists."""

    KEEP = "keep"
    EXPIRE_AFTER = "expire-after"
    KEEP_LAST = "keep-last"


_ORPHANS_HELP = "--orphans: expected keep, 'expire-after DURATION' (e.g. 90d) or 'keep-last N'"


@dataclass(frozen=True)
class OrphanRule:
    """A policy's rule for the backups of a deleted target (``keep`` never deletes any).

    ``expire-after DURATION`` forgets them once the duration has passed since the
    source was last seen; ``keep-last N`` keeps the newest N.
    """

    mode: OrphanMode = OrphanMode.KEEP
    after: Duration | None = None
    keep_last: int | None = None

    def __post_init__(self) -> None:
        if (self.mode is OrphanMode.EXPIRE_AFTER) != (self.after is not None) or (
            self.mode is OrphanMode.KEEP_LAST
        ) != (self.keep_last is not None):
            raise InvalidInput(_ORPHANS_HELP, field="orphans")
        if self.after is not None and self.after.is_zero():
            raise InvalidInput(
                "--orphans expire-after needs a duration above zero", field="orphans"
            )
        if self.keep_last is not None and not 1 <= self.keep_last <= MAX_KEEP_COUNT:
            raise InvalidInput(
                f"--orphans keep-last needs a count from 1 to {MAX_KEEP_COUNT}, "
                f"got {self.keep_last}",
                field="orphans",
            )

    @classmethod
    def parse(cls, text: str) -> OrphanRule:
        """``keep``, ``expire-after 90d`` (or ``expire-after=90d``), ``keep-last 3``."""
        words = str(text).replace("=", " ").split()
        try:
            mode = OrphanMode(words[0]) if words else None
        except ValueError:
            mode = None
        if mode is None or len(words) != (1 if mode is OrphanMode.KEEP else 2):
            raise InvalidInput(f"{_ORPHANS_HELP}, got {text!r}", field="orphans")
        if mode is OrphanMode.EXPIRE_AFTER:
            return cls(mode, after=Duration.parse(words[1], field_name="--orphans expire-after"))
        if mode is OrphanMode.KEEP_LAST:
            if not re.fullmatch(r"[0-9]{1,9}", words[1]):
                raise InvalidInput(
                    f"--orphans keep-last needs a whole number, got {words[1]!r}",
                    field="orphans",
                )
            return cls(mode, keep_last=int(words[1]))
        return cls()

    def __str__(self) -> str:
        if self.after is not None:
            return f"{self.mode.value} {self.after}"
        if self.keep_last is not None:
            return f"{self.mode.value} {self.keep_last}"
        return self.mode.value


@dataclass(frozen=True)
class Policy:
    """A backup policy. ``targets`` and ``selector`` are alternatives; one is required."""

    id: str
    name: str
    kind: BackupKind
    schedules: tuple[str, ...]
    timezone: str
    retention: RetentionPolicy
    targets: tuple[str, ...] = ()
    selector: Selector | None = None
    window_minutes: int = 0
    enabled: bool = True
    cloud: str | None = None
    project: str | None = None
    label: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    consistency: ConsistencyLevel = ConsistencyLevel.CRASH
    """The level a whole-server backup (``server-consistent``) tries for."""
    fallback: Fallback = Fallback.CRASH
    """When that level cannot be had: take a crash-consistent backup, or fail the run."""
    max_pause_seconds: int = DEFAULT_MAX_PAUSE_SECONDS
    """The longest a ``paused`` backup keeps its server paused."""
    verify: VerifySettings | None = None
    """Its verify schedule (None: its backups are verified only on demand)."""
    orphans: OrphanRule = field(default_factory=OrphanRule)
    """What becomes of the backups of a target that no longer exists."""
    full_every: int | None = None
    """A chained kind: a full backup every this many backups, incremental ones between."""
    full_cron: str | None = None
    """A chained kind: a full backup when this cron (in ``timezone``) has fired since the
    last full one. Neither this nor ``full_every``: every backup is a full one."""

    def __post_init__(self) -> None:
        if (self.full_every is not None or self.full_cron is not None) and (
            self.kind not in CHAINED_KINDS
        ):
            raise InvalidInput(
                f"--full-every and --full-cron apply to incremental kinds "
                f"({', '.join(sorted(k.value for k in CHAINED_KINDS))}), not {self.kind.value}",
                field="full_every",
            )
        if self.verify is not None and self.kind in VOLUME_KINDS:
            raise InvalidInput(
                f"--verify-cron boots a backup as a server: not for {self.kind.value} policies",
                field="verify-cron",
            )
        if self.full_every is not None and not 1 <= self.full_every <= MAX_FULL_EVERY:
            raise InvalidInput(
                f"--full-every needs a count from 1 to {MAX_FULL_EVERY}, got {self.full_every}",
                field="full_every",
            )
        if self.kind is not BackupKind.SERVER_CONSISTENT and (
            self.consistency is not ConsistencyLevel.CRASH or self.fallback is not Fallback.CRASH
        ):
            raise InvalidInput(
                f"--consistency and --fallback apply to --kind server-consistent only, "
                f"not {self.kind.value}",
                field="consistency",
            )
        if not self.targets and self.selector is None:
            how = (
                "--volume (repeatable) or --volume-selector KEY=VALUE"
                if self.kind in VOLUME_KINDS
                else "--server (repeatable) or --selector KEY=VALUE"
            )
            raise InvalidInput(
                f"policy {self.name!r} has no way to select targets: give {how}",
                field="targets",
            )
        if self.targets and self.selector is not None:
            raise InvalidInput(
                "give either explicit targets (--server) or a --selector, not both",
                field="targets",
            )
        if self.window_minutes < 0:
            raise InvalidInput("window must be >= 0 minutes", field="window")
        if not self.schedules:
            raise InvalidInput(f"policy {self.name!r} needs at least one --cron", field="cron")


@dataclass(frozen=True)
class Step:
    """One recorded step of a run: what happened, when, and how it ended."""

    name: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str = "ok"
    detail: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class Run:
    """One occurrence of a policy for one target."""

    id: str
    policy_id: str | None
    target: str
    scheduled_for: datetime
    due_at: datetime
    state: RunState
    attempt: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    not_before: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_id: str | None = None
    backup_id: str | None = None
    target_name: str | None = None
    server_id: str | None = None
    """The server the target resolved to when the run started."""
    host: str | None = None
    """The compute host of that server (``ServerInfo.host``), learnt when the run first tried
    to start: the per-host limit on concurrent snapshots counts by it."""
    trigger: str = "schedule"
    policy_name: str | None = None
    label: str | None = None
    cloud: str | None = None
    retention: Mapping[str, object] | None = None
    steps: tuple[Step, ...] = ()
    created_at: datetime | None = None
    project: str | None = None
    """The project of its policy (None: a run of no project, e.g. ``backup now``)."""


@dataclass(frozen=True)
class Artifact:
    """A cloud object belonging to a backup (an image, a volume snapshot...)."""

    id: str
    backup_id: str
    kind: ArtifactKind
    cloud_id: str
    status: ArtifactStatus
    size: int | None = None
    error: str | None = None
    delete_attempts: int = 0
    created_at: datetime | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class Backup:
    """One recovery point of one target."""

    id: str
    target: str
    kind: BackupKind
    status: BackupStatus
    created_at: datetime
    policy_id: str | None = None
    policy_name: str | None = None
    run_id: str | None = None
    label: str | None = None
    target_name: str | None = None
    protected: bool = False
    cloud: str | None = None
    project: str | None = None
    completed_at: datetime | None = None
    deleted_at: datetime | None = None
    reasons: tuple[str, ...] = ()
    error: str | None = None
    artifacts: tuple[Artifact, ...] = field(default=())
    deletion_run_id: str | None = None
    """The run whose retention asked for this backup's deletion (None: asked by hand)."""
    deletion_guarded: bool = False
    """The deletion must leave the target another good backup (checked again just before)."""
    consistency: str | None = None
    """The level a whole-server backup obtained (crash, paused, quiesced); None for others."""
    consistency_detail: str | None = None
    """How it was obtained: the pause's duration, the snapshots' spread, why not higher; for
    a Cinder volume backup, ``full`` or ``incremental`` (as asked of Cinder)."""
    verification: Verification | None = None
    """Its last verification (None: never verified)."""
    source_last_seen_at: datetime | None = field(default=None, compare=False)
    """When stackback last saw the backup's server exist (None: not checked yet).

    An hourly observation of the server, not part of the backup: backups compare equal
    whatever it says."""
    source_gone_at: datetime | None = None
    """When stackback first found the server gone (None: it exists, or was not checked)."""
    parent_id: str | None = None
    """In a backup chain (Cinder or Trove incremental backups): the stackback backup this one
    is an increment of (None: a full backup, or a kind without chains)."""

    @property
    def orphaned(self) -> bool:
        """Its server no longer exists (as last checked)."""
        return self.source_gone_at is not None

    @classmethod
    def of_run(
        cls,
        run: Run,
        *,
        backup_id: str,
        target: str,
        target_name: str | None,
        kind: BackupKind,
        created_at: datetime,
        project: str | None,
        parent_id: str | None = None,
    ) -> Backup:
        """The new (``creating``) backup that ``run`` takes of ``target``."""
        return cls(
            id=backup_id,
            target=target,
            target_name=target_name,
            kind=kind,
            status=BackupStatus.CREATING,
            created_at=created_at,
            policy_id=run.policy_id,
            policy_name=run.policy_name,
            run_id=run.id,
            label=run.label,
            cloud=run.cloud,
            project=project,
            parent_id=parent_id,
        )

    @property
    def is_manual(self) -> bool:
        """Taken on demand (``backup now``), never by a policy, not even one deleted since."""
        return self.policy_id is None and self.policy_name is None
