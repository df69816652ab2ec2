"""Ports: the interfaces the engine and services need from the outside world.

Adapters implement them: ``stackback.cloud.openstack`` (openstacksdk) and
``stackback.cloud.simulator`` for :class:`Cloud`, ``stackback.store.SqlStore`` for
:class:`Store`, ``stackback.clock`` for :class:`Clock`. The engine and the
services depend on these Protocols only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from stackback.consistency import VolumeGroup
from stackback.policy import (
    Artifact,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    Policy,
    Run,
    Selector,
)
from stackback.records import (
    BackupFilter,
    Credential,
    CredentialState,
    CredentialUsage,
    Decision,
    DuePolicy,
    DueSchedule,
    NetworkSpec,
    RunFilter,
    ScheduleState,
    ServerSpec,
    StepNote,
    TargetBackups,
    TickPlan,
)
from stackback.restoreplan import (
    CreatedResource,
    RestoreJob,
    RestorePlan,
    RestoreState,
    RestoreStep,
)
from stackback.verification import TargetVerification, Verification

#: Metadata stackback stamps on every cloud artifact it creates. Only artifacts
#: carrying ``MARKER_CREATED_BY = CREATED_BY_VALUE`` are ever deleted by stackback.
MARKER_CREATED_BY = "stackback_created_by"
CREATED_BY_VALUE = "stackback"
MARKER_POLICY = "stackback_policy"
MARKER_RUN = "stackback_run"
MARKER_TARGET = "stackback_target"
MARKER_TARGET_NAME = "stackback_target_name"
MARKER_BACKUP = "stackback_backup"
MARKER_LABEL = "stackback_label"
MARKER_IMAGE_ID = "stackback_image_id"
"""On images only: empty at creation, the image's own id once it is available. Nova copies an
image's properties into snapshots of servers booted from it: a copy names another image here."""
MARKER_VOLUME = "stackback_volume"
"""On the volume snapshots of a whole-server backup stackback takes itself: the volume's id
(a resumed run finds which volumes it has already snapshotted)."""
MARKER_RESTORE = "stackback_restore"
"""On servers and volumes a restore creates: the restore job's id (found again, cleaned up)."""
MARKER_RESTORE_ITEM = "stackback_restore_item"
"""Which part of its restore a resource is: ``server``, or ``volume:<device name>``."""
NOVA_INSTANCE_UUID = "instance_uuid"
"""Image property Nova sets on a server's snapshot: the server it was taken of."""
NOVA_BASE_IMAGE_REF = "base_image_ref"
"""Image property Nova sets on a server's snapshot: the image the server was booted from."""

HOST_NAME_PREFIX = "host:"
HOST_ID_PREFIX = "hostid:"


def host_key(name: str | None, host_id: str | None) -> str | None:
    """A server's compute host as the per-host snapshot limit keys it (``ServerInfo.host``).

    The host's name where the cloud shows it (an admin's ``OS-EXT-SRV-ATTR:host``), as
    ``host:NAME``: the same for every project's servers on that host. Else Nova's tenant
    ``hostId`` (a hash of project and host), as ``hostid:HASH``. The prefixes keep a name
    and a hash from ever being taken for the same host. None when neither is known.
    """
    if name:
        return HOST_NAME_PREFIX + name
    if host_id:
        return HOST_ID_PREFIX + host_id
    return None


D = TypeVar("D", bound=Decision)


@runtime_checkable
class Clock(Protocol):
    """Where time comes from. The real clock, or a virtual one tests can advance."""

    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait (really, or by advancing virtual time)."""
        ...


@dataclass(frozen=True)
class ServerInfo:
    """A server as the backup engine needs to know it."""

    id: str
    name: str
    status: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    volume_backed: bool = False
    project_id: str | None = None
    spec: ServerSpec | None = None
    """What a restore needs (flavor, networks, volumes...); None where the adapter cannot tell."""
    boot_properties: Mapping[str, str] = field(default_factory=dict)
    """Properties of the image the server was booted from, as Nova copied them at boot
    (``hw_qemu_guest_agent``, ``os_require_quiesce``...); empty where the adapter cannot tell."""
    host: str | None = None
    """The compute host it runs on, as :func:`host_key` spells it: ``host:NAME`` from Nova's
    ``OS-EXT-SRV-ATTR:host`` where the credentials are an admin's, else ``hostid:HASH`` from
    its ``hostId`` (an opaque hash of project and host: the same host has another one in
    another project); None if unknown. Keys of the two kinds never compare equal."""

    @property
    def attached_volumes(self) -> tuple[str, ...]:
        """Ids of the volumes attached now, the root volume of a volume-backed server first."""
        if self.spec is None:
            return ()
        return tuple(v.volume_id for v in self.spec.volumes if v.volume_id)

    @property
    def data_volumes(self) -> tuple[str, ...]:
        """Attached volumes that are not the root disk (boot index 0)."""
        if self.spec is None:
            return ()
        return tuple(v.volume_id for v in self.spec.volumes if v.volume_id and v.boot_index != 0)


@dataclass(frozen=True)
class ArtifactRef:
    """Names one cloud object: its kind and its id in that cloud service."""

    kind: ArtifactKind
    id: str


@dataclass(frozen=True)
class ArtifactInfo:
    """The state of one cloud artifact, normalised over Glance/Cinder states.

    ``children`` lists artifacts the cloud created as part of this one (the
    Cinder snapshots a volume-backed server's 0-byte image names in its
    ``block_device_mapping``); they belong to the same backup.
    """

    ref: ArtifactRef
    status: ArtifactStatus
    name: str = ""
    size: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    children: tuple[ArtifactRef, ...] = ()
    detail: str = ""
    raw_status: str = ""
    """The cloud service's own status (Glance ``queued``/``saving``..., Cinder ``creating``...)."""
    dependents: tuple[ArtifactRef, ...] = ()
    """Artifacts that need this one and go with it when it is deleted (the Trove backups
    whose ``parent_id`` names it): whoever made them, this one is not deleted under them."""
    parent: ArtifactRef | None = None
    """The artifact this one is an increment of: a Trove backup's ``parent_id``, or the
    parent Cinder chose for an incremental backup. None for a full backup and for others."""


@runtime_checkable
class Cloud(Protocol):
    """What a backup run needs from a cloud, bound to one project's credentials.

    Errors are raised as :class:`stackback.errors.CloudError` subclasses:
    ``CloudBusy`` (409), ``CloudUnavailable`` (5xx, timeouts), ``CloudNotFound``,
    ``CloudRejected`` / ``QuotaExceeded``.
    """

    def get_server(self, server: str) -> ServerInfo:
        """Find one server by id or (unique) name."""
        ...

    def find_servers(self, selector: Selector) -> list[ServerInfo]:
        """Every server of the project whose metadata matches ``selector``."""
        ...

    def start_server_image(
        self, server_id: str, name: str, metadata: Mapping[str, str]
    ) -> ArtifactRef:
        """Ask Nova for an image of the server (``createImage``), stamped with ``metadata``.

        Returns at once; the image then goes pending → available (or failed).
        """
        ...

    def find_artifacts(self, metadata: Mapping[str, str]) -> list[ArtifactInfo]:
        """Artifacts whose metadata contains every given key/value (e.g. a run id)."""
        ...

    def artifact_statuses(self, refs: Sequence[ArtifactRef]) -> dict[ArtifactRef, ArtifactInfo]:
        """Status of many artifacts in one go (one listing per service, not one GET each).

        Artifacts that no longer exist are reported with status ``DELETED``.
        """
        ...

    def set_artifact_metadata(self, ref: ArtifactRef, metadata: Mapping[str, str]) -> None:
        """Merge ``metadata`` into the artifact's metadata/properties."""
        ...

    def delete_artifact(self, ref: ArtifactRef) -> None:
        """Delete an artifact. Idempotent: an artifact already gone is not an error."""
        ...

    def list_marked_artifacts(self) -> list[ArtifactInfo]:
        """Every artifact of the project carrying stackback's created-by marker."""
        ...

    def snapshot_volume(
        self, volume_id: str, name: str, metadata: Mapping[str, str]
    ) -> ArtifactRef:
        """A Cinder snapshot of a volume, forced (``force=True``: it may be in use), stamped
        with ``metadata``. Returns at once; the snapshot then goes creating → available."""
        ...

    def server_status(self, server_id: str) -> str:
        """The server's Nova status now (``ACTIVE``, ``PAUSED``, ``SHUTOFF``...)."""
        ...

    def boot_properties(self, server_id: str) -> Mapping[str, str]:
        """The properties of the image the server booted from (the guest agent flags Nova
        reads); ``{}`` when they cannot be known. Asked only for a quiesced backup."""
        ...

    def pause_server(self, server_id: str) -> None:
        """Nova ``pause``; a server that cannot be paused (its state, a policy) is refused
        (``CloudBusy`` for a 409, ``CloudRejected`` for a 403)."""
        ...

    def unpause_server(self, server_id: str) -> None:
        """Nova ``unpause`` of a paused server."""
        ...


@dataclass(frozen=True)
class GroupSnapshot:
    """A Cinder group snapshot just asked for, and the member snapshot of each volume."""

    ref: ArtifactRef
    """Kind ``group-snapshot``; it goes creating → available, its members with it."""
    members: Mapping[str, ArtifactRef]
    """Volume id → its member snapshot (kind ``volume-snapshot``), which Cinder deletes only
    with the group snapshot."""


@runtime_checkable
class GroupCloud(Protocol):
    """Cinder groups (block storage microversion 3.14+), for whole-server backups.

    A group snapshot's ``ArtifactInfo`` names its member snapshots as ``children`` and reads
    its markers from its description (Cinder keeps no metadata on group snapshots:
    ``stackback.databases.description``); deleting it deletes its members, and a member
    cannot be deleted on its own (``CloudBusy``, as Cinder's 400 "must not be part of a
    group").
    """

    def volume_groups_of(self, volume_ids: Sequence[str]) -> list[VolumeGroup]:
        """The groups any of these volumes is in, each with all its volumes and whether its
        type promises consistent group snapshots."""
        ...

    def create_group_snapshot(self, group_id: str, name: str, description: str) -> GroupSnapshot:
        """``POST /group_snapshots`` of a group whose type promises consistent snapshots (any
        other is refused: ``CloudRejected``). Returns at once with its member snapshots."""
        ...

    def group_snapshot_members(self, group_snapshot_id: str) -> Mapping[str, ArtifactRef]:
        """Volume id → member snapshot of a group snapshot (``{}`` once it is gone)."""
        ...


@dataclass(frozen=True)
class VolumeInfo:
    """A Cinder volume as a volume backup needs to know it."""

    id: str
    name: str
    status: str
    """Cinder's status (``available``, ``in-use``, ``creating``...)."""
    size_gb: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    volume_type: str | None = None
    availability_zone: str | None = None


@runtime_checkable
class VolumeCloud(Protocol):
    """What volume policies (``volume-snapshot``, ``volume-backup``) need, beyond :class:`Cloud`.

    Snapshots are taken with :meth:`Cloud.snapshot_volume`; both kinds of artifact are
    then read and deleted through :class:`Cloud`'s artifact methods.
    """

    def get_volume(self, volume: str) -> VolumeInfo:
        """Find one volume of the project by id or (unique) name (``CloudNotFound``)."""
        ...

    def find_volumes(self, selector: Selector) -> list[VolumeInfo]:
        """Every volume of the project whose metadata matches ``selector``."""
        ...

    def start_volume_backup(
        self, volume_id: str, name: str, metadata: Mapping[str, str], *, incremental: bool
    ) -> ArtifactRef:
        """A Cinder backup of the volume (``force``: it may be in use), full or incremental,
        stamped with ``metadata``. Cinder picks an incremental's parent itself (the latest
        available backup of the volume; read it back as ``ArtifactInfo.parent``). Returns at
        once; the backup then goes creating → available. Deleting a backup with increments
        is refused by Cinder (``CloudRejected``)."""
        ...

    def create_volume_from_backup(
        self, backup_id: str, *, name: str, metadata: Mapping[str, str]
    ) -> str:
        """A new volume restored from a Cinder backup; returns its id (creating → available)."""
        ...


@dataclass(frozen=True)
class BlockDevice:
    """One entry of a boot's block device mapping (v2); the destination is always a volume."""

    source_type: str
    """``volume`` (an existing volume), ``snapshot`` (Nova makes the volume) or ``image``."""
    uuid: str
    boot_index: int | None = None
    device_name: str | None = None
    volume_size: int | None = None
    volume_type: str | None = None
    delete_on_termination: bool = False


@dataclass(frozen=True)
class BootRequest:
    """A new server: from ``image_id``, or from ``block_devices`` (one with boot index 0)."""

    name: str
    flavor: str
    networks: tuple[NetworkSpec, ...] = ()
    security_groups: tuple[str, ...] = ()
    key_name: str | None = None
    availability_zone: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    image_id: str | None = None
    block_devices: tuple[BlockDevice, ...] = ()


RESOURCE_SERVER = "server"
RESOURCE_VOLUME = "volume"
RESOURCE_DATABASE = "database"


@dataclass(frozen=True)
class DatabaseSpec:
    """What a Trove instance is made of: what a restore needs to make another like it."""

    flavor: str
    volume_size: int
    datastore: str
    datastore_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": {
                "flavor": self.flavor,
                "volume_size": self.volume_size,
                "datastore": self.datastore,
                "datastore_version": self.datastore_version,
            }
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DatabaseSpec | None:
        """The spec :meth:`to_dict` wrote (None for anything else, e.g. a server's)."""
        found = (data or {}).get("database")
        if not isinstance(found, Mapping):
            return None
        return cls(
            flavor=str(found["flavor"]),
            volume_size=int(found["volume_size"]),
            datastore=str(found["datastore"]),
            datastore_version=str(found["datastore_version"]),
        )


@dataclass(frozen=True)
class DatabaseInfo:
    """A Trove instance as the backup engine needs to know it."""

    id: str
    name: str
    status: str
    spec: DatabaseSpec
    project_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Markers of the restore that made it (Trove keeps no metadata: read from its name)."""

    def as_server(self) -> ServerInfo:
        """The instance as a run's target (its id and name; no server spec)."""
        return ServerInfo(self.id, self.name, self.status, project_id=self.project_id)


@dataclass(frozen=True)
class DatabaseRestore:
    """A new Trove instance from a backup (``restorePoint``)."""

    name: str
    backup_id: str
    spec: DatabaseSpec
    restore_id: str
    """The restore job's id, stamped so that a resumed job finds the instance it made."""


@runtime_checkable
class DatabaseCloud(Protocol):
    """What database backups and restores need from a cloud (Trove), beyond :class:`Cloud`.

    Trove backups are artifacts of kind ``database-backup``: ``artifact_statuses``,
    ``find_artifacts``, ``list_marked_artifacts`` and ``delete_artifact`` handle them,
    their metadata read from the markers in their description
    (``stackback.databases.read_markers``), their ``dependents`` the backups whose
    ``parent_id`` names them. Errors are mapped as for :class:`Cloud`.
    """

    def get_database(self, instance: str) -> DatabaseInfo:
        """One Trove instance by id or (unique) name."""
        ...

    def find_databases(self, selector: Selector) -> list[DatabaseInfo]:
        """Every instance of the project a database selector takes
        (``stackback.databases.selects``)."""
        ...

    def start_database_backup(
        self, instance_id: str, *, name: str, description: str, parent_id: str | None
    ) -> ArtifactRef:
        """``POST /backups`` (``parent_id``: the Trove backup it is an increment of; None: a
        full one). Returns at once; the backup then goes NEW → BUILDING → COMPLETED."""
        ...

    def database_backups(self, instance_id: str | None = None) -> list[ArtifactInfo]:
        """The project's Trove backups (of one instance if given), whoever made them."""
        ...

    def restore_database(self, request: DatabaseRestore) -> str:
        """``POST /instances`` with ``restorePoint``; the new instance's id (BUILD → ACTIVE)."""
        ...

    def delete_database(self, instance_id: str) -> None:
        """Delete an instance; already gone is not an error."""
        ...


@dataclass(frozen=True)
class CloudResource:
    """A server or volume a restore made, with its raw status (``deleted`` once gone)."""

    kind: str
    id: str
    status: str
    name: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""


@runtime_checkable
class RestoreCloud(Protocol):
    """What a restore needs from a cloud, beyond :class:`Cloud`.

    Everything a restore creates carries ``MARKER_RESTORE`` in its metadata:
    :meth:`find_restored` finds it again (a resumed job creates nothing twice) and
    cleanup deletes only that.
    """

    def validate_boot(self, request: BootRequest) -> None:
        """Refuse what Nova would refuse before anything is created: an unknown flavor,
        network or key pair, an image that is not active (``CloudNotFound`` /
        ``CloudRejected``)."""
        ...

    def boot_server(self, request: BootRequest) -> str:
        """``POST /servers``; returns the new server's id (it then goes BUILD → ACTIVE)."""
        ...

    def create_volume(
        self,
        snapshot_id: str,
        *,
        name: str,
        size_gb: int,
        volume_type: str | None,
        availability_zone: str | None,
        metadata: Mapping[str, str],
    ) -> str:
        """A new Cinder volume from a snapshot; returns its id (creating → available)."""
        ...

    def attach_volume(self, server_id: str, volume_id: str, device: str | None) -> None:
        """Attach a volume to a server (Nova ``os-volume_attachments``)."""
        ...

    def rebuild_server(self, server_id: str, image_id: str) -> None:
        """Nova ``rebuild`` with another image (the root disk only)."""
        ...

    def detach_volume(self, server_id: str, volume_id: str) -> None:
        """Detach a data volume from a server (Nova ``DELETE os-volume_attachments``); the
        volume is kept. Not attached to that server: ``CloudNotFound``."""
        ...

    def resource_status(self, kind: str, resource_id: str) -> CloudResource:
        """A server's or volume's status now; ``deleted`` when it is gone."""
        ...

    def find_restored(self, restore_id: str) -> list[CloudResource]:
        """Servers and volumes carrying ``MARKER_RESTORE = restore_id``."""
        ...

    def delete_server(self, server_id: str) -> None:
        """Delete a server; already gone is not an error."""
        ...

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume; already gone is not an error (in use: ``CloudBusy``)."""
        ...

    def console_output(self, server_id: str) -> str:
        """The server's console log."""
        ...


@runtime_checkable
class PortCheckCloud(Protocol):
    """A cloud that can tell whether a TCP port of a server answers (a verification's check)."""

    def check_port(self, server_id: str, port: int, timeout: float) -> str | None:
        """None when ``port`` on one of the server's addresses accepts a connection
        within ``timeout`` seconds; else why not (no address, refused, no answer)."""
        ...


@runtime_checkable
class VerificationStore(Protocol):
    """Verdicts on backups and the policies' verify schedules (``SqlStore``)."""

    def record_verification(self, backup_id: str, verification: Verification) -> None: ...
    def claim_due_verifications(
        self, now: datetime, *, limit: int = 100
    ) -> list[tuple[Policy, datetime]]: ...
    def next_verify_time(self) -> datetime | None: ...
    def verify_next_at(self, policy_id: str) -> datetime | None: ...
    def last_policy_verification(self, policy_id: str) -> tuple[str, Verification] | None: ...
    def newest_verifications(self) -> list[TargetVerification]:
        """The newest verification of each target of each policy."""
        ...


@runtime_checkable
class CredentialStore(Protocol):
    """The credentials policies act through (``SqlStore``); secrets arrive sealed."""

    def add_credential(self, credential: Credential) -> Credential: ...
    def get_credential(self, credential_id: str) -> Credential:
        """The credential with this id; ``NotFound`` otherwise."""
        ...

    def end_credential(
        self, credential_id: str, *, state: CredentialState, now: datetime, detail: str
    ) -> Credential:
        """Record a credential given up (revoked, or its revocation failed); its sealed
        secret is erased."""
        ...

    def list_credentials(self) -> list[tuple[Credential, CredentialUsage]]:
        """Every credential with what still acts through it."""
        ...

    def credential_usage(self, credential_id: str) -> CredentialUsage:
        """What acts through the credential: policies naming it, backups not yet deleted,
        unfinished runs, restores in progress; ``NotFound`` for an unknown id."""
        ...

    def retire_credential(
        self, credential_id: str, *, now: datetime, detail: str
    ) -> tuple[Credential, CredentialUsage]:
        """An active credential no policy names becomes ``retired`` (what still needs it
        acts through it; nothing new may)."""
        ...

    def begin_revocation(
        self, credential_id: str, *, now: datetime, force: bool = False
    ) -> tuple[Credential, CredentialUsage, bool]:
        """Atomically: record it revoked when nothing needs it (``force``: even if backups,
        runs or restores do; never while a policy names it), before Keystone is told. The
        flag says whether it was; a new policy or run naming it waits for, then sees, this."""
        ...


#: Finds the Cloud a policy or run names (``None``: the default cloud of this process).
CloudResolver = Callable[[str | None], Cloud]


@runtime_checkable
class RestoreJobStore(Protocol):
    """Where restore jobs are recorded; ``stackback.store.SqlStore`` implements it.

    Worker writes name the job's ``attempt`` and raise ``LeaseLost`` once another
    worker has taken the job over. While a job is active its backup is held:
    retention skips it and a deletion request is refused.
    """

    def restore_source(self, backup_id: str) -> ServerSpec | None: ...
    def database_source(self, backup_id: str) -> DatabaseSpec | None:
        """What was recorded of a database backup's instance (None: nothing)."""
        ...

    def create_restore(
        self,
        *,
        backup_id: str,
        plan: RestorePlan,
        cloud: str | None,
        now: datetime,
        deadline_at: datetime,
    ) -> RestoreJob:
        """Record a job of an available backup, of the backup's project; anything else is
        refused (``InvalidInput``)."""
        ...

    def claim_restores(
        self,
        now: datetime,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        job_id: str | None = None,
    ) -> list[RestoreJob]: ...
    def update_restore(
        self,
        job_id: str,
        attempt: int,
        *,
        step: RestoreStep | None = None,
        created: CreatedResource | None = None,
        verification: Verification | None = None,
        **values: Any,
    ) -> RestoreJob: ...
    def next_restore_wakeup(self) -> datetime | None: ...
    def get_restore(self, ref: str, *, project: str | None = None) -> RestoreJob:
        """A job by id or unique id prefix (only among ``project``'s jobs, if given)."""
        ...

    def list_restores(
        self,
        *,
        state: RestoreState | None = None,
        limit: int = 200,
        project: str | None = None,
        marker: str | None = None,
    ) -> list[RestoreJob]:
        """Newest first (only ``project``'s, if given; the page after ``marker``)."""
        ...

    def request_restore_cancel(self, ref: str, *, project: str | None = None) -> RestoreJob:
        """Ask a job (only among ``project``'s, if given) to stop and undo what it made."""
        ...


@runtime_checkable
class Store(RestoreJobStore, VerificationStore, Protocol):
    """Durable state: policies, schedules, runs with their step journal, backups, artifacts.

    ``stackback.store.SqlStore`` implements it for SQLite and PostgreSQL. Writes by a
    worker name the run's ``attempt`` (its lease's fencing token) and raise
    ``LeaseLost`` when another worker has taken the run over.
    """

    # policies and schedules
    def create_policy(
        self, policy: Policy, next_fires: Sequence[datetime | None], *, now: datetime
    ) -> Policy: ...
    def update_policy(
        self,
        policy: Policy,
        next_fires: Sequence[datetime | None] | None,
        *,
        now: datetime,
        read_at: datetime | None = None,
    ) -> Policy:
        """Write a changed policy; ``PolicyChanged`` if it changed since ``read_at``."""
        ...

    def get_policy(self, ref: str, *, project: str | None = None) -> Policy:
        """The policy with id or name ``ref`` (only ``project``'s, if given); a name that
        several projects' policies have, with no project given: ``InvalidInput``."""
        ...

    def list_policies(
        self, *, project: str | None = None, limit: int | None = None, marker: str | None = None
    ) -> list[Policy]:
        """Policies by name (only ``project``'s, a page of ``limit`` after ``marker``)."""
        ...

    def delete_policy(self, ref: str, *, now: datetime) -> Policy: ...
    def schedules(self, policy_id: str) -> list[ScheduleState]: ...
    def next_fire_time(self) -> datetime | None: ...
    def due_selector_policies(self, now: datetime) -> list[DuePolicy]:
        """Enabled policies with a selector and a due schedule (read only, no lock)."""
        ...

    def process_due_schedules(
        self, now: datetime, planner: Callable[[DueSchedule], TickPlan], *, limit: int = 50
    ) -> tuple[int, int]:
        """Lock due schedules, let ``planner`` decide, insert runs once, advance schedules."""
        ...

    # runs
    def create_manual_run(
        self,
        *,
        target: str,
        now: datetime,
        label: str | None,
        retention: Mapping[str, object] | None,
        cloud: str | None = None,
        policy: Policy | None = None,
        project: str | None = None,
    ) -> Run:
        """An on-demand run, due now, of ``policy``'s project, else of ``project`` (the
        project the cloud says its target belongs to)."""
        ...

    def claim_runs(
        self,
        now: datetime,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        run_id: str | None = None,
        host_limit: int | None = None,
    ) -> list[Run]:
        """Lease runs that can make progress now (attempt + 1 on each); only ``run_id``'s
        if given. With ``host_limit``, a pending run whose host (``Run.host``) already has
        that many snapshots running is left."""
        ...

    def cancel_run(self, run_id: str, *, now: datetime, reason: str) -> Run:
        """End a pending or active run cancelled, fencing off the worker holding it."""
        ...

    def next_wakeup(self, host_limit: int | None = None) -> datetime | None: ...
    def renew_lease(self, run_id: str, attempt: int, *, now: datetime, until: datetime) -> None:
        """Extend a lease still held at ``now`` (else ``LeaseLost``), fenced by ``attempt``."""
        ...

    def update_run(
        self,
        run_id: str,
        attempt: int,
        *,
        step: StepNote | None = None,
        host_limit: int | None = None,
        **values: Any,
    ) -> Run:
        """Write run fields, fenced by ``attempt``. With ``host_limit``, a run that would
        become one of more than that many snapshots of its host raises ``HostBusy``."""
        ...

    def release_run(
        self,
        run_id: str,
        attempt: int,
        *,
        not_before: datetime | None,
        step: StepNote | None = None,
    ) -> Run: ...
    def get_run(self, run_id: str, *, project: str | None = None) -> Run:
        """A run by id or unique id prefix (only among ``project``'s runs, if given)."""
        ...

    def list_runs(self, criteria: RunFilter | None = None) -> list[Run]: ...
    def count_runs_by_state(self) -> dict[str, int]: ...
    def delete_run(self, run_id: str) -> Run: ...

    # backups and artifacts; a worker's writes pass ``fence=(run id, attempt)``
    def ensure_backup(
        self,
        backup: Backup,
        *,
        fence: tuple[str, int] | None = None,
        restore_source: Mapping[str, Any] | None = None,
    ) -> Backup:
        """Create a run's backup record (with what a restore needs of its server), or return
        the one it already has."""
        ...

    def add_artifact(
        self,
        backup_id: str,
        kind: ArtifactKind,
        cloud_id: str,
        *,
        status: ArtifactStatus,
        now: datetime,
        size: int | None = None,
        fence: tuple[str, int] | None = None,
    ) -> Artifact: ...
    def update_artifact(
        self, artifact_id: str, *, fence: tuple[str, int] | None = None, **values: Any
    ) -> Artifact: ...
    def update_backup(
        self, backup_id: str, *, fence: tuple[str, int] | None = None, **values: Any
    ) -> None: ...
    def get_backup(self, ref: str, *, project: str | None = None) -> Backup:
        """A backup by id or unique id prefix (only among ``project``'s, if given)."""
        ...

    def backup_for_run(self, run_id: str) -> Backup | None: ...
    def list_backups(self, criteria: BackupFilter | None = None) -> list[Backup]: ...
    def set_protected(self, ref: str, protected: bool) -> Backup: ...
    def decide_for_target(
        self,
        target: str,
        decide: Callable[[TargetBackups], D],
        *,
        include: Sequence[str] = (),
        fence: tuple[str, int] | None = None,
    ) -> D:
        """Run a safety decision with the target's backups locked; write its changes.

        ``decide`` (``stackback.safety.plan_rotation`` or ``judge_deletion``) sees the
        target's live backups, those in ``include`` and the fenced run's own backup,
        and what that run asked to delete before; ``fence=(run id, attempt)`` fences
        the whole decision like any write of a worker.
        """
        ...

    def record_source(self, target: str, *, now: datetime, exists: bool) -> int:
        """Record on the target's backups that its server exists (seen ``now``) or is gone.

        Gone keeps the first time it was found gone; seen clears it. Returns how many
        backups changed.
        """
        ...

    def finish_deletion(self, backup_id: str, *, now: datetime) -> bool:
        """Record a backup ``deleted`` if it is still ``deleting``; False if it is not."""
        ...

    def backups_to_collect(self, *, limit: int = 100) -> list[Backup]: ...
    def dispose(self) -> None: ...
