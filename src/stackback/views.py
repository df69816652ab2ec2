"""The stable shapes of policies, schedules, runs, backups and artifacts for every face.

Pure functions from records to plain dicts (datetimes and enums left as they are:
each face encodes them). ``-f json`` prints them and an HTTP API returns them;
a field has one shape wherever it appears. Keys are a contract: add keys, never
rename one or change its meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from stackback.alerts import Delivery
from stackback.policy import Artifact, Backup, Policy, Run, Step
from stackback.records import Credential, CredentialUsage
from stackback.restoreplan import RestoreJob, RestorePlan
from stackback.services.backups import PreviewRow
from stackback.services.policies import PolicyView, ScheduleView
from stackback.services.servers import Coverage
from stackback.services.status import TargetReport
from stackback.verification import Verification

PROTECTED_REASON = "protected"
"""Why retention keeps a protected backup (it never counts or deletes one)."""


def schedule_view(schedule: ScheduleView) -> dict[str, Any]:
    """A cron schedule and when it fires next (in the policy's zone and in UTC)."""
    return {
        "cron": schedule.cron,
        "next_run": schedule.next_local,
        "next_run_utc": schedule.next_utc,
        "last_fired_at": schedule.last_fired_at,
        "deferred_occurrence": schedule.deferred_occurrence,
        "retry_at": schedule.retry_at,
    }


def policy_summary(view: PolicyView) -> dict[str, Any]:
    """A policy in a list; its schedules are objects, as in ``policy_detail``."""
    policy = view.policy
    return {
        "id": policy.id,
        "name": policy.name,
        "kind": policy.kind.value,
        "targets": list(policy.targets),
        "selector": str(policy.selector) if policy.selector else None,
        "schedules": [schedule_view(s) for s in view.schedules],
        "timezone": policy.timezone,
        "window_minutes": policy.window_minutes,
        "retention": dict(policy.retention.to_dict()),
        "retention_description": policy.retention.describe(),
        "enabled": policy.enabled,
        "cloud": policy.cloud,
        "label": policy.label,
        "consistency": policy.consistency.value,
        "fallback": policy.fallback.value,
        "max_pause_seconds": policy.max_pause_seconds,
        "orphans": str(policy.orphans),
        "full_every": policy.full_every,
        "full_cron": policy.full_cron,
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
        "verify": verify_settings_view(view),
        "last_verification": last_verification_view(view),
        "project": policy.project,
    }


def verify_settings_view(view: PolicyView) -> dict[str, Any] | None:
    """A policy's verify schedule and when it next fires (None: it has none)."""
    verify = view.policy.verify
    if verify is None:
        return None
    return {
        "cron": verify.cron,
        "flavor": verify.flavor,
        "network": verify.network,
        "pick": verify.pick,
        "next_run_utc": view.verify_next,
    }


def verification_view(verification: Verification | None) -> dict[str, Any] | None:
    """A backup's last verification: passed or failed, why, when, and the time to ACTIVE."""
    if verification is None:
        return None
    return {
        "result": verification.result.value,
        "reason": verification.reason,
        "verified_at": verification.at,
        "active_seconds": verification.active_seconds,
        "restore_id": verification.restore_id,
    }


def last_verification_view(view: PolicyView) -> dict[str, Any] | None:
    """A policy's most recent verification, with the id of the backup it verified."""
    last = view.last_verification
    return {"backup_id": last[0], **(verification_view(last[1]) or {})} if last else None


def policy_detail(view: PolicyView) -> dict[str, Any]:
    """One policy: the summary's keys (with its verify schedule and last verification)."""
    return policy_summary(view)


def artifact_view(artifact: Artifact) -> dict[str, Any]:
    """A cloud object of a backup; ``id`` is its id in the cloud service."""
    return {
        "kind": artifact.kind.value,
        "id": artifact.cloud_id,
        "status": artifact.status.value,
        "size": artifact.size,
        "error": artifact.error,
        "delete_attempts": artifact.delete_attempts,
    }


def backup_reasons(backup: Backup) -> list[str]:
    """Why the backup is kept: a protected one is kept for that, as retention preview says."""
    if backup.protected:
        return [PROTECTED_REASON]
    return list(backup.reasons)


def backup_summary(backup: Backup) -> dict[str, Any]:
    """A backup with its artifacts (the same shape in lists, ``show`` and ``delete``)."""
    return {
        "id": backup.id,
        "target": backup.target,
        "target_name": backup.target_name,
        "policy": backup.policy_name,
        "policy_id": backup.policy_id,
        "label": backup.label,
        "kind": backup.kind.value,
        "status": backup.status.value,
        "protected": backup.protected,
        "created_at": backup.created_at,
        "completed_at": backup.completed_at,
        "deleted_at": backup.deleted_at,
        "reasons": backup_reasons(backup),
        "run_id": backup.run_id,
        "error": backup.error,
        "deletion_run_id": backup.deletion_run_id,
        "deletion_guarded": backup.deletion_guarded,
        "artifacts": [artifact_view(a) for a in backup.artifacts],
        "consistency": backup.consistency,
        "consistency_detail": backup.consistency_detail,
        "verification": verification_view(backup.verification),
        "orphaned": backup.orphaned,
        "source_last_seen_at": _last_seen(backup),
        "source_gone_at": backup.source_gone_at,
        "parent_id": backup.parent_id,
        "project": backup.project,
    }


def _last_seen(backup: Backup) -> Any:
    """When the backup's server was last known to exist: last checked, or the backup itself."""
    known = [t for t in (backup.source_last_seen_at, backup.created_at) if t is not None]
    return max(known) if known else None


def backup_detail(
    backup: Backup, chain: tuple[Sequence[str], Sequence[str]] | None = None
) -> dict[str, Any]:
    """One backup: the summary's keys; given its chain (``BackupService.chain``, a chained
    kind's ``show``), also ``chain``, the ids it depends on (its full backup first, then each
    increment down to its parent), and ``children``, the ids of the live backups that are
    increments of it."""
    data = backup_summary(backup)
    if chain is not None:
        depends_on, children = chain
        data["chain"] = list(depends_on)
        data["children"] = list(children)
    return data


def run_tries(run: Run) -> int:
    """How many times the run has tried (0 before it started): 1 plus its recorded retries.

    Not the lease's fencing token (``Run.attempt``), which counts every claim: a
    run that succeeded at its first try is claimed once to start and again to
    check its image.
    """
    if run.started_at is None and not run.steps:
        return 0
    return 1 + sum(1 for step in run.steps if step.outcome == "retry")


def step_view(step: Step) -> dict[str, Any]:
    """One journal entry of a run; ``attempt`` is the lease it was written under."""
    return {
        "name": step.name,
        "attempt": step.attempt,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "outcome": step.outcome,
        "detail": step.detail,
    }


def run_summary(run: Run) -> dict[str, Any]:
    """A run in a list; ``target_name`` is known once the run has started."""
    return {
        "id": run.id,
        "policy": run.policy_name,
        "policy_id": run.policy_id,
        "target": run.target,
        "target_name": run.target_name,
        "trigger": run.trigger,
        "label": run.label,
        "state": run.state.value,
        "scheduled_for": run.scheduled_for,
        "due_at": run.due_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "attempt": run_tries(run),
        "backup_id": run.backup_id,
        "error": run.error,
        "error_id": run.error_id,
        "next_try_at": run.not_before if not run.state.is_terminal else None,
        "project": run.project,
    }


def run_detail(run: Run) -> dict[str, Any]:
    """One run with its lease (who holds it, until when) and its step journal."""
    data = run_summary(run)
    data["lease_owner"] = run.lease_owner
    data["lease_expires_at"] = run.lease_expires_at
    data["lease_attempt"] = run.attempt
    data["steps"] = [step_view(s) for s in run.steps]
    return data


def plan_view(plan: RestorePlan, backup_id: str) -> dict[str, Any]:
    """A plan: what will be created, from which artifact, with which flavor and network."""
    source = f"image {plan.image_id}" if plan.image_id else "volume snapshots"
    creates = [f"server {plan.name} ({plan.flavor}) from {source}"]
    if plan.database is not None:
        db = plan.database
        creates = [
            f"database instance {plan.name} ({plan.flavor}, {db.volume_size} GB, "
            f"{db.datastore} {db.datastore_version}) from Trove backup {db.backup_ref}"
        ]
    if plan.mode.value == "in-place":
        rebuilt = f"server {plan.server_id} rebuilt from image {plan.image_id}"
        creates = [rebuilt if plan.volumes else f"nothing: {rebuilt}"]
    creates += [
        f"volume {v.device_name or '?'} ({v.size_gb} GiB) from snapshot {v.snapshot_id}"
        for v in plan.volumes
    ]
    return {"backup_id": backup_id, "creates": creates, **plan.to_dict()}


def restore_view(job: RestoreJob) -> dict[str, Any]:
    """A restore job, its plan, what it created, and its journal."""
    return {
        "id": job.id,
        "backup_id": job.backup_id,
        "project": job.project,
        "mode": job.mode.value,
        "state": job.state.value,
        "name": job.plan.name,
        "server_id": job.server_id,
        "flavor": job.plan.flavor,
        "image_id": job.plan.image_id,
        "networks": [n.network for n in job.plan.networks],
        "created": [{"kind": c.kind, "id": c.id, "item": c.item} for c in job.created],
        "error": job.error,
        "error_id": job.error_id,
        "cancel_requested": job.cancel_requested,
        "attempt": job.attempt,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "deadline_at": job.deadline_at,
        "notes": list(job.plan.notes),
        "checks": job.plan.checks.to_dict() if job.plan.checks else None,
        "verify_result": job.verify_result,
        "verify_reason": job.verify_reason,
        "active_seconds": job.active_seconds,
        "plan": job.plan.to_dict(),
        "steps": [
            {
                "name": s.name,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "outcome": s.outcome,
                "detail": s.detail,
                "attempt": s.attempt,
            }
            for s in job.steps
        ],
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    """One alert sent (or not) to one channel, as recorded."""
    subject = delivery.subject
    return {
        "channel": delivery.channel,
        "event": delivery.event.value,
        "condition": delivery.condition.value,
        "policy": subject.policy,
        "target": subject.target,
        "target_name": subject.target_name,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "detail": delivery.detail,
        "at": delivery.at,
        "summary": delivery.payload.get("summary"),
    }


def credential_view(credential: Credential, usage: CredentialUsage) -> dict[str, Any]:
    """A stored credential and what acts through it; never its secret (not even sealed)."""
    return {
        "id": credential.id,
        "kind": credential.kind.value,
        "project": credential.project_id,
        "user": credential.user_id,
        "keystone_id": credential.keystone_id,
        "status": credential.state.value,
        "policies": list(usage.policies),
        "backups": usage.backups,
        "runs": usage.runs,
        "restores": usage.restores,
        "created_at": credential.created_at,
        "retired_at": credential.retired_at,
        "revoked_at": credential.revoked_at,
        "detail": credential.detail,
    }


def status_view(report: TargetReport) -> dict[str, Any]:
    """One target's RPO status: its newest good backup against its policy's schedule."""
    return {
        "policy": report.policy.name,
        "policy_id": report.policy.id,
        "target": report.target,
        "target_name": report.target_name,
        "verdict": report.verdict.value,
        "reason": report.reason,
        "newest_good_at": report.newest_good_at,
        "age_seconds": int(report.age.total_seconds()) if report.age is not None else None,
        "due_since": report.due_since,
        "enabled": report.policy.enabled,
    }


def preview_view(row: PreviewRow) -> dict[str, Any]:
    """One backup in a retention preview: kept or forgotten now, and why."""
    return {
        "backup": row.backup.id,
        "target": row.backup.target_name or row.backup.target,
        "created_at": row.backup.created_at,
        "action": row.action,
        "reasons": list(row.reasons),
        "parent_id": row.backup.parent_id,
    }


def covering_policies(
    covered: Coverage, view_of: Callable[[Policy], PolicyView]
) -> list[dict[str, Any]]:
    """The policies that back a server up, each with how it covers the server."""
    selector_covers = (
        "its metadata has {} (checked now)"
        if covered.server
        else "if its metadata has {} (resolved at run time)"
    )
    return [{**policy_summary(view_of(p)), "covers": "explicitly"} for p in covered.explicit] + [
        {**policy_summary(view_of(p)), "covers": selector_covers.format(p.selector)}
        for p in covered.by_selector
    ]


def jsonable(value: Any) -> Any:
    """A view's value as JSON has it: times in ISO 8601, enums as their values (every face)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return value
