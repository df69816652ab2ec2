"""Backups: list, show, protect, delete, take one now, and preview retention."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from stackback.chains import ancestors, live_children
from stackback.engine.collector import Collector
from stackback.errors import CloudError, Conflict, InvalidInput
from stackback.policy import (
    CHAINED_KINDS,
    LABEL_MAX,
    NAME_MAX,
    ArtifactStatus,
    Backup,
    BackupStatus,
    Run,
    check_given,
    check_length,
    server_label,
)
from stackback.ports import ArtifactRef, Clock, CloudResolver, Store
from stackback.records import BackupFilter, TargetBackups
from stackback.retention import RetentionPolicy
from stackback.safety import (
    DeletionRequest,
    RotationRequest,
    RotationScope,
    judge_deletion,
    plan_rotation,
)
from stackback.schedule import parse_timezone
from stackback.services.policies import with_current_policy_names
from stackback.services.servers import ServerDirectory

MANUAL_LABEL = "manual"


@dataclass(frozen=True)
class PreviewRow:
    """One backup in a retention preview and what the policy would do with it."""

    backup: Backup
    action: str
    reasons: tuple[str, ...]


class BackupService:
    """Recovery points as the operator sees them."""

    def __init__(
        self,
        store: Store,
        clouds: CloudResolver,
        clock: Clock,
        *,
        release_credential: Callable[[str | None], object] | None = None,
    ) -> None:
        self.store = store
        self.clouds = clouds
        self.clock = clock
        self.release_credential = release_credential
        """Told the cloud of a deleted backup: revokes a stored credential nothing needs
        any more (keystone mode); None: nothing to do."""

    def list_backups(
        self,
        *,
        server: str | None = None,
        policy: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        project: str | None = None,
        marker: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Backup]:
        """Backups newest first (all of them unless ``limit``; only ``project``'s if given;
        created from ``since`` until before ``until``; the page after the backup ``marker``);
        an empty filter is refused. A policy of another project is not found."""
        check_given(server, "--server")
        check_given(policy, "--policy")
        policy_id = None
        if policy:
            policy_id = self.store.get_policy(policy, project=project).id
        return with_current_policy_names(
            self.store,
            self.store.list_backups(
                BackupFilter(
                    target=server,
                    policy_id=policy_id,
                    include_deleted=include_deleted,
                    limit=limit,
                    project=project,
                    marker=marker,
                    since=since,
                    until=until,
                )
            ),
        )

    def get(self, ref: str, *, project: str | None = None) -> Backup:
        """A backup by id or a unique prefix of it (among ``project``'s, if given)."""
        backup = self.store.get_backup(ref, project=project)
        return with_current_policy_names(self.store, [backup])[0]

    def chain(
        self, backup: Backup, *, project: str | None = None
    ) -> tuple[list[str], list[str]] | None:
        """The backup's chain: the ids it depends on (its full backup first, then each
        increment down to its parent), and the ids of the backups that increment it; None
        for a kind without chains. Only ``project``'s backups are looked at, if given (a
        parent outside it is one stackback does not know here)."""
        if backup.kind not in CHAINED_KINDS:
            return None
        known = self.store.list_backups(
            BackupFilter(target=backup.target, include_deleted=True, limit=None, project=project)
        )
        line = [backup, *ancestors(backup, known)]
        parents = [b.id for b in reversed(line[1:])]
        if line[-1].parent_id is not None:  # reaches a parent stackback does not know
            parents.insert(0, line[-1].parent_id)
        return parents, [b.id for b in live_children(backup, known)]

    def protect(self, ref: str, protected: bool = True) -> Backup:
        return with_current_policy_names(self.store, [self.store.set_protected(ref, protected)])[0]

    def delete(self, ref: str, *, force: bool = False) -> Backup:
        """Delete a backup's cloud artifacts (a recorded request, finished now if possible).

        Refused without ``force`` for a protected backup and for the last good
        (available) backup of its target (``stackback.safety.judge_deletion``, with
        the target's backups locked), and the collector checks it again just before
        deleting anything, so a concurrent rotation or a second ``delete`` cannot
        both pass and leave the target without a good backup. ``force``
        (``backup delete --force``) is the operator's explicit override: it
        unprotects the backup and lets it go even if it is the target's last good
        one, and the collector does not re-check a forced deletion.
        """
        backup = self.store.get_backup(ref)
        if backup.status is BackupStatus.DELETED:
            return backup
        taken_by = None
        if backup.status is BackupStatus.CREATING and backup.run_id:
            run = self.store.get_run(backup.run_id)
            taken_by = None if run.state.is_terminal else run.id
        if not force and backup.status is BackupStatus.AVAILABLE:
            self._recheck_the_others(backup)
        request = DeletionRequest(
            backup.id, force=force, reasons=("deleted by the operator",), taken_by_run=taken_by
        )
        verdict = self.store.decide_for_target(
            backup.target, partial(judge_deletion, request), include=(backup.id,)
        )
        if verdict.refusal is not None:
            raise Conflict(verdict.refusal)
        Collector(
            self.store, self.clouds, self.clock, release_credential=self.release_credential
        ).collect([backup], strict=True)
        return self.store.get_backup(backup.id)

    def _recheck_the_others(self, backup: Backup) -> None:
        """Ask the cloud whether the target's other good backups are still whole.

        The last-good-backup rule counts what the catalogue says; an image deleted
        behind stackback's back would make a backup count that cannot be restored.
        Such a backup is recorded failed here, before the rule is applied.
        """
        others = [
            b
            for b in self.store.list_backups(
                BackupFilter(target=backup.target, statuses=(BackupStatus.AVAILABLE,), limit=None)
            )
            if b.id != backup.id and b.target == backup.target
        ]
        by_cloud: dict[str | None, dict[ArtifactRef, Backup]] = defaultdict(dict)
        for other in others:
            for artifact in other.artifacts:
                by_cloud[other.cloud][ArtifactRef(artifact.kind, artifact.cloud_id)] = other
        broken: dict[str, list[str]] = defaultdict(list)
        for cloud_name, refs in by_cloud.items():
            try:
                cloud = self.clouds(cloud_name)
            except InvalidInput:  # a cloud no longer configured: counted as recorded
                continue
            try:
                infos = cloud.artifact_statuses(list(refs))
            except CloudError as error:
                raise Conflict(
                    f"cannot check that {server_label(backup.target, backup.target_name)} keeps "
                    "another good backup "
                    f"({error.code}: {error.message}): try again, or use --force"
                ) from error
            for ref, other in refs.items():
                info = infos.get(ref)
                if info is None or info.status is not ArtifactStatus.AVAILABLE:
                    state = info.status.value if info is not None else "missing"
                    broken[other.id].append(f"{ref.kind.value} {ref.id} is {state}")
        for other_id, problems in broken.items():
            self.store.update_backup(
                other_id,
                status=BackupStatus.FAILED,
                error="found broken by backup delete: " + "; ".join(problems),
            )

    def backup_now(
        self,
        server: str,
        *,
        label: str | None,
        keep_last: int | None,
        cloud: str | None,
        offline: bool = False,
    ) -> Run:
        """An on-demand backup; ``keep_last`` rotates backups of the same label only.

        The named cloud is first asked whether the server exists (unless ``offline``), so
        that a typo or an unreachable cloud is reported now, not when the run starts; the
        run then belongs to the project the cloud says the server is in (otherwise it is
        given that project when it starts, see ``Runner``).
        """
        if keep_last is not None and keep_last < 1:
            raise InvalidInput("--keep-last must be at least 1", field="keep_last")
        check_given(server, "SERVER")
        check_length(server, NAME_MAX, "SERVER")
        check_given(label, "--type")
        label = check_length(label or MANUAL_LABEL, LABEL_MAX, "--type")
        if cloud is not None:
            check_length(cloud, NAME_MAX, "--os-cloud")
        retention = RetentionPolicy(last=keep_last).to_dict() if keep_last else None
        project = None
        if not offline and cloud is not None:
            project = ServerDirectory(self.clouds).require(server, cloud).project_id
        return self.store.create_manual_run(
            target=server,
            now=self.clock.now(),
            label=label,
            retention=retention,
            cloud=cloud,
            project=project,
        )

    def recent_good_backup(
        self, server: str, *, label: str | None, within: timedelta
    ) -> Backup | None:
        """The newest available backup of ``server`` (id or name) with ``label`` (default
        manual) taken less than ``within`` ago; None if there is none (``--min-interval``)."""
        if within <= timedelta(0):
            raise InvalidInput("--min-interval must be positive", field="min_interval")
        check_given(server, "SERVER")
        check_given(label, "--type")
        newest = self.store.list_backups(
            BackupFilter(
                target=server,
                label=label or MANUAL_LABEL,
                statuses=(BackupStatus.AVAILABLE,),
                limit=1,
            )
        )
        if newest and newest[0].created_at >= self.clock.now() - within:
            return newest[0]
        return None

    def preview(self, policy_ref: str) -> list[PreviewRow]:
        """What the policy's rotation would keep of its real backups now (deletes nothing).

        Planned as a run's rotation is (``stackback.safety.plan_rotation``), without
        a run's own backup or deletion budget.
        """
        policy = self.store.get_policy(policy_ref)
        backups = [  # and failed incrementals: forgotten with their parents
            b
            for b in self.store.list_backups(
                BackupFilter(
                    policy_id=policy.id,
                    statuses=(BackupStatus.AVAILABLE, BackupStatus.FAILED),
                    limit=None,
                )
            )
            if b.status is BackupStatus.AVAILABLE or b.parent_id is not None
        ]
        by_target: dict[str, list[Backup]] = defaultdict(list)
        for backup in backups:
            by_target[backup.target].append(backup)
        request = RotationRequest(
            rules=policy.retention,
            scope=RotationScope(policy_id=policy.id),
            now=self.clock.now(),
            tz=parse_timezone(policy.timezone),
        )
        rows: list[PreviewRow] = []
        for target in sorted(by_target):
            plan = plan_rotation(request, TargetBackups(target, tuple(by_target[target])))
            rows.extend(PreviewRow(backup, "keep", reasons) for backup, reasons in plan.keep)
            rows.extend(PreviewRow(backup, "forget", ()) for backup in plan.forget)
            rows.extend(PreviewRow(backup, "keep", (why,)) for backup, why in plan.held)
            rows.extend(PreviewRow(b, "keep", ("protected",)) for b in plan.protected)
        rows.sort(key=lambda r: (r.backup.target, -r.backup.created_at.timestamp()))
        return rows
