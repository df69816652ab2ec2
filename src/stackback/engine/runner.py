"""One backup run as a recorded state machine.

    pending → snapshotting → waiting → rotating → succeeded
                    ↘            ↘          (failed | missed | cancelled)

Every step is idempotent and resumable after a crash: the run's cloud
artifacts carry the run id in their metadata, and a run resumed in
``snapshotting`` looks its image up by that id before asking for another.
Retention runs only once the new backup is available, over the target's
successful, unprotected backups of the same policy (or label), never forgets
the newest good one and deletes at most ``deletion_budget`` backups per run,
counting what the run forgot before a crash and a resume: the rules are
``stackback.safety.plan_rotation``'s, run by the store with the target's backups locked.
A failed run deletes nothing; its partial artifacts stay recorded for the operator
(a failed incremental with the parent the cloud gave it: it is forgotten with that parent).

Every store write of a step is fenced by the run's attempt (its lease): the run
updates, and also the backup and artifact records (``fence=(run id, attempt)``),
so a worker whose lease was taken over mid-step writes nothing more.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import partial

from stackback.engine.collector import Collector
from stackback.engine.consistent import Wanted, WholeServer
from stackback.engine.databases import DatabaseBackups
from stackback.engine.failpoints import failpoint
from stackback.engine.settings import EngineSettings
from stackback.engine.volumes import VOLUME_KINDS, VolumeStep, volume_cloud, volume_detail
from stackback.errors import (
    CloudError,
    CloudNotFound,
    CloudUnreachable,
    Conflict,
    HostBusy,
    LeaseLost,
    NotFound,
    RunFailed,
    StackbackError,
    Unexpected,
)
from stackback.policy import (
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    Policy,
    Run,
    RunState,
    Step,
    server_label,
)
from stackback.ports import (
    CREATED_BY_VALUE,
    MARKER_BACKUP,
    MARKER_CREATED_BY,
    MARKER_IMAGE_ID,
    MARKER_LABEL,
    MARKER_POLICY,
    MARKER_RUN,
    MARKER_TARGET,
    MARKER_TARGET_NAME,
    ArtifactInfo,
    ArtifactRef,
    Clock,
    CloudResolver,
    ServerInfo,
    Store,
    VolumeInfo,
)
from stackback.records import StepNote
from stackback.retention import RetentionPolicy
from stackback.safety import RotationRequest, RotationScope, plan_rotation
from stackback.schedule import parse_timezone

log = logging.getLogger(__name__)


HOST_FULL = "its host had its fill of snapshots in progress"
"""How a start deferred by the per-host limit begins its journal note."""

_START_DETAIL = re.compile(r"server (?P<id>\S+) \(")
"""What the start step records (``server <id> (<name>)``), since the first version."""


_current_run: ContextVar[str | None] = ContextVar("stackback_current_run", default=None)
"""The run whose step is being taken (for log lines that do not name it)."""


def _duration(run: Run, now: datetime) -> str:
    """How long a run has taken, from its start (or its scheduled time), as ``1m05s``."""
    seconds = max(0, int((now - (run.started_at or run.scheduled_for)).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _start_detail(server: ServerInfo) -> str:
    return f"server {server.id} ({server.name})"


def _started_on(steps: Sequence[Step]) -> str | None:
    """The server id a run's start step recorded in its journal (the last one that started)."""
    for step in reversed(steps):
        if step.name == "start" and step.outcome == "ok":
            found = _START_DETAIL.match(step.detail)
            return found["id"] if found else None
    return None


def _fence_of(run: Run) -> tuple[str, int]:
    """What a worker's backup and artifact writes name: the run and the attempt it holds."""
    return (run.id, run.attempt)


#: Nova names each volume snapshot of a volume-backed server "snapshot for <image name>", and
#: Cinder refuses a name over 255 characters: the image name leaves room for that prefix.
IMAGE_NAME_MAX = 255 - len("snapshot for ")


def image_name(server_name: str, scheduled_for: datetime) -> str:
    """``stackback-<server>-<time>``, the server name shortened to fit Nova and Cinder."""
    suffix = f"-{scheduled_for:%Y%m%dT%H%MZ}"
    room = IMAGE_NAME_MAX - len("stackback-") - len(suffix)
    return f"stackback-{server_name[:room]}{suffix}"


def markers(run: Run, backup: Backup) -> dict[str, str]:
    """The metadata stamped on every artifact of a run's backup.

    Every marker is written, empty when it does not apply: Nova copies the
    properties of the image a server booted from into its snapshots, and a
    server restored from a labelled backup must not pass that label (or its
    policy) on to its own backups.
    """
    return {
        MARKER_CREATED_BY: CREATED_BY_VALUE,
        MARKER_RUN: run.id,
        MARKER_TARGET: backup.target,
        MARKER_BACKUP: backup.id,
        MARKER_POLICY: run.policy_id or "",
        MARKER_LABEL: run.label or "",
        MARKER_TARGET_NAME: backup.target_name or "",  # for reconcile's `backup list --server`
    }


class Runner:
    """Advances claimed runs, one recorded step at a time."""

    def __init__(
        self,
        store: Store,
        clouds: CloudResolver,
        clock: Clock,
        settings: EngineSettings | None = None,
        *,
        release_credential: Callable[[str | None], object] | None = None,
    ) -> None:
        self.store = store
        self.clouds = clouds
        self.clock = clock
        self.settings = settings or EngineSettings()
        self.collector = Collector(
            store, clouds, clock, self.settings, release_credential=release_credential
        )
        self._policies: dict[str, Policy | None] = {}

    # -- entry points ----------------------------------------------------------------

    def forget_cached_policies(self) -> None:
        """Policies are cached for one batch of claimed runs; the worker clears them."""
        self._policies.clear()

    def advance(self, run: Run) -> None:
        """Do what a claimed run's state calls for (``waiting`` runs go through ``poll``)."""
        if run.state is RunState.WAITING:
            self.poll([run])
            return
        self._guarded(run, self._step)

    def poll(self, runs: Sequence[Run]) -> None:
        """Check many waiting runs with one status listing per cloud."""
        by_cloud: dict[str | None, list[tuple[Run, Backup]]] = defaultdict(list)
        for run in runs:
            backup = self.store.backup_for_run(run.id)
            if backup is None:
                self._guarded(run, partial(self._fail, why="waiting run has no backup record"))
                continue
            by_cloud[run.cloud].append((run, backup))
        for cloud_name, items in by_cloud.items():
            refs = [
                ArtifactRef(a.kind, a.cloud_id)
                for _, backup in items
                for a in backup.artifacts
                if a.status is not ArtifactStatus.DELETED
            ]
            try:
                infos = self.clouds(cloud_name).artifact_statuses(refs) if refs else {}
            except CloudError as error:
                for run, _ in items:
                    self._guarded(run, partial(self._retry_or_fail, step="poll", error=error))
                continue
            for run, backup in items:
                self._guarded(run, partial(self._check, backup=backup, infos=infos))

    # -- the steps -------------------------------------------------------------------

    def _step(self, run: Run) -> None:
        if run.state is RunState.PENDING:
            self._start(run)
        elif run.state is RunState.SNAPSHOTTING:
            self._snapshot(self._with_server_id(run), resumed=True)
        elif run.state is RunState.ROTATING:
            self._rotate(self._with_server_id(run))
        else:
            self._release(run, None)

    def _with_server_id(self, run: Run, backup: Backup | None = None) -> Run:
        """A run started before migration 0005 records its server id when it is resumed.

        The id is the one its backup is kept under or, before the backup record, the
        one its start step wrote in the journal: not whoever has the typed name now.
        From then on the one-active-run-per-server index holds it; if another active
        run already holds that server, the run goes on without it, as before.
        """
        if run.server_id is not None:
            return run
        backup = backup or self.store.backup_for_run(run.id)
        server_id = backup.target if backup else _started_on(self.store.get_run(run.id).steps)
        if server_id is None:
            return run
        try:
            return self.store.update_run(run.id, run.attempt, server_id=server_id)
        except Conflict:
            log.warning("run %s: server %s already has another active run", run.id, server_id)
            return run

    def _policy(self, run: Run) -> Policy | None:
        """The run's policy, read once per batch (None for on-demand runs or a deleted one)."""
        if run.policy_id is None:
            return None
        if run.policy_id not in self._policies:
            try:
                self._policies[run.policy_id] = self.store.get_policy(run.policy_id)
            except NotFound:
                self._policies[run.policy_id] = None
        return self._policies[run.policy_id]

    def _start(self, run: Run) -> None:
        now = self.clock.now()
        policy = self._policy(run)
        if run.trigger == "schedule" and (policy is None or not policy.enabled):
            self.store.update_run(
                run.id,
                run.attempt,
                state=RunState.CANCELLED,
                finished_at=now,
                error="policy deleted or disabled before the run started",
                lease_owner=None,
            )
            return
        start_by = self._retry_deadline(run)
        if run.trigger == "schedule" and now >= start_by:
            self._too_late(run, now, start_by)
            return
        host: str | None = None
        server: ServerInfo | None = None
        project = run.project
        if policy is not None and policy.kind in VOLUME_KINDS:
            volume = self._volume(run)
            source_id, source_name, detail = volume.id, volume.name, volume_detail(volume)
        else:
            server = self._target(run, policy)
            source_id, source_name, detail = server.id, server.name, _start_detail(server)
            host = server.host
            if project is None and run.policy_id is None and run.policy_name is None:
                project = server.project_id  # backup now: the project the cloud says it is in
        try:
            run = self.store.update_run(
                run.id,
                run.attempt,
                state=RunState.SNAPSHOTTING,
                project=project,
                target_name=source_name,
                server_id=source_id,  # one active run per server (or volume), however named
                host=host,
                host_limit=self.settings.max_snapshots_per_host,
                step=self._note("start", now, "ok", detail),
            )
        except HostBusy as busy:
            self._wait_for_host(run, now, start_by, host, busy)
            return
        except Conflict:
            if run.trigger == "schedule" and now >= start_by:
                self._miss(
                    run,
                    now,
                    f"the target had another backup running until after "
                    f"{start_by:%Y-%m-%d %H:%M} UTC",
                )
                return
            self._release(
                run,
                now + self.settings.poll_interval,
                self._note("start", now, "deferred", "target has another active run"),
            )
            return
        failpoint("after-start")
        self._snapshot(run, resumed=False, server=server)

    def _wait_for_host(
        self, run: Run, now: datetime, start_by: datetime, host: str | None, busy: HostBusy
    ) -> None:
        """The server's host has its fill of snapshots: the run waits for room, its host
        recorded so that claims leave it until then (or, past its start window, is missed)."""
        if run.trigger == "schedule" and now >= start_by:
            self._miss(run, now, f"{HOST_FULL} until after {start_by:%Y-%m-%d %H:%M} UTC")
            return
        self.store.update_run(
            run.id,
            run.attempt,
            host=host,
            lease_owner=None,
            lease_expires_at=None,
            not_before=None,
            step=self._note("start", now, "deferred", f"{HOST_FULL}: {busy.message}"),
        )

    def _too_late(self, run: Run, now: datetime, start_by: datetime) -> None:
        """A scheduled run not started by the end of its window: failed or missed, saying why.

        The previous attempt's last step tells why it is still pending: a retried
        error fails the run with that error; a busy target or no attempt at all
        (no worker took it, or its worker stopped) makes it missed.
        """
        by = f"{start_by:%Y-%m-%d %H:%M} UTC"
        previous = [s for s in self.store.get_run(run.id).steps if s.attempt == run.attempt - 1]
        last = previous[-1] if previous else None
        if last is not None and last.outcome == "retry":
            self._fail(run, _still_failing(last.detail, start_by))
        elif last is not None and last.outcome == "deferred" and last.detail.startswith(HOST_FULL):
            self._miss(run, now, f"{HOST_FULL} until after {by}")
        elif last is not None and last.outcome == "deferred":
            self._miss(run, now, f"the target had another backup running until after {by}")
        elif run.attempt <= 1:
            self._miss(run, now, f"no worker took it before {by}")
        else:
            self._miss(run, now, f"its worker stopped and it was not taken over before {by}")

    def _miss(self, run: Run, now: datetime, why: str) -> None:
        self.store.update_run(
            run.id,
            run.attempt,
            state=RunState.MISSED,
            finished_at=now,
            error=f"could not start in time: {why}",
            lease_owner=None,
            lease_expires_at=None,
            step=self._note("start", now, "missed", why),
        )

    def _databases(self, run: Run) -> DatabaseBackups:
        return DatabaseBackups(
            self.store, self.clouds(run.cloud), self.clock, self.settings, self._note, markers
        )

    def _target(self, run: Run, policy: Policy | None) -> ServerInfo:
        """The run's server, or its Trove instance (as a target) for a database policy."""
        if policy is not None and policy.kind is BackupKind.DATABASE_BACKUP:
            return self._databases(run).instance(run).as_server()
        return self._server(run)

    def _server(self, run: Run, key: str | None = None) -> ServerInfo:
        """The run's server, by ``key`` (the id its backup is kept under) or its target."""
        key = key or run.target
        try:
            return self.clouds(run.cloud).get_server(key)
        except CloudNotFound:
            # Backups are kept by server id: a run that names its server records nothing
            # here (no backup is kept under a name); the orphan sweeper asks by id.
            self.store.record_source(run.server_id or key, now=self.clock.now(), exists=False)
            label = server_label(run.server_id or key, run.target_name or run.target)
            raise RunFailed(
                f"server {label} no longer exists; its existing backups are kept"
            ) from None

    def _volume(self, run: Run, key: str | None = None) -> VolumeInfo:
        """The run's volume, by ``key`` (the id its backup is kept under) or its target."""
        key = key or run.target
        try:
            return volume_cloud(self.clouds(run.cloud)).get_volume(key)
        except CloudNotFound:
            self.store.record_source(run.server_id or key, now=self.clock.now(), exists=False)
            label = server_label(run.server_id or key, run.target_name or run.target)
            raise RunFailed(
                f"volume {label} no longer exists; its existing backups are kept"
            ) from None

    def _snapshot(self, run: Run, *, resumed: bool, server: ServerInfo | None = None) -> None:
        now = self.clock.now()
        self.clouds(run.cloud)  # a cloud that cannot be had fails before the backup record
        policy = self._policy(run)
        if policy is not None and policy.kind is BackupKind.DATABASE_BACKUP:
            self._database_backup(run, policy, resumed=resumed, now=now)
            return
        backup = self.store.backup_for_run(run.id)
        if backup is None and policy is not None and policy.kind in VOLUME_KINDS:
            volume = self._volume(run, run.server_id)
            backup = self.store.ensure_backup(
                Backup.of_run(
                    run,
                    backup_id=str(uuid.uuid4()),
                    target=volume.id,
                    target_name=run.target_name or volume.name,
                    kind=policy.kind,
                    created_at=now,
                    project=policy.project,
                ),
                fence=_fence_of(run),
            )
        if backup is None:
            # Backups are keyed by the server's id, whatever the policy names it by: a
            # name can be reused by another server, whose backups must not count here.
            # Resumed, the server is the one the start step resolved, not whoever has the
            # name now.
            server = server or self._server(run, run.server_id)
            backup = self.store.ensure_backup(
                Backup.of_run(
                    run,
                    backup_id=str(uuid.uuid4()),
                    target=server.id,
                    target_name=run.target_name,
                    kind=policy.kind if policy else BackupKind.SERVER_IMAGE,
                    created_at=now,
                    project=run.project or (policy.project if policy else None),
                ),
                fence=_fence_of(run),
                restore_source=server.spec.to_dict() if server.spec else None,
            )
        failpoint("after-backup-record")
        if backup.kind is BackupKind.SERVER_CONSISTENT:
            detail = self._whole_server(run, backup, server, resumed=resumed, policy=policy)
        elif backup.kind in VOLUME_KINDS:
            detail = self._volume_step(run).take(
                run,
                backup,
                policy,
                markers(run, backup),
                image_name(run.target_name or run.target, run.scheduled_for),
                resumed=resumed,
                fence=_fence_of(run),
            )
        else:
            detail = self._server_image(run, backup, server, resumed=resumed)
        failpoint("after-record-artifact")
        self._snapshot_taken(run, backup, now, detail)

    def _database_backup(self, run: Run, policy: Policy, *, resumed: bool, now: datetime) -> None:
        """The snapshot step of a ``database-backup`` run (``engine.databases``)."""
        databases = self._databases(run)
        backup = databases.record(run, policy, _fence_of(run))
        failpoint("after-backup-record")
        detail = databases.take(run, backup, resumed=resumed, fence=_fence_of(run))
        failpoint("after-record-artifact")
        self._snapshot_taken(run, backup, now, detail)

    def _snapshot_taken(self, run: Run, backup: Backup, now: datetime, detail: str) -> None:
        """The snapshot step is done: the run waits for its artifacts (released to any worker)."""
        self.store.update_run(
            run.id,
            run.attempt,
            state=RunState.WAITING,
            backup_id=backup.id,
            lease_owner=None,
            lease_expires_at=None,
            not_before=now,
            step=self._note("snapshot", now, "ok", detail),
        )

    def _server_image(
        self, run: Run, backup: Backup, server: ServerInfo | None, *, resumed: bool
    ) -> str:
        """The snapshot step of a ``server-image`` backup: one ``createImage``."""
        cloud = self.clouds(run.cloud)
        stamp = markers(run, backup)
        found: list[ArtifactInfo] = []
        if resumed or backup.artifacts:
            found = cloud.find_artifacts({MARKER_RUN: run.id})
        if found:
            for info in found:
                self._record_artifact(run, backup, info.ref, info.status)
            return "resumed: found " + ", ".join(i.ref.id for i in found)
        if server is None or server.id != backup.target:
            # By the id the backup is kept under: the name may have passed to another server.
            server = self._server(run, backup.target)
        name = image_name(run.target_name or run.target, run.scheduled_for)
        # Still ours? A worker whose lease was taken over must not start a second image.
        renewed_at = self.clock.now()
        self.store.renew_lease(
            run.id, run.attempt, now=renewed_at, until=renewed_at + self.settings.lease
        )
        # The id marker is stamped once the image is available; until then it must not
        # keep what Nova copies from the image the server was booted from.
        ref = cloud.start_server_image(server.id, name, {**stamp, MARKER_IMAGE_ID: ""})
        failpoint("after-create-image")
        self._record_artifact(run, backup, ref, ArtifactStatus.PENDING)
        return f"image {ref.id} requested"

    def _whole_server(
        self,
        run: Run,
        backup: Backup,
        server: ServerInfo | None,
        *,
        resumed: bool,
        policy: Policy | None,
    ) -> str:
        """The snapshot step of a ``server-consistent`` backup (``engine.consistent``)."""
        if server is None or server.id != backup.target:
            server = self._server(run, backup.target)
        whole = WholeServer(
            self.store, self.clouds(run.cloud), self.clock, self.settings, self._note
        )
        name = image_name(run.target_name or run.target, run.scheduled_for)
        stamp = markers(run, backup)
        if resumed or backup.artifacts:
            return whole.resume(run, backup, server, Wanted.of(policy), stamp, name)
        return whole.take(run, backup, server, Wanted.of(policy), stamp, name)

    def _volume_step(self, run: Run) -> VolumeStep:
        def record(ref: ArtifactRef) -> None:
            backup = self.store.backup_for_run(run.id)
            assert backup is not None
            if all((a.kind, a.cloud_id) != (ref.kind, ref.id) for a in backup.artifacts):
                self._record_artifact(run, backup, ref, ArtifactStatus.PENDING)

        return VolumeStep(self.store, self.clouds(run.cloud), self.clock, self.settings, record)

    def _record_artifact(
        self, run: Run, backup: Backup, ref: ArtifactRef, status: ArtifactStatus
    ) -> None:
        self.store.add_artifact(
            backup.id, ref.kind, ref.id, status=status, now=self.clock.now(), fence=_fence_of(run)
        )

    def _check(self, run: Run, backup: Backup, infos: dict[ArtifactRef, ArtifactInfo]) -> None:
        run = self._with_server_id(run, backup)
        now = self.clock.now()
        cloud = self.clouds(run.cloud)
        known = {(a.kind, a.cloud_id) for a in backup.artifacts}
        pending, broken, discovered = [], [], []
        for artifact in backup.artifacts:
            ref = ArtifactRef(artifact.kind, artifact.cloud_id)
            info = infos.get(ref)
            if info is None:
                pending.append(ref.id)
                continue
            if info.status is not artifact.status or info.size != artifact.size:
                self.store.update_artifact(
                    artifact.id, status=info.status, size=info.size, fence=_fence_of(run)
                )
            if info.status in (ArtifactStatus.FAILED, ArtifactStatus.DELETED):
                broken.append(f"{ref.kind.value} {ref.id} is {info.status.value} {info.detail}")
            elif info.status is not ArtifactStatus.AVAILABLE:
                pending.append(ref.id)
            for child in info.children:
                if (child.kind, child.id) not in known:
                    cloud.set_artifact_metadata(child, markers(run, backup))
                    self._record_artifact(run, backup, child, ArtifactStatus.PENDING)
                    discovered.append(child.id)
        if broken:
            if backup.kind is BackupKind.VOLUME_BACKUP:
                # a failed incremental still counts against its parent in Cinder: recorded
                # as its child, it is deleted before the parent (stackback.safety)
                self._volume_step(run).record_parent(backup, infos, _fence_of(run))
            self._discard(run, backup, "; ".join(broken))
            raise RunFailed("backup failed: " + "; ".join(broken))
        if discovered or pending:
            if run.started_at and now - run.started_at > self.settings.wait_timeout:
                self._discard(run, backup, "timed out")
                raise RunFailed(
                    f"timed out after {self.settings.wait_timeout} waiting for {pending}"
                )
            note = (
                self._note("wait", now, "ok", "volume snapshots: " + ", ".join(discovered))
                if discovered
                else None
            )
            self._release(run, now + self.settings.poll_interval, note)
            return
        for artifact in backup.artifacts:
            ref = ArtifactRef(artifact.kind, artifact.cloud_id)
            if (
                ref.kind is ArtifactKind.IMAGE
                and infos[ref].metadata.get(MARKER_IMAGE_ID) != ref.id
            ):
                # what an inherited copy of this image will not have: its own id
                cloud.set_artifact_metadata(ref, {MARKER_IMAGE_ID: ref.id})
        if backup.kind is BackupKind.VOLUME_BACKUP:
            self._volume_step(run).record_parent(backup, infos, _fence_of(run))
        self.store.update_backup(
            backup.id, status=BackupStatus.AVAILABLE, completed_at=now, fence=_fence_of(run)
        )
        failpoint("after-backup-available")
        run = self.store.update_run(
            run.id,
            run.attempt,
            state=RunState.ROTATING,
            step=self._note("wait", now, "ok", f"backup {backup.id} available"),
        )
        self._rotate(run)

    def _discard(self, run: Run, backup: Backup, why: str) -> None:
        """Mark a backup failed. A failed run deletes nothing: its artifacts stay recorded."""
        self.store.update_backup(
            backup.id, status=BackupStatus.FAILED, error=why, fence=_fence_of(run)
        )

    def _rotate(self, run: Run) -> None:
        now = self.clock.now()
        policy = self._policy(run)
        own = self.store.backup_for_run(run.id)
        target = own.target if own is not None else run.target  # the server's id
        scope: RotationScope | None = None
        if policy is not None:
            rules, zone = policy.retention, parse_timezone(policy.timezone)
            scope = RotationScope(policy_id=policy.id)
        elif run.policy_id is None and run.retention is not None:
            rules, zone = RetentionPolicy.from_dict(run.retention), parse_timezone("UTC")
            scope = RotationScope(label=run.label)
        else:
            rules, zone = RetentionPolicy(), parse_timezone("UTC")
        request = RotationRequest(
            rules=rules,
            scope=None if rules.is_empty() else scope,
            now=now,
            tz=zone,
            run_id=run.id,
            budget=self.settings.deletion_budget,
        )
        # Decided and marked with the target's backups locked, fenced by the run's attempt.
        plan = self.store.decide_for_target(
            target, partial(plan_rotation, request), fence=_fence_of(run)
        )
        failpoint("after-rotation-decided")
        detail = f"kept {len(plan.keep)}, forgetting {len(plan.forgotten)}"
        if plan.forgotten:
            detail += ": " + ", ".join(b.id for b in plan.forgotten)
        elif plan.note is not None:
            detail += f" ({plan.note}: nothing forgotten)"
        self.collector.collect(plan.forgotten)
        self.store.update_run(
            run.id,
            run.attempt,
            state=RunState.SUCCEEDED,
            finished_at=self.clock.now(),
            lease_owner=None,
            lease_expires_at=None,
            step=self._note("rotate", now, "ok", detail),
        )
        log.info(
            "run %s finished: policy %s, target %s, succeeded in %s; kept %d, forgot %d",
            run.id,
            run.policy_name or (policy.name if policy else "-"),
            server_label(target, run.target_name),
            _duration(run, self.clock.now()),
            len(plan.keep),
            len(plan.forgotten),
        )

    # -- bookkeeping -----------------------------------------------------------------

    def _guarded(self, run: Run, step: Callable[[Run], None]) -> None:
        """Run one step; turn its outcome into a recorded retry, failure or nothing."""
        token = _current_run.set(run.id)
        try:
            self._outcome(run, step)
        except LeaseLost:
            log.info("run %s: lease lost, another worker has it", run.id)
        finally:
            _current_run.reset(token)

    def _outcome(self, run: Run, step: Callable[[Run], None]) -> None:
        try:
            step(run)
        except LeaseLost:
            raise
        except RunFailed as error:
            self._fail(run, error.message)
        except (CloudError, Conflict) as error:
            self._retry_or_fail(run, run.state.value, error)
        except StackbackError as error:  # e.g. a cloud entry missing from clouds.yaml
            self._fail(run, f"{error.code}: {error.message}", error_id=error.error_id)
        except Exception as error:  # a bug must not wedge the run: record it, retry, then fail
            unexpected = Unexpected(f"{type(error).__name__}: {error}")
            log.exception("run %s: unexpected error (error id %s)", run.id, unexpected.error_id)
            self._retry_or_fail(run, run.state.value, unexpected)

    def _retry_or_fail(self, run: Run, step: str, error: StackbackError) -> None:
        if isinstance(error, CloudUnreachable) and _first_call_on_demand(run):
            self._fail(
                run,
                f"{error.code}: {error.message} (an on-demand backup is not retried when "
                "its first call cannot reach the cloud: check the cloud's address)",
                error_id=error.error_id,
            )
            return
        now = self.clock.now()
        retryable = getattr(error, "retryable", False) or isinstance(error, Conflict)
        deadline = self._retry_deadline(run)
        if retryable:
            since = _failing_since(self.store.get_run(run.id))
            decision = self.settings.retry_strategy.decide(
                now=now,
                deadline=deadline,
                failing_for=timedelta(0) if since is None else now - since,
                key=run.id,
            )
            if decision.retry_at is not None:
                self._release(
                    run,
                    decision.retry_at,
                    self._note(step, now, "retry", f"{error.code}: {error.message}"),
                )
                return
        why = f"{error.code}: {error.message}"
        self._fail(
            run, _still_failing(why, deadline) if retryable else why, error_id=error.error_id
        )

    def _retry_deadline(self, run: Run) -> datetime:
        """Until when a failing step is retried.

        Starting a backup is retried within the start window (at least ``retry_window``);
        once the cloud is taking it, polling and rotation are retried until ``wait_timeout``.
        """
        if run.state in (RunState.WAITING, RunState.ROTATING):
            return (run.started_at or run.scheduled_for) + self.settings.wait_timeout
        return run.scheduled_for + max(
            self.settings.retry_window, timedelta(minutes=self._window(run))
        )

    def _window(self, run: Run) -> int:
        policy = self._policy(run)
        return policy.window_minutes if policy else 0

    def _fail(self, run: Run, why: str, *, error_id: str | None = None) -> None:
        """End the run failed, or, once its backup is good, succeeded with the rotation's error.

        Only rotation follows the backup turning available, and it may already
        have forgotten older backups; such a run is not failed (a failed run
        deletes nothing): it succeeds, and its error says what rotation could not
        finish.
        """
        now = self.clock.now()
        backup = self.store.backup_for_run(run.id)
        if backup is not None and backup.status is BackupStatus.CREATING:
            self._discard(run, backup, why)
        state = RunState.FAILED
        if backup is not None and backup.status is BackupStatus.AVAILABLE:  # rotation's trouble
            state, why = RunState.SUCCEEDED, f"rotation did not finish: {why}"
        try:
            self.store.update_run(
                run.id,
                run.attempt,
                step=self._note(run.state.value, now, state.value, why),
                state=state,
                error=why,
                error_id=error_id or uuid.uuid4().hex[:12],
                finished_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
        except LeaseLost:
            return
        log.warning(
            "run %s finished: policy %s, target %s, %s in %s: %s",
            run.id,
            run.policy_name or "-",
            server_label(run.server_id or run.target, run.target_name),
            state.value,
            _duration(run, now),
            why,
        )

    def _note(self, name: str, started: datetime, outcome: str, detail: str) -> StepNote:
        log.debug(
            "run %s: step %s %s%s",
            _current_run.get(),
            name,
            outcome,
            f": {detail}" if detail else "",
        )
        return StepNote(name, started, self.clock.now(), outcome, detail)

    def _release(self, run: Run, not_before: datetime | None, note: StepNote | None = None) -> None:
        self.store.release_run(run.id, run.attempt, not_before=not_before, step=note)


def _first_call_on_demand(run: Run) -> bool:
    """An on-demand run that has not got past its start: the cloud has never answered it."""
    return run.trigger == "manual" and run.state is RunState.PENDING


def _failing_since(run: Run) -> datetime | None:
    """When the run's current streak of retried failures began (None: no retry yet)."""
    since = None
    for note in reversed(run.steps):
        if note.outcome != "retry":
            break
        since = note.started_at
    return since


def _still_failing(why: str, deadline: datetime) -> str:
    """The reason a run fails when a retried error outlasts its retry window."""
    return f"{why} (still failing at the end of the retry window, {deadline:%Y-%m-%d %H:%M} UTC)"
