"""Restores as the operator asks for them: plan (``--dry-run``), start, list, show, cancel.

Every refusal happens before anything is created: an unknown, failed, deleting or
deleted backup, an artifact gone from the cloud, a flavor, network or key pair the
cloud does not have, an in-place restore of a volume-backed server. Each is
``InvalidInput`` (exit 2 at the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from stackback.cloud.bdm import BDM_PROPERTY
from stackback.errors import CloudError, CloudNotFound, InvalidInput
from stackback.policy import (
    VOLUME_KINDS,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    check_given,
)
from stackback.ports import (
    MARKER_VOLUME,
    ArtifactRef,
    BlockDevice,
    BootRequest,
    Clock,
    CloudResolver,
    DatabaseCloud,
    RestoreCloud,
    RestoreJobStore,
    Store,
)
from stackback.records import ServerSpec
from stackback.restoreplan import (
    DatabasePlan,
    RestoreJob,
    RestoreMode,
    RestoreOverrides,
    RestorePlan,
    RestoreState,
    build_plan,
    build_volume_plan,
    default_name,
)

DEFAULT_TIMEOUT = timedelta(hours=1)


class RestoreStoreLike(Store, RestoreJobStore, Protocol):
    """The store a restore service needs: backups and restore jobs (``SqlStore``)."""


@dataclass(frozen=True)
class PlannedRestore:
    """A plan and the backup it reads."""

    backup: Backup
    plan: RestorePlan


class RestoreService:
    """Plans and records restore jobs; the engine's ``RestoreRunner`` carries them out."""

    def __init__(self, store: RestoreStoreLike, clouds: CloudResolver, clock: Clock) -> None:
        self.store = store
        self.clouds = clouds
        self.clock = clock

    def plan(
        self,
        backup_ref: str,
        *,
        mode: RestoreMode = RestoreMode.AS_NEW,
        overrides: RestoreOverrides | None = None,
        with_volumes: bool = False,
        reshape: Callable[[RestorePlan], RestorePlan] | None = None,
    ) -> PlannedRestore:
        """What a restore of this backup would create; refuses before creating anything.

        ``reshape`` turns the plan into another before the cloud is asked about it
        (a verification's: :func:`~stackback.restoreplan.for_verification`)."""
        overrides = overrides or RestoreOverrides()
        for value, option in (
            (overrides.name, "--as-new"),
            (overrides.flavor, "--flavor"),
            (overrides.network, "--network"),
            (overrides.key_name, "--key-name"),
            (overrides.availability_zone, "--availability-zone"),
        ):
            check_given(value, option)
        backup = self.store.get_backup(backup_ref)
        if backup.status is not BackupStatus.AVAILABLE:
            why = {
                BackupStatus.DELETING: "is being deleted",
                BackupStatus.DELETED: "is deleted",
                BackupStatus.FAILED: "failed",
            }.get(backup.status, f"is {backup.status.value}")
            raise InvalidInput(f"backup {backup.id} {why}: it cannot be restored", field="backup")
        if backup.kind is BackupKind.DATABASE_BACKUP:
            return PlannedRestore(backup, self._database_plan(backup, mode, overrides))
        cloud = self._cloud(backup)
        if backup.kind in VOLUME_KINDS:
            return PlannedRestore(backup, self._volume_plan(backup, cloud, mode, overrides))
        image_id, properties = self._image(backup, cloud)
        volume_backed = bool(properties.get(BDM_PROPERTY))
        live = self._live_spec(cloud, backup.target)
        name = overrides.name or default_name(backup.target_name, backup.target, backup.id)
        plan = build_plan(
            mode=mode,
            name=name,
            overrides=overrides,
            recorded=self.store.restore_source(backup.id),
            live=live,
            image_id=image_id,
            volume_backed=volume_backed,
            mapping=_mapping(properties.get(BDM_PROPERTY)),
            server_id=backup.target if mode is RestoreMode.IN_PLACE else None,
            data_snapshots=() if volume_backed else self._data_snapshots(backup, cloud),
            with_volumes=with_volumes,
        )
        if mode is RestoreMode.IN_PLACE and live is None:
            raise InvalidInput(
                f"server {backup.target} no longer exists: restore it with --as-new",
                field="in-place",
            )
        if reshape is not None:
            plan = reshape(plan)
        if plan.mode is not RestoreMode.IN_PLACE:
            self._validate(cloud, plan)
        return PlannedRestore(backup, plan)

    def start(
        self,
        backup_ref: str,
        *,
        mode: RestoreMode = RestoreMode.AS_NEW,
        overrides: RestoreOverrides | None = None,
        timeout: timedelta = DEFAULT_TIMEOUT,
        with_volumes: bool = False,
        reshape: Callable[[RestorePlan], RestorePlan] | None = None,
    ) -> RestoreJob:
        """Plan, then record the job (the backup is held from now until it ends)."""
        if timeout <= timedelta(0):
            raise InvalidInput("--timeout must be positive", field="timeout")
        planned = self.plan(
            backup_ref, mode=mode, overrides=overrides, with_volumes=with_volumes, reshape=reshape
        )
        now = self.clock.now()
        return self.store.create_restore(
            backup_id=planned.backup.id,
            plan=planned.plan,
            cloud=planned.backup.cloud,
            now=now,
            deadline_at=now + timeout,
        )

    def get(self, ref: str, *, project: str | None = None) -> RestoreJob:
        """A job by id or unique id prefix (among ``project``'s, if given: another project's
        is not found, as one that does not exist)."""
        return self.store.get_restore(ref, project=project)

    def list(
        self,
        *,
        state: RestoreState | None = None,
        limit: int = 200,
        project: str | None = None,
        marker: str | None = None,
    ) -> list[RestoreJob]:
        """Newest first (only ``project``'s, if given; the page after ``marker``)."""
        return self.store.list_restores(state=state, limit=limit, project=project, marker=marker)

    def cancel(self, ref: str, *, project: str | None = None) -> RestoreJob:
        """Ask the job (among ``project``'s, if given) to stop and remove what it created."""
        return self.store.request_restore_cancel(ref, project=project)

    # -- internals ------------------------------------------------------------------------

    def _database_plan(
        self, backup: Backup, mode: RestoreMode, overrides: RestoreOverrides
    ) -> RestorePlan:
        """A new Trove instance from the backup: the recorded flavor, volume size, datastore
        and version, each overridable; refused before anything is created."""
        if mode is not RestoreMode.AS_NEW:
            raise InvalidInput(
                f"backup {backup.id} is a database backup: restore it --as-new", field="mode"
            )
        cloud = self.clouds(backup.cloud)
        if not isinstance(cloud, DatabaseCloud):
            raise InvalidInput(f"cloud {backup.cloud or '(default)'} has no database service")
        refs = [
            ArtifactRef(a.kind, a.cloud_id)
            for a in backup.artifacts
            if a.kind is ArtifactKind.DATABASE_BACKUP
        ]
        if not refs:
            raise InvalidInput(f"backup {backup.id} has no Trove backup", field="backup")
        try:
            info = cloud.artifact_statuses(refs)[refs[0]]
        except CloudError as error:
            if error.retryable:  # the cloud's passing trouble, not the backup's: ask again
                raise
            raise InvalidInput(f"backup {backup.id}: {error.message}", field="backup") from None
        if info.status is not ArtifactStatus.AVAILABLE:
            raise InvalidInput(
                f"backup {backup.id}: Trove backup {refs[0].id} is {info.raw_status or 'gone'}",
                field="backup",
            )
        recorded = self.store.database_source(backup.id)
        flavor = overrides.flavor or (recorded.flavor if recorded else None)
        size = overrides.volume_size or (recorded.volume_size if recorded else None)
        datastore = overrides.datastore or (recorded.datastore if recorded else None)
        version = overrides.datastore_version or (recorded.datastore_version if recorded else None)
        if not (flavor and size and datastore and version):
            raise InvalidInput(
                f"backup {backup.id} recorded no instance: give --flavor, --volume-size, "
                "--datastore and --datastore-version",
                field="flavor",
            )
        name = overrides.name or default_name(backup.target_name, backup.target, backup.id)
        try:
            cloud.get_database(name)
        except CloudNotFound:
            pass
        except CloudError as error:
            raise InvalidInput(f"cannot check the name {name!r}: {error.message}") from None
        else:  # a resumed job finds its instance by name: it must be the only one
            raise InvalidInput(f"a database instance named {name!r} exists already", field="name")
        notes = tuple(
            f"{what} {value} given on the command line"
            for what, value in (
                ("flavor", overrides.flavor),
                ("volume size", overrides.volume_size),
                ("datastore", overrides.datastore),
                ("datastore version", overrides.datastore_version),
            )
            if value
        )
        return RestorePlan(
            mode=RestoreMode.AS_NEW,
            name=name,
            flavor=flavor,
            notes=notes,
            database=DatabasePlan(refs[0].id, size, datastore, version),
        )

    def _cloud(self, backup: Backup) -> RestoreCloud:
        cloud = self.clouds(backup.cloud)
        if not isinstance(cloud, RestoreCloud):
            raise InvalidInput(f"cloud {backup.cloud or '(default)'} cannot restore servers")
        return cloud

    @staticmethod
    def _volume_plan(
        backup: Backup, cloud: Any, mode: RestoreMode, overrides: RestoreOverrides
    ) -> RestorePlan:
        """A volume policy's backup: its snapshot or Cinder backup, into a new volume."""
        artifacts = [
            a
            for a in backup.artifacts
            if a.kind in (ArtifactKind.VOLUME_SNAPSHOT, ArtifactKind.VOLUME_BACKUP)
        ]
        if len(artifacts) != 1:
            raise InvalidInput(f"backup {backup.id} has no volume snapshot or backup to restore")
        ref = ArtifactRef(artifacts[0].kind, artifacts[0].cloud_id)
        info = cloud.artifact_statuses([ref])[ref]
        if info.status is not ArtifactStatus.AVAILABLE:
            raise InvalidInput(
                f"{ref.kind.value} {ref.id} of backup {backup.id} is {info.status.value} in "
                "the cloud: it cannot be restored",
                field="backup",
            )
        return build_volume_plan(
            mode=mode,
            name=overrides.name or default_name(backup.target_name, backup.target, backup.id),
            artifact_id=ref.id,
            from_backup=ref.kind is ArtifactKind.VOLUME_BACKUP,
            size_gb=max(1, int(info.size or artifacts[0].size or 1)),
            overrides=overrides,
        )

    def _image(self, backup: Backup, cloud: Any) -> tuple[str, Mapping[str, str]]:
        """The backup's image and its properties as the cloud has them now."""
        images = [a for a in backup.artifacts if a.kind is ArtifactKind.IMAGE]
        if not images:
            raise InvalidInput(f"backup {backup.id} has no image to restore from", field="backup")
        ref = ArtifactRef(ArtifactKind.IMAGE, images[0].cloud_id)
        try:
            info = cloud.artifact_statuses([ref])[ref]
        except CloudError as error:
            if error.retryable:  # the cloud's passing trouble, not the backup's: ask again
                raise
            raise InvalidInput(f"backup {backup.id}: {error.message}", field="backup") from None
        if info.status is not ArtifactStatus.AVAILABLE:
            raise InvalidInput(
                f"backup {backup.id}: image {ref.id} is {info.status.value} in the cloud",
                field="backup",
            )
        return ref.id, info.metadata

    @staticmethod
    def _data_snapshots(backup: Backup, cloud: Any) -> tuple[tuple[str, str], ...]:
        """(snapshot, volume it was taken of) for each data volume snapshot stackback took
        itself for a whole-server backup of an image-backed server (``MARKER_VOLUME``)."""
        refs = [
            ArtifactRef(a.kind, a.cloud_id)
            for a in backup.artifacts
            if a.kind is ArtifactKind.VOLUME_SNAPSHOT
        ]
        if not refs:
            return ()
        try:
            infos = cloud.artifact_statuses(refs)
        except CloudError as error:
            if error.retryable:  # the cloud's passing trouble, not the backup's: ask again
                raise
            raise InvalidInput(f"backup {backup.id}: {error.message}", field="backup") from None
        found: list[tuple[str, str]] = []
        for ref in refs:
            info = infos[ref]
            volume_id = info.metadata.get(MARKER_VOLUME)
            if not volume_id:
                continue
            if info.status is not ArtifactStatus.AVAILABLE:
                raise InvalidInput(
                    f"backup {backup.id}: snapshot {ref.id} is {info.status.value} in the cloud",
                    field="backup",
                )
            found.append((ref.id, volume_id))
        return tuple(found)

    @staticmethod
    def _live_spec(cloud: Any, server_id: str) -> ServerSpec | None:
        """The source server's spec now (None: gone, or the adapter cannot tell)."""
        try:
            server = cloud.get_server(server_id)
        except CloudNotFound:
            return None
        spec: ServerSpec | None = server.spec
        return spec if spec is not None else ServerSpec()

    @staticmethod
    def _validate(cloud: RestoreCloud, plan: RestorePlan) -> None:
        """Ask the cloud whether it would accept the boot, with the snapshots as sources."""
        request = BootRequest(
            name=plan.name,
            flavor=plan.flavor,
            networks=plan.networks,
            security_groups=plan.security_groups,
            key_name=plan.key_name,
            availability_zone=plan.availability_zone,
            image_id=plan.image_id,
            block_devices=tuple(
                BlockDevice("snapshot", v.snapshot_id, v.boot_index, v.device_name, v.size_gb)
                for v in plan.volumes
            ),
        )
        try:
            cloud.validate_boot(request)
        except CloudError as error:
            if error.retryable:
                raise
            raise InvalidInput(f"the cloud would refuse this restore: {error.message}") from None


def _mapping(raw: object) -> list[Mapping[str, Any]]:
    if not raw:
        return []
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return (
        [entry for entry in parsed if isinstance(entry, Mapping)]
        if isinstance(parsed, list)
        else []
    )
