"""Conversions between table rows and domain objects."""

from __future__ import annotations

from stackback.consistency import DEFAULT_MAX_PAUSE_SECONDS, ConsistencyLevel, Fallback
from stackback.policy import (
    Artifact,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    OrphanRule,
    Policy,
    Run,
    RunState,
    Selector,
    Step,
)
from stackback.records import ScheduleState
from stackback.retention import RetentionPolicy
from stackback.store.models import (
    ArtifactRow,
    BackupRow,
    PolicyRow,
    RunRow,
    RunStepRow,
    ScheduleRow,
)
from stackback.verification import PICK_NEWEST, Verification, VerifyResult, VerifySettings


def policy_from_row(row: PolicyRow, schedules: list[str]) -> Policy:
    selector = (
        Selector(row.selector_key, row.selector_value or "")
        if row.selector_key is not None
        else None
    )
    return Policy(
        id=row.id,
        name=row.name,
        kind=BackupKind(row.kind),
        schedules=tuple(schedules),
        timezone=row.timezone,
        retention=RetentionPolicy.from_dict(row.retention),
        targets=tuple(row.targets),
        selector=selector,
        window_minutes=row.window_minutes,
        enabled=row.enabled,
        cloud=row.cloud,
        project=row.project,
        label=row.label,
        created_at=row.created_at,
        updated_at=row.updated_at,
        consistency=ConsistencyLevel(row.consistency or "crash"),
        fallback=Fallback(row.consistency_fallback or "crash"),
        max_pause_seconds=row.max_pause_seconds or DEFAULT_MAX_PAUSE_SECONDS,
        verify=VerifySettings(
            cron=row.verify_cron,
            flavor=row.verify_flavor,
            network=row.verify_network,
            pick=row.verify_pick or PICK_NEWEST,
        )
        if row.verify_cron
        else None,
        orphans=OrphanRule.parse(row.orphans or "keep"),
        full_every=row.full_every,
        full_cron=row.full_cron,
    )


def fill_policy_row(row: PolicyRow, policy: Policy) -> None:
    row.name = policy.name
    row.kind = policy.kind.value
    row.cloud = policy.cloud
    row.project = policy.project
    row.targets = list(policy.targets)
    row.selector_key = policy.selector.key if policy.selector else None
    row.selector_value = policy.selector.value if policy.selector else None
    row.timezone = policy.timezone
    row.window_minutes = policy.window_minutes
    row.retention = dict(policy.retention.to_dict())
    row.enabled = policy.enabled
    row.label = policy.label
    row.consistency = policy.consistency.value
    row.consistency_fallback = policy.fallback.value
    row.max_pause_seconds = policy.max_pause_seconds
    verify = policy.verify
    row.verify_cron = verify.cron if verify else None
    row.verify_flavor = verify.flavor if verify else None
    row.verify_network = verify.network if verify else None
    row.verify_pick = verify.pick if verify else None
    row.full_every = policy.full_every
    row.full_cron = policy.full_cron
    row.orphans = str(policy.orphans)
    row.full_every = policy.full_every
    row.full_cron = policy.full_cron


def schedule_from_row(row: ScheduleRow) -> ScheduleState:
    return ScheduleState(
        id=row.id,
        policy_id=row.policy_id,
        cron=row.cron,
        next_fire_at=row.next_fire_at,
        last_fired_at=row.last_fired_at,
        deferred_fire_at=row.deferred_fire_at,
    )


def step_from_row(row: RunStepRow) -> Step:
    return Step(
        name=row.name,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=row.outcome,
        detail=row.detail,
        attempt=row.attempt,
    )


def run_from_row(row: RunRow, steps: list[RunStepRow] | None = None) -> Run:
    return Run(
        id=row.id,
        policy_id=row.policy_id,
        target=row.target,
        scheduled_for=row.scheduled_for,
        due_at=row.due_at,
        state=RunState(row.state),
        attempt=row.attempt,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        not_before=row.not_before,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        error_id=row.error_id,
        backup_id=row.backup_id,
        target_name=row.target_name,
        server_id=row.server_id,
        host=row.host,
        trigger=row.trigger,
        policy_name=row.policy_name,
        label=row.label,
        cloud=row.cloud,
        retention=row.retention,
        steps=tuple(step_from_row(s) for s in steps or ()),
        created_at=row.created_at,
        project=row.project,
    )


def artifact_from_row(row: ArtifactRow) -> Artifact:
    return Artifact(
        id=row.id,
        backup_id=row.backup_id,
        kind=ArtifactKind(row.kind),
        cloud_id=row.cloud_id,
        status=ArtifactStatus(row.status),
        size=row.size,
        error=row.error,
        delete_attempts=row.delete_attempts,
        created_at=row.created_at,
        deleted_at=row.deleted_at,
    )


def backup_from_row(row: BackupRow, artifacts: list[ArtifactRow] | None = None) -> Backup:
    return Backup(
        id=row.id,
        target=row.target,
        kind=BackupKind(row.kind),
        status=BackupStatus(row.status),
        created_at=row.created_at,
        policy_id=row.policy_id,
        policy_name=row.policy_name,
        run_id=row.run_id,
        label=row.label,
        target_name=row.target_name,
        protected=row.protected,
        cloud=row.cloud,
        project=row.project,
        completed_at=row.completed_at,
        deleted_at=row.deleted_at,
        reasons=tuple(row.reasons or ()),
        error=row.error,
        artifacts=tuple(artifact_from_row(a) for a in artifacts or ()),
        deletion_run_id=row.deletion_run_id,
        deletion_guarded=row.deletion_guarded,
        consistency=row.consistency,
        consistency_detail=row.consistency_detail,
        source_last_seen_at=row.source_last_seen_at,
        source_gone_at=row.source_gone_at,
        parent_id=row.parent_id,
        verification=verification_from_row(row),
    )


def verification_from_row(row: BackupRow) -> Verification | None:
    if row.verify_result is None or row.verified_at is None:
        return None
    return Verification(
        result=VerifyResult(row.verify_result),
        at=row.verified_at,
        reason=row.verify_reason,
        active_seconds=row.verify_active_seconds,
        restore_id=row.verify_restore_id,
    )
