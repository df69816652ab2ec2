"""Whole-server backups (kind ``server-consistent``), one recorded step of a run.

A backup of an image-backed server is its image plus a forced Cinder snapshot of
each data volume attached at that moment; a volume-backed server's ``createImage``
already snapshots every volume (the image's ``block_device_mapping``, found by
the wait step). Every artifact carries the backup's markers from its creation,
and stackback's own volume snapshots the volume's id (``MARKER_VOLUME``), so a
resumed run finds what it already made and makes only what is missing.

The level the policy asks for is tried as ``stackback.consistency`` decides, and the
level *obtained* is recorded on the backup with how (pause duration, spread of the
snapshot starts, why not higher). A pause is journalled before Nova is asked
(``pause``/``requested`` with the server's prior state) and its end after
(``unpause``): a run taken over with a pause and no unpause after it unpauses the
server first, so a server is never left paused by a worker that died.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from stackback.consistency import (
    DEFAULT_MAX_PAUSE_SECONDS,
    Action,
    Approach,
    ConsistencyLevel,
    Fallback,
    GroupPlan,
    VolumeGroup,
    choose_approach,
    fall_back,
    groups_detail,
    plan_groups,
    spread_detail,
    still_needs_pause,
)
from stackback.databases import description
from stackback.engine.failpoints import failpoint
from stackback.engine.settings import EngineSettings
from stackback.errors import CloudBusy, CloudError, CloudNotFound, CloudRejected, RunFailed
from stackback.policy import ArtifactKind, ArtifactStatus, Backup, Policy, Run, Step
from stackback.ports import (
    MARKER_IMAGE_ID,
    MARKER_RUN,
    MARKER_VOLUME,
    ArtifactInfo,
    ArtifactRef,
    Clock,
    Cloud,
    GroupCloud,
    GroupSnapshot,
    ServerInfo,
    Store,
)
from stackback.records import StepNote

log = logging.getLogger(__name__)

PAUSE_STEP = "pause"
UNPAUSE_STEP = "unpause"
REQUESTED = "requested"
REFUSED = "refused"
_PRIOR_STATE = re.compile(r" was (?P<status>\S+)")

Note = Callable[[str, datetime, str, str], StepNote]


def pause_pending(steps: Sequence[Step]) -> tuple[str, datetime] | None:
    """The server's state before a pause that no unpause followed, and when it was asked.

    A run taken over with such a pause in its journal must unpause the server
    (unless it was already paused before the run): its worker stopped mid-pause.
    """
    pending: tuple[str, datetime] | None = None
    for step in steps:
        if step.name == PAUSE_STEP and step.outcome == REQUESTED:
            found = _PRIOR_STATE.search(step.detail)
            pending = (found["status"] if found else "ACTIVE", step.started_at)
        elif step.name == UNPAUSE_STEP or (step.name == PAUSE_STEP and step.outcome == REFUSED):
            pending = None
    return pending


def own_volumes(server: ServerInfo) -> tuple[str, ...]:
    """The volumes stackback snapshots itself: every attached one of an image-backed server
    (Nova's ``createImage`` snapshots those of a volume-backed server)."""
    return () if server.volume_backed else server.attached_volumes


def volume_snapshot_name(image_name: str, volume_id: str) -> str:
    """Within Cinder's 255 characters: the image name (at most 242) and the volume's id."""
    return f"{image_name}-vol-{volume_id[:8]}"


@dataclass(frozen=True)
class Wanted:
    """What a policy asks of its whole-server backups."""

    consistency: ConsistencyLevel = ConsistencyLevel.CRASH
    fallback: Fallback = Fallback.CRASH
    max_pause_seconds: int = DEFAULT_MAX_PAUSE_SECONDS

    @classmethod
    def of(cls, policy: Policy | None) -> Wanted:
        """The policy's settings (a deleted policy's run takes a crash-consistent backup)."""
        if policy is None:
            return cls()
        return cls(policy.consistency, policy.fallback, policy.max_pause_seconds)


@dataclass(frozen=True)
class Obtained:
    level: ConsistencyLevel
    detail: str


class WholeServer:
    """Takes (or resumes) the snapshot step of a whole-server backup."""

    def __init__(
        self,
        store: Store,
        cloud: Cloud,
        clock: Clock,
        settings: EngineSettings,
        note: Note,
    ) -> None:
        self.store = store
        self.cloud = cloud
        self.clock = clock
        self.settings = settings
        self.note = note

    # -- entry points ----------------------------------------------------------------

    def take(
        self,
        run: Run,
        backup: Backup,
        server: ServerInfo,
        policy: Wanted,
        stamp: Mapping[str, str],
        name: str,
    ) -> str:
        """Snapshot the server and its volumes at the policy's level; the step's detail."""
        volumes = self._volumes_at_backup(backup, server)
        plan = self._plan_groups(volumes)
        approach = choose_approach(
            policy.consistency,
            policy.fallback,
            server_status=server.status,
            boot_properties=(
                self.cloud.boot_properties(server.id)
                if policy.consistency is ConsistencyLevel.QUIESCED
                else {}
            ),
            volume_backed=server.volume_backed,
            data_volumes=len(volumes),
        )
        paused_at: datetime | None = None
        if approach.action is Action.PAUSE:
            approach, paused_at = self._pause(run, server, policy)
        if approach.action is Action.FAIL:
            raise RunFailed(_cannot(policy, approach.reason))
        try:
            refs, spread, groups = self._start(run, backup, server, plan, stamp, name)
            failpoint("after-snapshots-requested")
            if paused_at is not None:
                obtained = self._hold_then_unpause(run, server.id, refs, paused_at, policy)
            else:
                obtained = _without_pause(approach, spread, 1 + len(volumes))
        except Exception:
            if paused_at is not None:  # never leave the server paused (a dead worker's
                self._unpause(run, server.id, paused_at, "after an error")  # takeover does)
            raise
        if groups:
            obtained = Obtained(obtained.level, f"{obtained.detail}; {groups}")
        self._record(run, backup, obtained)
        return f"image and {len(volumes)} volume snapshot(s) requested: " + ", ".join(
            ref.id for ref in refs
        )

    def resume(
        self,
        run: Run,
        backup: Backup,
        server: ServerInfo,
        policy: Wanted,
        stamp: Mapping[str, str],
        name: str,
    ) -> str:
        """Resume a step another attempt began: unpause first, then make what is missing."""
        found = self.cloud.find_artifacts({MARKER_RUN: run.id})
        volumes = self._volumes_at_backup(backup, server)
        taken_while_paused: bool | None = None
        pending = pause_pending(self.store.get_run(run.id).steps)
        if pending is not None:
            prior, asked_at = pending
            taken_while_paused = self._all_taken(found, volumes)
            server = self._takeover_unpause(run, server, prior, asked_at)
        if not found:  # nothing was made yet: take it as if for the first time
            return self.take(run, backup, server, policy, stamp, name)
        found = self._stamp_members(run, found, stamp)
        for info in found:
            self._record_artifact(run, backup, info.ref, info.status)
        made = self._make_missing(run, backup, server, found, volumes, stamp, name)
        obtained = self._resumed_level(backup, pending, taken_while_paused, made)
        if _asked_more(policy, obtained) and policy.fallback is Fallback.FAIL:
            raise RunFailed(_cannot(policy, obtained.detail))
        self._record(run, backup, obtained)
        ids = [info.ref.id for info in found] + [ref.id for ref in made]
        return "resumed: found " + ", ".join(ids)

    # -- pausing ---------------------------------------------------------------------

    def _pause(
        self, run: Run, server: ServerInfo, policy: Wanted
    ) -> tuple[Approach, datetime | None]:
        asked = self.clock.now()
        self.store.update_run(
            run.id,
            run.attempt,
            step=self.note(PAUSE_STEP, asked, REQUESTED, f"server {server.id} was {server.status}"),
        )
        try:
            self.cloud.pause_server(server.id)
        except (CloudBusy, CloudRejected) as error:
            self.store.update_run(
                run.id,
                run.attempt,
                step=self.note(PAUSE_STEP, asked, REFUSED, f"{error.code}: {error.message}"),
            )
            return fall_back(policy.fallback, f"Nova refused to pause it ({error.message})"), None
        failpoint("after-pause")
        deadline = asked + timedelta(seconds=policy.max_pause_seconds)
        while (status := self.cloud.server_status(server.id)) != "PAUSED":
            if self.clock.now() >= deadline:
                with contextlib.suppress(CloudBusy):  # a pause still under way: undo it
                    self.cloud.unpause_server(server.id)
                self._end_pause(run, asked, f"never shown PAUSED (still {status})")
                why = f"it was not shown PAUSED within {policy.max_pause_seconds}s"
                return fall_back(policy.fallback, why), None
            self._sleep(run, deadline)
        paused_at = self.clock.now()
        self.store.update_run(
            run.id,
            run.attempt,
            step=self.note(PAUSE_STEP, asked, "ok", f"server {server.id} PAUSED"),
        )
        return Approach(Action.PAUSE, ConsistencyLevel.PAUSED), paused_at

    def _hold_then_unpause(
        self,
        run: Run,
        server_id: str,
        refs: Sequence[ArtifactRef],
        paused_at: datetime,
        policy: Wanted,
    ) -> Obtained:
        """Keep the server paused until no snapshot needs it, at most ``max_pause``.

        Nova itself refuses to unpause while its snapshot task runs (409), so an image
        still being taken at ``max_pause`` keeps the server paused until it is taken; only
        a volume snapshot Cinder had not taken by then makes the backup crash-consistent.
        """
        deadline = paused_at + timedelta(seconds=policy.max_pause_seconds)
        watched = list(refs)
        while True:
            infos = self.cloud.artifact_statuses(watched)
            children = [c for info in infos.values() for c in info.children if c not in watched]
            if children:  # a volume-backed server's volumes, snapshotted by Nova
                watched += children
                continue
            waiting = [r for r, info in infos.items() if still_needs_pause(info.raw_status)]
            if not waiting or self.clock.now() >= deadline:
                break
            self._sleep(run, deadline)
        held = self._unpause(run, server_id, paused_at, "")
        volumes = [r.id for r in waiting if r.kind is not ArtifactKind.IMAGE]  # Nova waits for
        # its image before it unpauses; Cinder's snapshots do not hold the pause
        if volumes:
            return Obtained(
                ConsistencyLevel.CRASH,
                f"unpaused at --max-pause ({policy.max_pause_seconds}s) before "
                f"{', '.join(volumes)} was taken: crash-consistent (paused {held:.1f}s)",
            )
        longer = (
            f", longer than --max-pause ({policy.max_pause_seconds}s): Nova keeps a server "
            "paused until its image is taken"
            if held > policy.max_pause_seconds
            else ""
        )
        return Obtained(
            ConsistencyLevel.PAUSED,
            f"server paused {held:.1f}s while {len(watched)} snapshot(s) were taken{longer}",
        )

    def _unpause(self, run: Run, server_id: str, paused_at: datetime, why: str) -> float:
        try:
            refused = self._unpause_when_nova_lets(run, server_id)
        except CloudError as error:  # journal keeps the pause pending: the next attempt unpauses
            log.warning("run %s: unpausing %s failed: %s", run.id, server_id, error.message)
            if why:
                return 0.0
            raise
        held = (self.clock.now() - paused_at).total_seconds()
        waited = " (Nova refused to unpause until its snapshot task ended)" if refused else ""
        self._end_pause(run, paused_at, f"paused {held:.1f}s{' ' + why if why else ''}{waited}")
        return held

    def _unpause_when_nova_lets(self, run: Run, server_id: str) -> bool:
        """Unpause; while Nova refuses because a snapshot task of the server runs (409), wait
        and ask again (up to ``wait_timeout``). Whether it refused at first."""
        deadline = self.clock.now() + self.settings.wait_timeout
        refused = False
        while True:
            try:
                self.cloud.unpause_server(server_id)
                return refused
            except CloudBusy:
                if self.cloud.server_status(server_id) != "PAUSED":
                    return refused  # unpaused meanwhile (by hand): nothing left to do
                if self.clock.now() >= deadline:
                    raise
                refused = True
                self._sleep(run, deadline)

    def _end_pause(self, run: Run, started: datetime, detail: str) -> None:
        self.store.update_run(
            run.id, run.attempt, step=self.note(UNPAUSE_STEP, started, "ok", detail)
        )

    def _takeover_unpause(
        self, run: Run, server: ServerInfo, prior: str, asked_at: datetime
    ) -> ServerInfo:
        status = self.cloud.server_status(server.id)
        if status == "PAUSED" and prior != "PAUSED":
            self._unpause_when_nova_lets(run, server.id)
            held = (self.clock.now() - asked_at).total_seconds()
            detail = (
                f"unpaused by the takeover after {held:.1f}s: the worker that paused it stopped"
            )
        else:
            detail = f"server is {status} (was {prior} before the pause): nothing to unpause"
        self._end_pause(run, asked_at, detail)
        return self.cloud.get_server(server.id)

    def _sleep(self, run: Run, deadline: datetime) -> None:
        """Wait a little for the cloud, still holding the run's lease."""
        now = self.clock.now()
        self.store.renew_lease(run.id, run.attempt, now=now, until=now + self.settings.lease)
        left = (deadline - now).total_seconds()
        self.clock.sleep(max(0.0, min(self.settings.pause_poll_interval.total_seconds(), left)))

    # -- snapshots -------------------------------------------------------------------

    def _plan_groups(self, volumes: Sequence[str]) -> GroupPlan:
        """Which volumes go as one Cinder group snapshot (their group's type promises
        consistent group snapshots and the group holds nothing else), which one by one."""
        if not volumes or not isinstance(self.cloud, GroupCloud):
            return GroupPlan((), tuple(volumes))
        try:
            groups = self.cloud.volume_groups_of(volumes)
        except (CloudRejected, CloudNotFound) as error:  # e.g. no group API at this version
            return GroupPlan((), tuple(volumes), (f"groups not readable: {error.message}",))
        return plan_groups(volumes, groups)

    def _start(
        self,
        run: Run,
        backup: Backup,
        server: ServerInfo,
        plan: GroupPlan,
        stamp: Mapping[str, str],
        name: str,
    ) -> tuple[list[ArtifactRef], float, str]:
        """The image, then each group snapshot and each other volume's snapshot, one right
        after another; their spread, and what the backup says of its volumes."""
        first = self.clock.now()
        self._still_ours(run)
        refs = [self._start_image(run, backup, server, stamp, name)]
        last = first
        taken: dict[str, VolumeGroup] = {}
        alone = list(plan.alone)
        why_alone = list(plan.why_alone)
        for group in plan.groups:
            last = self.clock.now()
            try:
                made = self._start_group(run, backup, group, stamp, name)
            except CloudRejected as error:  # its type changed since it was read
                why_alone.append(f"Cinder refused a group snapshot of {group.id}: {error.message}")
                alone.extend(group.volume_ids)
                continue
            taken[made.ref.id] = group
            refs += [made.ref, *made.members.values()]
        for volume_id in alone:
            last = self.clock.now()
            refs.append(self._start_volume(run, backup, volume_id, stamp, name))
        said = groups_detail(taken, GroupPlan(plan.groups, tuple(alone), tuple(why_alone)))
        return refs, (last - first).total_seconds(), said

    def _start_group(
        self, run: Run, backup: Backup, group: VolumeGroup, stamp: Mapping[str, str], name: str
    ) -> GroupSnapshot:
        """One group snapshot (its markers in its description: Cinder keeps no metadata on
        it); each member snapshot stamped like a volume snapshot of this backup."""
        assert isinstance(self.cloud, GroupCloud)
        made = self.cloud.create_group_snapshot(
            group.id, volume_snapshot_name(name, group.id), description(stamp, full=True)
        )
        self._record_artifact(run, backup, made.ref, ArtifactStatus.PENDING)
        failpoint("after-group-snapshot")
        for volume_id, member in made.members.items():
            self.cloud.set_artifact_metadata(member, {**stamp, MARKER_VOLUME: volume_id})
            self._record_artifact(run, backup, member, ArtifactStatus.PENDING)
        return made

    def _start_image(
        self, run: Run, backup: Backup, server: ServerInfo, stamp: Mapping[str, str], name: str
    ) -> ArtifactRef:
        ref = self.cloud.start_server_image(server.id, name, {**stamp, MARKER_IMAGE_ID: ""})
        self._record_artifact(run, backup, ref, ArtifactStatus.PENDING)
        return ref

    def _start_volume(
        self, run: Run, backup: Backup, volume_id: str, stamp: Mapping[str, str], name: str
    ) -> ArtifactRef:
        ref = self.cloud.snapshot_volume(
            volume_id, volume_snapshot_name(name, volume_id), {**stamp, MARKER_VOLUME: volume_id}
        )
        self._record_artifact(run, backup, ref, ArtifactStatus.PENDING)
        return ref

    def _still_ours(self, run: Run) -> None:
        """A worker whose lease was taken over must not start a second set of snapshots."""
        now = self.clock.now()
        self.store.renew_lease(run.id, run.attempt, now=now, until=now + self.settings.lease)

    def _record_artifact(
        self, run: Run, backup: Backup, ref: ArtifactRef, status: ArtifactStatus
    ) -> None:
        self.store.add_artifact(
            backup.id,
            ref.kind,
            ref.id,
            status=status,
            now=self.clock.now(),
            fence=(run.id, run.attempt),
        )

    def _record(self, run: Run, backup: Backup, obtained: Obtained) -> None:
        self.store.update_backup(
            backup.id,
            consistency=obtained.level.value,
            consistency_detail=obtained.detail,
            fence=(run.id, run.attempt),
        )

    # -- resuming --------------------------------------------------------------------

    def _volumes_at_backup(self, backup: Backup, server: ServerInfo) -> tuple[str, ...]:
        """The volumes attached when the backup was recorded (they may have changed since)."""
        if server.volume_backed:
            return ()
        spec = self.store.restore_source(backup.id)
        if spec is None:
            return own_volumes(server)
        return tuple(v.volume_id for v in spec.volumes if v.volume_id)

    def _all_taken(self, found: Sequence[ArtifactInfo], volumes: Sequence[str]) -> bool:
        """Everything the backup needs exists, and none of it still needs the pause."""
        if not any(info.ref.kind is ArtifactKind.IMAGE for info in found):
            return False
        if set(volumes) - _snapshotted(found):
            return False
        children = [child for info in found for child in info.children]
        infos = list(found) + list(self.cloud.artifact_statuses(children).values())
        return not any(still_needs_pause(info.raw_status) for info in infos)

    def _stamp_members(
        self, run: Run, found: list[ArtifactInfo], stamp: Mapping[str, str]
    ) -> list[ArtifactInfo]:
        """Stamp the members of a group snapshot the stopped worker made but had not stamped
        yet (Cinder makes them unmarked), so that their volumes are not snapshotted again."""
        groups = [i.ref.id for i in found if i.ref.kind is ArtifactKind.GROUP_SNAPSHOT]
        if not groups or not isinstance(self.cloud, GroupCloud):
            return found
        stamped = {info.ref for info in found}
        missing = False
        for group_snapshot in groups:
            for volume_id, member in self.cloud.group_snapshot_members(group_snapshot).items():
                if member not in stamped:
                    self.cloud.set_artifact_metadata(member, {**stamp, MARKER_VOLUME: volume_id})
                    missing = True
        return self.cloud.find_artifacts({MARKER_RUN: run.id}) if missing else found

    def _make_missing(
        self,
        run: Run,
        backup: Backup,
        server: ServerInfo,
        found: Sequence[ArtifactInfo],
        volumes: Sequence[str],
        stamp: Mapping[str, str],
        name: str,
    ) -> list[ArtifactRef]:
        made: list[ArtifactRef] = []
        if not any(info.ref.kind is ArtifactKind.IMAGE for info in found):
            self._still_ours(run)
            made.append(self._start_image(run, backup, server, stamp, name))
        done = _snapshotted(found)
        for volume_id in volumes:
            if volume_id not in done:
                made.append(self._start_volume(run, backup, volume_id, stamp, name))
        return made

    @staticmethod
    def _resumed_level(
        backup: Backup,
        pending: tuple[str, datetime] | None,
        taken_while_paused: bool | None,
        made: Sequence[ArtifactRef],
    ) -> Obtained:
        if made:
            return Obtained(
                ConsistencyLevel.CRASH,
                f"resumed after its worker stopped: {len(made)} snapshot(s) taken later, "
                "without a pause",
            )
        if pending is not None:
            if taken_while_paused:
                return Obtained(
                    ConsistencyLevel.PAUSED,
                    "every snapshot was taken while paused; the worker stopped mid-pause "
                    "and the takeover unpaused the server",
                )
            return Obtained(
                ConsistencyLevel.CRASH,
                "the worker stopped mid-pause before every snapshot was taken; "
                "the takeover unpaused the server",
            )
        if backup.consistency is not None:  # recorded by the attempt that took them
            return Obtained(ConsistencyLevel(backup.consistency), backup.consistency_detail or "")
        return Obtained(ConsistencyLevel.CRASH, "resumed after its worker stopped")


def _snapshotted(found: Sequence[ArtifactInfo]) -> set[str]:
    return {
        info.metadata[MARKER_VOLUME]
        for info in found
        if info.ref.kind is ArtifactKind.VOLUME_SNAPSHOT and info.metadata.get(MARKER_VOLUME)
    }


def _without_pause(approach: Approach, spread: float, count: int) -> Obtained:
    if approach.action is Action.ALREADY_PAUSED:
        return Obtained(
            ConsistencyLevel.PAUSED, "the server was already PAUSED before the run; left paused"
        )
    if approach.action is Action.QUIESCE:
        return Obtained(
            ConsistencyLevel.QUIESCED,
            "guest agent enabled and quiesce required: Nova quiesced the guest while it "
            "snapshotted every volume",
        )
    detail = spread_detail(spread, count)
    return Obtained(
        ConsistencyLevel.CRASH, f"{approach.reason}; {detail}" if approach.reason else detail
    )


def _asked_more(policy: Wanted, obtained: Obtained) -> bool:
    return policy.consistency is not ConsistencyLevel.CRASH and obtained.level is (
        ConsistencyLevel.CRASH
    )


def _cannot(policy: Wanted, why: str) -> str:
    return (
        f"consistency {policy.consistency.value} cannot be had: {why} "
        "(the policy's fallback is to fail)"
    )
