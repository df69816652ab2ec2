"""A simulated OpenStack cloud (Nova, Glance, Cinder) behind the :class:`Cloud` port.

Its state lives in one SQLite file, so several processes share one simulated
cloud and it outlives any of them. Every state is computed from stored
instants and the given clock, so a :class:`~stackback.clock.VirtualClock`
drives it as well as the real clock does. The behaviour follows what real
Nova/Glance/Cinder do (see ``cloud-behaviour.md``):

* ``createImage`` of an image-backed server: the image is ``queued`` (waiting
  for a per-host upload slot, then the hypervisor snapshot), ``saving``, then
  ``active``, or gone if the snapshot fails (Nova deletes its image). Meanwhile
  another ``createImage`` of that server answers 409 (:class:`CloudBusy`) and
  creates nothing.
* ``createImage`` of a volume-backed server: a 0-byte image, ``active`` at once,
  whose ``block_device_mapping`` names one Cinder snapshot per attached volume
  (``creating`` → ``available``). Deleting the image leaves those snapshots.
* Deleting a Cinder snapshot that is not ``available`` (still ``creating``, or
  already ``deleting``) is refused with :class:`CloudBusy`, as the openstacksdk
  adapter reports real Cinder's 400 "Invalid snapshot: Snapshot status must be
  available or error and must not be part of a group." (Cinder 29,
  ``volume/api.py`` ``delete_snapshot``): transient, so retryable.
* Errors and 409s can be injected, randomly but reproducibly from the seed and
  a counter kept in the file, or scripted (:meth:`SimulatedCloud.fail_next`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from stackback.cloud.common import contains, missing_info
from stackback.cloud.simulator import groups, pausing, trove, volumes
from stackback.cloud.simulator.compute import (
    KILL_IMAGE,
    create_server_image,
    find_server_row,
    insert_server,
    server_of_row,
)
from stackback.cloud.simulator.config import SimConfig, SimFaults
from stackback.cloud.simulator.db import (
    SimCall,
    SimDatabase,
    consume_fault,
    count_api_call,
    next_counter,
    read_config,
    script_fault,
    write_config,
)
from stackback.cloud.simulator.model import (
    SimImage,
    SimSnapshot,
    artifact_of_image,
    artifact_of_snapshot,
    image_state,
    snapshot_state,
    to_sim_image,
    to_sim_snapshot,
)
from stackback.cloud.simulator.pausing import SimPause
from stackback.cloud.simulator.restore import (
    RESTORE_OPERATIONS,
    SimRestoreOperations,
    advance_boots,
)
from stackback.consistency import VolumeGroup
from stackback.databases import check_selector, selects
from stackback.errors import (
    CloudBusy,
    CloudError,
    CloudNotFound,
    CloudRejected,
    CloudUnavailable,
    CloudUnreachable,
    InvalidInput,
    QuotaExceeded,
)
from stackback.policy import ArtifactKind, Selector
from stackback.ports import (
    CREATED_BY_VALUE,
    MARKER_CREATED_BY,
    ArtifactInfo,
    ArtifactRef,
    Clock,
    DatabaseInfo,
    DatabaseRestore,
    DatabaseSpec,
    GroupSnapshot,
    ServerInfo,
    VolumeInfo,
)

__all__ = ["SimConfig", "SimFaults", "SimImage", "SimSnapshot", "SimulatedCloud", "open_simulator"]

#: The :class:`Cloud` operations, as counted by :meth:`SimulatedCloud.api_calls`.
OPERATIONS = frozenset(
    {
        "get_server",
        "find_servers",
        "start_server_image",
        "find_artifacts",
        "artifact_statuses",
        "set_artifact_metadata",
        "delete_artifact",
        "list_marked_artifacts",
        "snapshot_volume",
        "server_status",
        "pause_server",
        "unpause_server",
        "get_volume",
        "find_volumes",
        "start_volume_backup",
        "create_volume_from_backup",
        "volume_groups_of",
        "create_group_snapshot",
        "group_snapshot_members",
    }
    | RESTORE_OPERATIONS
    | trove.TROVE_OPERATIONS
)
INJECTABLE_ERRORS: Mapping[str, type[CloudError]] = {
    cls.__name__: cls
    for cls in (
        CloudBusy,
        CloudUnavailable,
        CloudUnreachable,
        CloudNotFound,
        CloudRejected,
        QuotaExceeded,
    )
}


class SimulatedCloud(SimRestoreOperations):
    """A :class:`~stackback.ports.Cloud` bound to ``project`` of the cloud stored at ``path``."""

    def __init__(self, path: str | Path, clock: Clock, *, project: str = "demo", seed: int = 0):
        self.path = Path(path)
        self.project = project
        self.seed = seed
        self._clock = clock
        self._db = SimDatabase(self.path)

    def close(self) -> None:
        """Release this thread's database connection; the cloud stays usable."""
        self._db.close()

    # -- the Cloud port -------------------------------------------------------------------

    def get_server(self, server: str) -> ServerInfo:
        """Find one server of the project by id or by (unique) name."""
        with self._call("get_server", server_id=server) as call:
            row = find_server_row(call.conn, self.project, server, by_name=True)
            return server_of_row(row, call.conn)

    def find_servers(self, selector: Selector) -> list[ServerInfo]:
        """Every server of the project whose metadata matches ``selector``."""
        with self._call("find_servers") as call:
            rows = self._rows(call.conn, "servers")
            servers = [server_of_row(row, call.conn) for row in rows]
        return [server for server in servers if selector.matches(dict(server.metadata))]

    def start_server_image(
        self, server_id: str, name: str, metadata: Mapping[str, str]
    ) -> ArtifactRef:
        """Nova ``createImage``: returns at once; the image then goes pending → available."""
        with self._call("start_server_image", server_id=server_id) as call:
            server = find_server_row(call.conn, self.project, server_id)
            image_id = create_server_image(call, server, name, metadata)
        return ArtifactRef(ArtifactKind.IMAGE, image_id)

    def find_artifacts(self, metadata: Mapping[str, str]) -> list[ArtifactInfo]:
        """Images and volume snapshots whose metadata contains every given key/value."""
        with self._call("find_artifacts") as call:
            return self._matching_artifacts(call, metadata)

    def artifact_statuses(self, refs: Sequence[ArtifactRef]) -> dict[ArtifactRef, ArtifactInfo]:
        """Status of many artifacts in one call; those not found are ``DELETED``."""
        with self._call("artifact_statuses") as call:
            ids = sorted({ref.id for ref in refs})
            found = {info.ref: info for info in self._visible_artifacts(call, ids)}
        return {ref: found.get(ref) or missing_info(ref) for ref in refs}

    def set_artifact_metadata(self, ref: ArtifactRef, metadata: Mapping[str, str]) -> None:
        """Merge ``metadata`` into an image's properties or a snapshot's metadata."""
        with self._call("set_artifact_metadata") as call:
            table, column = self._storage_of(ref)
            if ref.kind is ArtifactKind.DATABASE_BACKUP:
                raise CloudRejected("a Trove backup has no metadata (its markers are written once)")
            if ref.kind is ArtifactKind.GROUP_SNAPSHOT:
                raise CloudRejected(
                    "a group snapshot has no metadata (its markers are written once)"
                )
            row = self._artifact_row(call, ref)
            if row is None:
                raise CloudNotFound(f"no {ref.kind} {ref.id} in project {self.project}")
            merged = {**json.loads(row[column]), **{k: str(v) for k, v in metadata.items()}}
            call.conn.execute(
                f"UPDATE {table} SET {column} = ? WHERE id = ?", (json.dumps(merged), ref.id)
            )

    def delete_artifact(self, ref: ArtifactRef) -> None:
        """Delete an artifact; one already gone (or never visible) is not an error.

        A volume snapshot can be deleted only once ``available``: one still ``creating``,
        or already ``deleting`` (for ``snapshot_delete_seconds``), is :class:`CloudBusy`.
        """
        with self._call("delete_artifact") as call:
            row = self._artifact_row(call, ref)
            if row is None:
                return
            if ref.kind is ArtifactKind.VOLUME_BACKUP:
                volumes.delete_backup(call, ref.id)
                return
            if ref.kind is ArtifactKind.DATABASE_BACKUP:
                trove.delete_backup(call, ref.id)
                return
            if ref.kind is ArtifactKind.GROUP_SNAPSHOT:
                groups.delete_group_snapshot(call, ref.id)
                return
            if ref.kind is ArtifactKind.IMAGE:
                if row["server_id"] and image_state(row, call.now) in ("queued", "saving"):
                    call.conn.execute(  # Nova's snapshot task runs on until its upload fails
                        "UPDATE servers SET task_until = max(coalesce(task_until, 0), ?)"
                        " WHERE id = ?",
                        (row["ready_at"], row["server_id"]),
                    )
                call.conn.execute("DELETE FROM images WHERE id = ?", (ref.id,))
                return
            if groups.in_live_group_snapshot(call, row):
                raise CloudBusy(groups.MEMBER_REFUSAL)
            if snapshot_state(row, call.now) != "available":
                raise CloudBusy(
                    "Invalid snapshot: Snapshot status must be available or error"
                    " and must not be part of a group."
                )
            gone_at = call.now + call.config.snapshot_delete_seconds
            call.conn.execute("UPDATE snapshots SET gone_at = ? WHERE id = ?", (gone_at, ref.id))
            self._purge_gone(call.conn, call.now)

    def list_marked_artifacts(self) -> list[ArtifactInfo]:
        """Every artifact of the project carrying stackback's created-by marker."""
        with self._call("list_marked_artifacts") as call:
            return self._matching_artifacts(call, {MARKER_CREATED_BY: CREATED_BY_VALUE})

    def snapshot_volume(
        self, volume_id: str, name: str, metadata: Mapping[str, str]
    ) -> ArtifactRef:
        """A forced Cinder snapshot of a volume (in use or not), stamped with ``metadata``."""
        with self._call("snapshot_volume") as call:
            snapshot_id = pausing.snapshot_volume(call, volume_id, name, metadata)
        return ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, snapshot_id)

    def get_volume(self, volume: str) -> VolumeInfo:
        """One volume of the project by id or (unique) name."""
        with self._call("get_volume") as call:
            return volumes.find_volume(call, volume)

    def find_volumes(self, selector: Selector) -> list[VolumeInfo]:
        """Every volume of the project whose metadata matches ``selector``."""
        with self._call("find_volumes") as call:
            return volumes.matching_volumes(call, selector)

    def start_volume_backup(
        self, volume_id: str, name: str, metadata: Mapping[str, str], *, incremental: bool
    ) -> ArtifactRef:
        """A Cinder backup of the volume; an incremental one's parent is Cinder's choice."""
        with self._call("start_volume_backup") as call:
            backup_id = volumes.start_backup(
                call, volume_id, name, metadata, incremental=incremental
            )
        return ArtifactRef(ArtifactKind.VOLUME_BACKUP, backup_id)

    def create_volume_from_backup(
        self, backup_id: str, *, name: str, metadata: Mapping[str, str]
    ) -> str:
        """A new volume restored from a Cinder backup."""
        with self._call("create_volume_from_backup") as call:
            return volumes.restore_backup(call, backup_id, name, metadata)

    def volume_groups_of(self, volume_ids: Sequence[str]) -> list[VolumeGroup]:
        """The Cinder groups any of these volumes is in."""
        with self._call("volume_groups_of") as call:
            return groups.groups_of(call, volume_ids)

    def create_group_snapshot(self, group_id: str, name: str, description: str) -> GroupSnapshot:
        """A group snapshot of a group whose type promises consistency (else ``CloudRejected``)."""
        with self._call("create_group_snapshot") as call:
            return groups.create_group_snapshot(call, group_id, name, description)

    def group_snapshot_members(self, group_snapshot_id: str) -> Mapping[str, ArtifactRef]:
        """Volume id → member snapshot of a group snapshot."""
        with self._call("group_snapshot_members") as call:
            return groups.members_of(call, group_snapshot_id)

    def server_status(self, server_id: str) -> str:
        """The server's Nova status now."""
        with self._call("server_status", server_id=server_id) as call:
            return pausing.status(call, server_id)

    def boot_properties(self, server_id: str) -> Mapping[str, str]:
        """The properties of the image the server booted from."""
        return dict(self.get_server(server_id).boot_properties)

    def pause_server(self, server_id: str) -> None:
        """Nova ``pause``: an ACTIVE server with no task running, else 409 (``CloudBusy``)."""
        with self._call("pause_server", server_id=server_id) as call:
            pausing.pause(call, server_id)

    def unpause_server(self, server_id: str) -> None:
        """Nova ``unpause`` of a PAUSED server, else 409 (``CloudBusy``)."""
        with self._call("unpause_server", server_id=server_id) as call:
            pausing.unpause(call, server_id)

    # -- the DatabaseCloud port (Trove) ----------------------------------------------------

    def get_database(self, instance: str) -> DatabaseInfo:
        """One Trove instance by id or (unique) name."""
        with self._call("get_database", server_id=instance) as call:
            return trove.get_instance(call, instance)

    def find_databases(self, selector: Selector) -> list[DatabaseInfo]:
        """Every instance a database selector takes (datastore, version or name glob)."""
        check_selector(selector)
        with self._call("find_databases") as call:
            found = trove.instances(call)
        return [
            db
            for db in found
            if selects(
                selector,
                name=db.name,
                datastore=db.spec.datastore,
                version=db.spec.datastore_version,
            )
        ]

    def start_database_backup(
        self, instance_id: str, *, name: str, description: str, parent_id: str | None
    ) -> ArtifactRef:
        """``POST /backups``: NEW → BUILDING → COMPLETED; 409 while the instance is busy."""
        with self._call("start_database_backup", server_id=instance_id) as call:
            backup_id = trove.create_backup(call, instance_id, name, description, parent_id)
        return ArtifactRef(ArtifactKind.DATABASE_BACKUP, backup_id)

    def database_backups(self, instance_id: str | None = None) -> list[ArtifactInfo]:
        """The project's Trove backups (of one instance), whoever made them."""
        with self._call("database_backups") as call:
            return trove.backup_infos(call, instance_id=instance_id)

    def restore_database(self, request: DatabaseRestore) -> str:
        """A new instance from a backup (``restorePoint``): BUILD → ACTIVE."""
        with self._call("restore_database") as call:
            return trove.restore(call, request)

    def delete_database(self, instance_id: str) -> None:
        """Delete an instance; already gone is not an error."""
        with self._call("delete_database", server_id=instance_id) as call:
            trove.delete_instance(call, instance_id)

    # -- administration and test helpers (not part of the Cloud port) ---------------------

    def create_database(
        self,
        name: str,
        *,
        datastore: str = "mysql",
        version: str = "5.7",
        flavor: str = "m1.small",
        volume_size: int = 2,
    ) -> DatabaseInfo:
        """A Trove instance, ACTIVE at once."""
        with self._admin() as call:
            spec = DatabaseSpec(flavor, volume_size, datastore, version)
            return trove.get_instance(call, trove.insert_instance(call, name, spec))

    def databases(self) -> list[DatabaseInfo]:
        """The project's Trove instances, oldest first."""
        with self._admin() as call:
            return trove.instances(call)

    def add_foreign_database_backup(
        self, instance_id: str, name: str, *, parent_id: str | None = None, description: str = ""
    ) -> str:
        """A backup a user takes by hand (no markers); its id."""
        with self._admin() as call:
            return trove.create_backup(call, instance_id, name, description or None, parent_id)

    def kill_next_volume_backup(self, volume_id: str, count: int = 1) -> None:
        """The next ``count`` Cinder backups of the volume end in ``error``."""
        self._script(volumes.KILL_VOLUME_BACKUP, "killed", count, volume_id)

    def kill_next_database_backup(self, instance_id: str, count: int = 1) -> None:
        """The next ``count`` backups of the instance end FAILED."""
        self._script(trove.KILL_DB_BACKUP, "killed", count, instance_id)

    def fail_next_database_boot(self, count: int = 1) -> None:
        """The next ``count`` instances created (restored) end in ERROR."""
        self._script(trove.FAIL_DB_BOOT, "failed", count, None)

    def create_group_type(self, name: str, specs: Mapping[str, str]) -> str:
        """A Cinder group type with these group specs; its id."""
        with self._admin() as call:
            return groups.add_group_type(call, name, specs)

    def create_volume_group(self, name: str, group_type: str, volume_ids: Sequence[str]) -> str:
        """A Cinder group of the project holding these volumes; its id."""
        with self._admin() as call:
            return groups.add_group(call, name, group_type, volume_ids)

    def group_snapshots(self) -> list[ArtifactInfo]:
        """The project's group snapshots, oldest first (whatever made them)."""
        with self._admin() as call:
            return groups.group_snapshot_artifacts(call)

    def pauses(self, server_id: str) -> list[SimPause]:
        """Every pause of the server, oldest first (seconds since the epoch)."""
        with self._db.transaction() as conn:
            return pausing.pauses(conn, server_id)

    def add_volume(self, server_id: str, size_gb: int | None = None) -> str:
        """Create a volume and attach it to the server (the next free device); its id."""
        with self._admin() as call:
            find_server_row(call.conn, self.project, server_id)
            return pausing.add_volume(call, server_id, size_gb)

    def create_volume_standalone(
        self,
        name: str,
        *,
        size_gb: int = 1,
        metadata: Mapping[str, str] | None = None,
        server_id: str = "",
    ) -> VolumeInfo:
        """A volume of the project (attached to ``server_id`` if given), available at once."""
        with self._admin() as call:
            volume_id = volumes.add_volume(call, name, size_gb, metadata or {}, server_id)
            return volumes.find_volume(call, volume_id)

    def create_server(
        self,
        name: str,
        *,
        metadata: Mapping[str, str] | None = None,
        volume_backed: bool = False,
        volumes: int = 0,
        host: str | None = None,
        status: str = "ACTIVE",
        disk_gb: float | None = None,
        image: str | None = None,
        key_name: str | None = None,
    ) -> ServerInfo:
        """Create a server; a volume-backed one gets a root volume plus ``volumes`` more.

        ``image``: boot from that image of the project; its properties pass into every
        snapshot of the server, as Nova copies them.
        """
        with self._db.transaction() as conn:
            server_id = insert_server(
                conn,
                self.project,
                self._clock.now().timestamp(),
                read_config(conn),
                name,
                metadata=metadata or {},
                volume_backed=volume_backed,
                volumes=volumes,
                host=host,
                status=status,
                disk_gb=disk_gb,
                image=image,
                key_name=key_name,
            )
            return server_of_row(find_server_row(conn, self.project, server_id), conn)

    def set_server_metadata(self, server_id: str, metadata: Mapping[str, str]) -> None:
        """Merge ``metadata`` into the server's metadata."""
        self._update_server_metadata(server_id, lambda current: {**current, **metadata})

    def delete_server_metadata(self, server_id: str, key: str) -> None:
        """Remove one key from the server's metadata (absent key: no error)."""
        self._update_server_metadata(
            server_id, lambda current: {k: v for k, v in current.items() if k != key}
        )

    def set_server_status(self, server_id: str, status: str) -> None:
        """Force the server's Nova status (ACTIVE, SHUTOFF, ERROR...)."""
        with self._db.transaction() as conn:
            find_server_row(conn, self.project, server_id)
            conn.execute("UPDATE servers SET status = ? WHERE id = ?", (status, server_id))

    def server_image(self, server_id: str) -> str | None:
        """The image the server runs, as Nova reports it (None: it boots from a volume)."""
        with self._db.transaction() as conn:
            row = find_server_row(conn, self.project, server_id)
            return str(row["base_image_ref"]) if row["base_image_ref"] else None

    def servers(self) -> list[ServerInfo]:
        """The project's servers, oldest first."""
        with self._db.transaction() as conn:
            rows = self._rows(conn, "servers", all_projects=False)
            return [server_of_row(row, conn) for row in rows]

    def images(self, *, all_projects: bool = False) -> list[SimImage]:
        """Images with their raw Glance status, oldest first."""
        with self._db.transaction() as conn:
            rows = self._rows(conn, "images", all_projects=all_projects)
        now = self._clock.now().timestamp()
        images = [to_sim_image(row, now) for row in rows]
        return [image for image in images if image.status != "deleted"]

    def snapshots(self, *, all_projects: bool = False) -> list[SimSnapshot]:
        """Volume snapshots with their raw Cinder status, oldest first."""
        with self._db.transaction() as conn:
            rows = self._rows(conn, "snapshots", all_projects=all_projects)
        now = self._clock.now().timestamp()
        snapshots = [to_sim_snapshot(row, now) for row in rows]
        return [snapshot for snapshot in snapshots if snapshot.status != "deleted"]

    def config(self) -> SimConfig:
        """The settings every user of this cloud file runs with."""
        with self._db.transaction() as conn:
            return read_config(conn)

    def configure(self, config: SimConfig) -> None:
        """Replace the settings, for every process sharing the file."""
        with self._db.transaction() as conn:
            write_config(conn, config)

    def api_calls(self) -> dict[str, int]:
        """How many times each Cloud operation was called for this project."""
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT operation, count FROM api_calls WHERE project = ?", (self.project,)
            ).fetchall()
        return {row["operation"]: int(row["count"]) for row in rows}

    def fail_next(
        self,
        operation: str,
        error: type[CloudError] = CloudUnavailable,
        count: int = 1,
        *,
        server_id: str | None = None,
    ) -> None:
        """Make the next ``count`` calls of ``operation`` (on ``server_id``) raise ``error``."""
        if operation not in OPERATIONS:
            raise InvalidInput(f"unknown cloud operation {operation!r}", field="operation")
        if error.__name__ not in INJECTABLE_ERRORS:
            raise InvalidInput(f"cannot inject {error.__name__}", field="error")
        self._script(operation, error.__name__, count, server_id)

    def busy_storm(self, server_id: str, count: int) -> None:
        """The next ``count`` ``createImage`` calls on the server answer 409."""
        self.fail_next("start_server_image", CloudBusy, count, server_id=server_id)

    def kill_next_image(self, server_id: str, count: int = 1) -> None:
        """The next ``count`` snapshots of the (image-backed) server fail: their images go."""
        self._script(KILL_IMAGE, "killed", count, server_id)

    # -- internals ------------------------------------------------------------------------

    @contextmanager
    def _admin(self) -> Iterator[SimCall]:
        """A transaction for a test helper: no fault injection, not counted as an API call."""
        with self._db.transaction() as conn:
            now = self._clock.now().timestamp()
            yield SimCall(conn, self.project, self.seed, now, 0, read_config(conn))

    @contextmanager
    def _call(self, operation: str, *, server_id: str | None = None) -> Iterator[SimCall]:
        latency = 0.0
        try:
            with self._db.transaction() as conn:
                config = read_config(conn)
                latency = config.latency_seconds
                sequence = next_counter(conn, "operations")
                count_api_call(conn, self.project, operation)
                call = SimCall(
                    conn, self.project, self.seed, self._clock.now().timestamp(), sequence, config
                )
                self._raise_injected_error(call, operation, server_id)
                self._purge_gone(conn, call.now)
                advance_boots(conn, call.now)
                yield call
        finally:
            if latency > 0:
                self._clock.sleep(latency)

    def _raise_injected_error(self, call: SimCall, operation: str, server_id: str | None) -> None:
        error = consume_fault(call.conn, self.project, operation, server_id)
        if error is not None:
            raise INJECTABLE_ERRORS[error](f"injected failure of {operation}")
        if call.draw("error") < call.config.faults.error_rate:
            raise CloudUnavailable(f"503 Service Unavailable (simulated) in {operation}")

    def _script(self, operation: str, error: str, count: int, server_id: str | None) -> None:
        if count < 1:
            raise InvalidInput("count must be >= 1", field="count")
        with self._db.transaction() as conn:
            script_fault(conn, self.project, operation, error, count, server_id)

    @staticmethod
    def _purge_gone(conn: sqlite3.Connection, now: float) -> None:
        """Forget what the cloud no longer lists: deleted snapshots, failed snapshot images."""
        conn.execute("DELETE FROM snapshots WHERE gone_at IS NOT NULL AND gone_at <= ?", (now,))
        conn.execute(
            "DELETE FROM group_snapshots WHERE gone_at IS NOT NULL AND gone_at <= ?", (now,)
        )
        conn.execute("DELETE FROM images WHERE doomed = 1 AND ready_at <= ?", (now,))

    def _update_server_metadata(
        self, server_id: str, change: Callable[[dict[str, str]], Mapping[str, str]]
    ) -> None:
        with self._db.transaction() as conn:
            row = find_server_row(conn, self.project, server_id)
            metadata = {k: str(v) for k, v in change(json.loads(row["metadata"])).items()}
            conn.execute(
                "UPDATE servers SET metadata = ? WHERE id = ?", (json.dumps(metadata), server_id)
            )

    def _rows(
        self,
        conn: sqlite3.Connection,
        table: str,
        *,
        all_projects: bool = False,
        ids: Sequence[str] | None = None,
    ) -> list[sqlite3.Row]:
        conditions, arguments = [], []
        if not all_projects:
            conditions.append("project = ?")
            arguments.append(self.project)
        if ids is not None:
            conditions.append("id IN (SELECT value FROM json_each(?))")
            arguments.append(json.dumps(list(ids)))
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return conn.execute(
            f"SELECT * FROM {table} {where} ORDER BY created_at, id", arguments
        ).fetchall()

    def _visible_artifacts(
        self, call: SimCall, ids: Sequence[str] | None = None
    ) -> list[ArtifactInfo]:
        images = [to_sim_image(row, call.now) for row in self._rows(call.conn, "images", ids=ids)]
        snapshots = [
            to_sim_snapshot(row, call.now) for row in self._rows(call.conn, "snapshots", ids=ids)
        ]
        return (
            [artifact_of_image(image) for image in images]
            + [
                artifact_of_snapshot(snapshot)
                for snapshot in snapshots
                if snapshot.status != "deleted"
            ]
            + volumes.backup_artifacts(call, None if ids is None else list(ids))
            + trove.backup_infos(call, ids=ids)
            + groups.group_snapshot_artifacts(call, ids)
        )

    def _matching_artifacts(self, call: SimCall, metadata: Mapping[str, str]) -> list[ArtifactInfo]:
        return [info for info in self._visible_artifacts(call) if contains(info.metadata, metadata)]

    @staticmethod
    def _storage_of(ref: ArtifactRef) -> tuple[str, str]:
        if ref.kind is ArtifactKind.IMAGE:
            return "images", "properties"
        if ref.kind is ArtifactKind.VOLUME_SNAPSHOT:
            return "snapshots", "metadata"
        if ref.kind is ArtifactKind.VOLUME_BACKUP:
            return "volume_backups", "metadata"
        if ref.kind is ArtifactKind.DATABASE_BACKUP:
            return "db_backups", "description"
        if ref.kind is ArtifactKind.GROUP_SNAPSHOT:
            return "group_snapshots", "description"
        raise CloudRejected(f"the simulated cloud has no {ref.kind} artifacts")

    def _artifact_row(self, call: SimCall, ref: ArtifactRef) -> sqlite3.Row | None:
        table, _ = self._storage_of(ref)
        row: sqlite3.Row | None = call.conn.execute(
            f"SELECT * FROM {table} WHERE id = ? AND project = ?", (ref.id, self.project)
        ).fetchone()
        if (
            row is not None
            and table in ("snapshots", "group_snapshots")
            and snapshot_state(row, call.now) == "deleted"
        ):
            return None
        return row


def open_simulator(
    spec: str, clock: Clock, *, state_dir: Path, project: str = "demo", seed: int = 0
) -> SimulatedCloud:
    """Open the simulated cloud a spec names: ``sim`` (in ``state_dir``) or ``sim:PATH``."""
    kind, separator, location = spec.partition(":")
    if kind != "sim" or (separator and not location):
        raise InvalidInput(
            f"not a simulator spec: {spec!r} (expected 'sim' or 'sim:PATH')", field="cloud"
        )
    path = Path(location).expanduser() if location else Path(state_dir) / "sim.sqlite"
    if location and not path.parent.is_dir():  # a typo must not start an empty new cloud
        raise InvalidInput(
            f"simulated cloud {path}: directory {path.parent} does not exist", field="cloud"
        )
    try:
        return SimulatedCloud(path, clock, project=project, seed=seed)
    except (sqlite3.Error, OSError) as error:
        raise InvalidInput(
            f"simulated cloud {path} cannot be opened: {error}", field="cloud"
        ) from error


if TYPE_CHECKING:  # the type checker proves the adapter satisfies its port
    from stackback.ports import Cloud, GroupCloud, VolumeCloud

    def _conforms_to_port(cloud: SimulatedCloud) -> Cloud:
        return cloud

    def _conforms_to_volume_port(cloud: SimulatedCloud) -> VolumeCloud:
        return cloud

    def _conforms_to_group_port(cloud: SimulatedCloud) -> GroupCloud:
        return cloud
