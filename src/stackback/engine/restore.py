"""Restore jobs: leased like runs and moved one idempotent pass at a time.

Each pass (:meth:`RestoreRunner.advance`) looks at what the job's marker finds in
the cloud, creates only what is missing (volumes from the backup's snapshots,
then the server), and gives the lease back until the cloud has moved on. A worker
killed mid-pass is taken over when its lease expires: the next pass finds what
the first made by its marker and creates nothing twice. On failure, cancel or
the hard deadline, the job goes ``cleaning`` and removes what carries its marker
(servers first, then volumes), and nothing else.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from stackback.engine.failpoints import failpoint
from stackback.engine.volumes import volume_cloud
from stackback.errors import CloudError, CloudNotFound, LeaseLost, StackbackError
from stackback.ports import (
    CREATED_BY_VALUE,
    MARKER_BACKUP,
    MARKER_CREATED_BY,
    MARKER_RESTORE,
    MARKER_RESTORE_ITEM,
    RESOURCE_DATABASE,
    RESOURCE_SERVER,
    RESOURCE_VOLUME,
    BlockDevice,
    BootRequest,
    Clock,
    CloudResolver,
    CloudResource,
    DatabaseCloud,
    DatabaseRestore,
    DatabaseSpec,
    PortCheckCloud,
    RestoreCloud,
    RestoreJobStore,
)
from stackback.restoreplan import (
    CreatedResource,
    DatabasePlan,
    PlannedVolume,
    RestoreJob,
    RestoreMode,
    RestoreState,
    RestoreStep,
)
from stackback.verification import Verification, VerifyChecks, VerifyResult

log = logging.getLogger(__name__)

SERVER_ITEM = "server"
DATABASE_ITEM = "database"
CHECK_STEP = "check"
PORT_TIMEOUT = 5.0
"""Seconds a port check waits for a connection."""
REBUILD_ITEM = "rebuild"
BOOTED = "ACTIVE"


class _Abort(Exception):
    """The job cannot succeed: clean up what it made, then end ``failed`` or ``cancelled``."""


class RestoreRunner:
    """Claims restore jobs and advances each by one pass."""

    def __init__(
        self,
        store: RestoreJobStore,
        clouds: CloudResolver,
        clock: Clock,
        *,
        owner: str,
        lease: timedelta = timedelta(minutes=5),
        poll: timedelta = timedelta(seconds=5),
    ) -> None:
        self.store = store
        self.clouds = clouds
        self.clock = clock
        self.owner = owner
        self.lease = lease
        self.poll = poll

    def work_once(self, limit: int = 5, *, stop: threading.Event | None = None) -> int:
        """Claim up to ``limit`` jobs and advance each once; how many were advanced.

        With ``stop`` set, the jobs not yet advanced are given back at once."""
        jobs = self.store.claim_restores(
            self.clock.now(), self.owner, lease_seconds=self.lease.total_seconds(), limit=limit
        )
        for position, job in enumerate(jobs):
            if stop is not None and stop.is_set():
                self._give_back(jobs[position:])
                return position
            try:
                self.advance(job)
            except LeaseLost:
                log.info("restore %s was taken over by another worker", job.id)
        return len(jobs)

    def _give_back(self, jobs: list[RestoreJob]) -> None:
        for job in jobs:
            try:
                self.store.update_restore(
                    job.id, job.attempt, lease_owner=None, lease_expires_at=None
                )
            except LeaseLost:
                pass
            except Exception:  # the database is going away too: the leases will expire
                log.warning("restore %s: could not give its lease back", job.id, exc_info=True)

    def drive(self, job_id: str) -> RestoreJob:
        """Advance one job until it ends (``--wait``), sleeping on the clock in between."""
        while True:
            job = self.store.get_restore(job_id)
            if job.state.is_terminal:
                return job
            claimed = self.store.claim_restores(
                self.clock.now(),
                self.owner,
                lease_seconds=self.lease.total_seconds(),
                job_id=job.id,
            )
            if claimed:
                try:
                    job = self.advance(claimed[0])
                except LeaseLost:
                    job = self.store.get_restore(job_id)
                if job.state.is_terminal:
                    return job
            wake = job.not_before or job.lease_expires_at or self.clock.now()
            self.clock.sleep(max(0.0, (wake - self.clock.now()).total_seconds()) or 0.01)

    def advance(self, job: RestoreJob) -> RestoreJob:
        """One pass over a claimed job; returns it as recorded afterwards."""
        now = self.clock.now()
        cloud = self._cloud(job)
        if job.state is RestoreState.PENDING:
            job = self._write(job, "start", now, "ok", state=RestoreState.RUNNING)
        if job.state is RestoreState.RUNNING:
            try:
                if job.cancel_requested:
                    raise _Abort("cancelled by the operator")
                if now >= job.deadline_at:
                    raise _Abort(self._timed_out(job))
                if cloud is None:
                    raise _Abort(f"cloud {job.cloud or '(default)'} cannot restore servers")
                job = self._restore(job, cloud, now)
                if job.state is not RestoreState.CLEANING:
                    return job
            except _Abort as abort:
                job = self._write(
                    job, "abort", now, "failed", str(abort),
                    state=RestoreState.CLEANING, error=str(abort),
                    verification=self._failed_verification(job, now, str(abort)),
                )  # fmt: skip
            except CloudError as error:
                if error.retryable:
                    return self._later(job, "retry", now, error.message)
                job = self._write(
                    job, "abort", now, "failed", error.message,
                    state=RestoreState.CLEANING, error=error.message, error_id=error.error_id,
                    verification=self._failed_verification(job, now, error.message),
                )  # fmt: skip
        if job.state is RestoreState.CLEANING:
            return self._clean(job, cloud, now)
        return job

    # -- restoring ------------------------------------------------------------------------

    def _restore(self, job: RestoreJob, cloud: RestoreCloud, now: datetime) -> RestoreJob:
        if job.plan.database is not None:
            return self._restore_database(job, cloud, job.plan.database, now)
        if job.plan.mode is RestoreMode.IN_PLACE:
            return self._rebuild(job, cloud, now)
        found = {r.metadata.get(MARKER_RESTORE_ITEM, ""): r for r in cloud.find_restored(job.id)}
        volumes: dict[str, CloudResource] = {}
        for planned in job.plan.volumes:
            volume = found.get(planned.item)
            if volume is None or volume.status == "deleted":
                volume = self._create_volume(job, cloud, planned)
                job = self._write(job, "volume", now, "created", f"{planned.item}: {volume.id}")
            job = self._remember(job, volume, planned.item)
            volumes[planned.item] = volume
        if job.plan.volume_only:
            return self._await_volumes(job, volumes, now)
        server = found.get(SERVER_ITEM)
        if server is None or server.status == "deleted":
            waiting = [i for i, v in volumes.items() if v.status not in ("available", "in-use")]
            if any(volumes[i].status == "error" for i in waiting):
                raise _Abort(f"a volume could not be created: {', '.join(waiting)}")
            if waiting:
                return self._later(job, "volumes", now, "waiting for " + ", ".join(waiting))
            server_id = cloud.boot_server(self._boot_request(job, volumes))
            server = cloud.resource_status(RESOURCE_SERVER, server_id)
            job = self._write(job, "boot", now, "created", f"server {server_id}")
        job = self._remember(job, server, SERVER_ITEM, server_id=server.id)
        return self._await_server(job, cloud, server, now)

    def _await_volumes(
        self, job: RestoreJob, volumes: dict[str, CloudResource], now: datetime
    ) -> RestoreJob:
        """A volume policy's backup: done once its new volume is available."""
        waiting = [i for i, v in volumes.items() if v.status != "available"]
        broken = [i for i in waiting if volumes[i].status in ("error", "deleted")]
        if broken:
            raise _Abort(f"a volume could not be created: {', '.join(broken)}")
        if waiting:
            return self._later(job, "volumes", now, "waiting for " + ", ".join(waiting))
        took = (now - (job.started_at or job.created_at)).total_seconds()
        made = ", ".join(v.id for v in volumes.values())
        return self._write(
            job, "available", now, "ok", f"volume {made} available after {took:.0f} s",
            state=RestoreState.SUCCEEDED, finished_at=now,
            lease_owner=None, lease_expires_at=None,
        )  # fmt: skip

    def _restore_database(
        self, job: RestoreJob, cloud: RestoreCloud, plan: DatabasePlan, now: datetime
    ) -> RestoreJob:
        """A new Trove instance from the backup; found again by its name (the plan refused a
        name already taken), so a resumed job never makes a second one."""
        if not isinstance(cloud, DatabaseCloud):
            raise _Abort(f"cloud {job.cloud or '(default)'} has no database service")
        made = next((c for c in job.created if c.item == DATABASE_ITEM), None)
        instance_id = made.id if made else None
        if instance_id is None:
            try:
                instance_id = cloud.get_database(job.plan.name).id
            except CloudNotFound:
                spec = DatabaseSpec(
                    job.plan.flavor, plan.volume_size, plan.datastore, plan.datastore_version
                )
                instance_id = cloud.restore_database(
                    DatabaseRestore(job.plan.name, plan.backup_ref, spec, job.id)
                )
                failpoint("after-restore-database")
                job = self._write(job, "create", now, "created", f"database {instance_id}")
            created = CloudResource(RESOURCE_DATABASE, instance_id, "BUILD", job.plan.name)
            job = self._remember(job, created, DATABASE_ITEM, server_id=instance_id)
        try:
            status = cloud.get_database(instance_id).status
        except CloudNotFound:
            status = "deleted"
        if status == "ACTIVE":
            took = (now - (job.started_at or job.created_at)).total_seconds()
            return self._write(
                job, "active", now, "ok", f"database {instance_id} ACTIVE after {took:.0f} s",
                state=RestoreState.SUCCEEDED, finished_at=now,
                lease_owner=None, lease_expires_at=None,
            )  # fmt: skip
        if status in ("ERROR", "FAILED", "deleted"):
            raise _Abort(f"database {instance_id} is {status}")
        return self._later(job, "wait", now, f"database {instance_id} is {status}")

    def _clean_databases(self, job: RestoreJob, cloud: RestoreCloud, now: datetime) -> RestoreJob:
        """Delete the instance a database restore made (by the id it recorded)."""
        left = []
        try:
            for made in job.created:
                if made.kind != RESOURCE_DATABASE or not isinstance(cloud, DatabaseCloud):
                    continue
                try:
                    cloud.get_database(made.id)
                except CloudNotFound:
                    continue
                cloud.delete_database(made.id)
                left.append(made.id)
        except CloudError as error:
            return self._later(job, "cleanup", now, f"retrying: {error.message}")
        if left:
            return self._later(job, "cleanup", now, "waiting for " + ", ".join(left))
        return self._finish_cleanup(job, now, f"removed {len(job.created)} created resource(s)")

    def _rebuild(self, job: RestoreJob, cloud: RestoreCloud, now: datetime) -> RestoreJob:
        server_id = job.plan.server_id or ""
        if job.plan.image_id is None:
            raise _Abort("in-place restore needs the backup's image")
        if not any(step.name == REBUILD_ITEM for step in job.steps):
            cloud.rebuild_server(server_id, job.plan.image_id)
            job = self._write(
                job, REBUILD_ITEM, now, "ok", f"server {server_id} from image "
                f"{job.plan.image_id}", server_id=server_id,
            )  # fmt: skip
            # Nova may still say ACTIVE right after accepting a rebuild: look again later.
            return self._later(job, "wait", now, f"server {server_id} is rebuilding")
        server = cloud.resource_status(RESOURCE_SERVER, server_id)
        if job.plan.volumes and server.status == BOOTED:
            return self._swap_volumes(job, cloud, now, server)
        return self._await_server(job, cloud, server, now)

    def _swap_volumes(
        self, job: RestoreJob, cloud: RestoreCloud, now: datetime, server: CloudResource
    ) -> RestoreJob:
        """In place with ``--volumes``: each data volume is replaced by a new one from the
        backup's snapshot, attached where it was; the old one is detached and kept."""
        found = {r.metadata.get(MARKER_RESTORE_ITEM, ""): r for r in cloud.find_restored(job.id)}
        waiting: list[str] = []
        for planned in job.plan.volumes:
            new = found.get(planned.item)
            if new is None or new.status == "deleted":
                new = self._create_volume(job, cloud, planned)
                job = self._write(job, "volume", now, "created", f"{planned.item}: {new.id}")
            job = self._remember(job, new, planned.item)
            if new.status == "error":
                raise _Abort(f"volume {new.id} from snapshot {planned.snapshot_id} failed")
            if new.status != "available":
                if new.status != "in-use":
                    waiting.append(f"{planned.item} ({new.status})")
                continue
            if planned.replaces and self._detaching(job, cloud, server.id, planned, now):
                waiting.append(f"volume {planned.replaces} (detaching)")
                continue
            cloud.attach_volume(server.id, new.id, planned.device_name)
            job = self._write(
                job, "attach", now, "ok",
                f"volume {new.id} attached at {planned.device_name or '?'} in place of "
                f"{planned.replaces or 'nothing'}",
            )  # fmt: skip
            waiting.append(f"{planned.item} (attaching)")
        if waiting:
            return self._later(job, "volumes", now, "waiting for " + ", ".join(waiting))
        return self._await_server(job, cloud, server, now)

    def _detaching(
        self,
        job: RestoreJob,
        cloud: RestoreCloud,
        server_id: str,
        planned: PlannedVolume,
        now: datetime,
    ) -> bool:
        """Detach the volume a new one replaces (kept, never deleted); True while it goes."""
        old = planned.replaces or ""
        status = cloud.resource_status(RESOURCE_VOLUME, old).status
        if status == "detaching":
            return True
        if status != "in-use":
            return False
        try:
            cloud.detach_volume(server_id, old)
        except CloudNotFound:  # attached, but not to this server: not ours to touch
            self._write(
                job, "detach", now, "skipped",
                f"volume {old} is attached elsewhere, not to server {server_id}: left as it is",
            )  # fmt: skip
            return False
        self._write(
            job, "detach", now, "ok",
            f"volume {old} ({planned.device_name or '?'}) detached from server {server_id} "
            "and kept",
        )  # fmt: skip
        return True

    def _await_server(
        self, job: RestoreJob, cloud: RestoreCloud, server: CloudResource, now: datetime
    ) -> RestoreJob:
        if server.status == BOOTED and job.mode is RestoreMode.VERIFY:
            return self._verify(job, cloud, server, now)
        if server.status == BOOTED:
            took = (now - (job.started_at or job.created_at)).total_seconds()
            return self._write(
                job, "active", now, "ok", f"server {server.id} ACTIVE after {took:.0f} s",
                state=RestoreState.SUCCEEDED, finished_at=now,
                lease_owner=None, lease_expires_at=None,
            )  # fmt: skip
        if server.status in ("ERROR", "deleted"):
            raise _Abort(f"server {server.id} is {server.status}")
        return self._later(job, "wait", now, f"server {server.id} is {server.status}")

    # -- verifying ------------------------------------------------------------------------

    def _verify(
        self, job: RestoreJob, cloud: RestoreCloud, server: CloudResource, now: datetime
    ) -> RestoreJob:
        """Record the time to ACTIVE, run the checks (again each poll until the deadline),
        then record the verdict on the job and its backup and go clean up."""
        if job.active_seconds is None:
            took = (now - (job.started_at or job.created_at)).total_seconds()
            job = self._write(
                job, "active", now, "ok", f"server {server.id} ACTIVE after {took:.0f} s",
                active_seconds=took,
            )  # fmt: skip
        checks = job.plan.checks or VerifyChecks()
        failure = self._failed_check(checks, cloud, server.id)
        if failure is not None and now + self.poll < job.deadline_at:
            return self._later(job, CHECK_STEP, now, failure)
        result = VerifyResult.FAILED if failure else VerifyResult.PASSED
        reason = failure or _passed(checks)
        verification = Verification(result, now, reason, job.active_seconds, job.id)
        return self._write(
            job, CHECK_STEP, now, result.value, reason, state=RestoreState.CLEANING,
            error=failure, verification=verification,
        )  # fmt: skip

    def _failed_check(
        self, checks: VerifyChecks, cloud: RestoreCloud, server_id: str
    ) -> str | None:
        """Why the first failing check fails (None: all pass)."""
        if checks.console_contains is not None:
            try:
                console = cloud.console_output(server_id)
            except CloudError as error:
                return f"the console log could not be read: {error.message}"
            if checks.console_contains not in console:
                return f"the console log does not contain {checks.console_contains!r}"
        if checks.port is not None:
            if not isinstance(cloud, PortCheckCloud):
                return f"port {checks.port}: this cloud cannot check ports"
            try:
                why = cloud.check_port(server_id, checks.port, PORT_TIMEOUT)
            except CloudError as error:
                why = error.message
            if why is not None:
                return f"port {checks.port} does not answer: {why}"
        return None

    @staticmethod
    def _failed_verification(job: RestoreJob, now: datetime, reason: str) -> Verification | None:
        """A verify job that cannot finish failed its verification (a cancel is no verdict)."""
        if job.mode is not RestoreMode.VERIFY or job.cancel_requested:
            return None
        return Verification(VerifyResult.FAILED, now, reason, job.active_seconds, job.id)

    @staticmethod
    def _timed_out(job: RestoreJob) -> str:
        reason = f"timed out: not done by {job.deadline_at.isoformat()}"
        last = job.steps[-1] if job.steps else None
        if job.mode is RestoreMode.VERIFY and last is not None and last.name == CHECK_STEP:
            reason += f" ({last.detail})"
        return reason

    def _create_volume(
        self, job: RestoreJob, cloud: RestoreCloud, planned: PlannedVolume
    ) -> CloudResource:
        if planned.from_backup:
            volume_id = volume_cloud(cloud).create_volume_from_backup(
                planned.snapshot_id,
                name=job.plan.name[:255],
                metadata=self._markers(job, planned.item),
            )
            return cloud.resource_status(RESOURCE_VOLUME, volume_id)
        device = (planned.device_name or planned.snapshot_id).rsplit("/", 1)[-1]
        name = job.plan.name if job.plan.volume_only else f"{job.plan.name}-{device}"
        volume_id = cloud.create_volume(
            planned.snapshot_id,
            name=name[:255],
            size_gb=planned.size_gb,
            volume_type=planned.volume_type,
            availability_zone=job.plan.availability_zone,
            metadata=self._markers(job, planned.item),
        )
        return cloud.resource_status(RESOURCE_VOLUME, volume_id)

    def _boot_request(self, job: RestoreJob, volumes: dict[str, CloudResource]) -> BootRequest:
        plan = job.plan
        devices = tuple(
            BlockDevice(
                source_type="volume",
                uuid=volumes[planned.item].id,
                boot_index=planned.boot_index,
                device_name=planned.device_name,
                delete_on_termination=planned.delete_on_termination,
            )
            for planned in plan.volumes
        )
        return BootRequest(
            name=plan.name,
            flavor=plan.flavor,
            networks=plan.networks,
            security_groups=plan.security_groups,
            key_name=plan.key_name,
            availability_zone=plan.availability_zone,
            metadata={**plan.metadata, **self._markers(job, SERVER_ITEM)},
            image_id=plan.image_id,
            block_devices=devices,
        )

    @staticmethod
    def _markers(job: RestoreJob, item: str) -> dict[str, str]:
        return {
            MARKER_CREATED_BY: CREATED_BY_VALUE,
            MARKER_RESTORE: job.id,
            MARKER_RESTORE_ITEM: item,
            MARKER_BACKUP: job.backup_id,
        }

    # -- cleaning up ----------------------------------------------------------------------

    def _clean(self, job: RestoreJob, cloud: RestoreCloud | None, now: datetime) -> RestoreJob:
        """Delete what carries the job's marker: servers, then (once they are gone) volumes."""
        if cloud is None:
            return self._finish_cleanup(job, now, "nothing to clean: the cloud cannot restore")
        if job.plan.database is not None:
            return self._clean_databases(job, cloud, now)
        try:
            left = self._ours(job, cloud)
            servers = [r for r in left if r.kind == RESOURCE_SERVER]
            for server in servers:
                cloud.delete_server(server.id)
            if servers:
                left = self._ours(job, cloud)
            if any(r.kind == RESOURCE_SERVER for r in left):
                return self._later(job, "cleanup", now, "waiting for servers to go")
            for volume in left:
                if volume.status in ("creating", "in-use", "attaching", "detaching"):
                    continue
                cloud.delete_volume(volume.id)
            left = self._ours(job, cloud)
        except CloudError as error:
            return self._later(job, "cleanup", now, f"retrying: {error.message}")
        if left:
            names = ", ".join(f"{r.kind} {r.id}" for r in left)
            return self._later(job, "cleanup", now, f"still there: {names}")
        return self._finish_cleanup(job, now, f"removed {len(job.created)} created resource(s)")

    def _ours(self, job: RestoreJob, cloud: RestoreCloud) -> list[CloudResource]:
        """What the job made and is still there: by marker, and by id from its record
        (each checked to carry the marker: nothing else is ever deleted)."""
        found = {r.id: r for r in cloud.find_restored(job.id)}
        for created in job.created:
            if created.id not in found:
                status = cloud.resource_status(created.kind, created.id)
                if status.metadata.get(MARKER_RESTORE) == job.id:
                    found[status.id] = status
        return [r for r in found.values() if r.status != "deleted"]

    def _finish_cleanup(self, job: RestoreJob, now: datetime, detail: str) -> RestoreJob:
        final = RestoreState.CANCELLED if job.cancel_requested else RestoreState.FAILED
        if final is RestoreState.FAILED and job.verify_result == VerifyResult.PASSED.value:
            final = RestoreState.SUCCEEDED  # a verification ends once its server is gone
        return self._write(
            job, "cleanup", now, "ok", detail,
            state=final, finished_at=now, lease_owner=None, lease_expires_at=None,
        )  # fmt: skip

    # -- the record -----------------------------------------------------------------------

    def _cloud(self, job: RestoreJob) -> RestoreCloud | None:
        try:
            cloud = self.clouds(job.cloud)
        except StackbackError:
            return None
        return cloud if isinstance(cloud, RestoreCloud) else None

    def _remember(
        self, job: RestoreJob, resource: CloudResource, item: str, **values: Any
    ) -> RestoreJob:
        created = CreatedResource(resource.kind, resource.id, item)
        if created in job.created and not values:
            return job
        return self.store.update_restore(job.id, job.attempt, created=created, **values)

    def _write(
        self,
        job: RestoreJob,
        name: str,
        started: datetime,
        outcome: str,
        detail: str = "",
        **values: Any,
    ) -> RestoreJob:
        step = RestoreStep(name, started, self.clock.now(), outcome, detail)
        return self.store.update_restore(job.id, job.attempt, step=step, **values)

    def _later(self, job: RestoreJob, name: str, now: datetime, detail: str) -> RestoreJob:
        """Give the lease back until the next poll (a waiting step is journalled once)."""
        last = job.steps[-1] if job.steps else None
        step = None
        if last is None or (last.name, last.detail) != (name, detail):
            step = RestoreStep(name, now, None, "waiting", detail)
        return self.store.update_restore(
            job.id,
            job.attempt,
            step=step,
            lease_owner=None,
            lease_expires_at=None,
            not_before=now + self.poll,
        )


def _passed(checks: VerifyChecks) -> str:
    done = ["ACTIVE"]
    if checks.console_contains is not None:
        done.append(f"console log contains {checks.console_contains!r}")
    if checks.port is not None:
        done.append(f"port {checks.port} answers")
    return "; ".join(done)
