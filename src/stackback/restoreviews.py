"""JSON shapes of restore jobs and plans (the ``-f json`` keys of ``stackback restore``)."""

from __future__ import annotations

from typing import Any

from stackback.restoreplan import RestoreJob, RestorePlan


def plan_view(plan: RestorePlan, backup_id: str) -> dict[str, Any]:
    """A plan: what will be created, from which artifact, with which flavor and network."""
    source = f"image {plan.image_id}" if plan.image_id else "volume snapshots"
    creates = [f"server {plan.name} ({plan.flavor}) from {source}"]
    if plan.mode.value == "in-place":
        creates = [f"nothing: server {plan.server_id} rebuilt from image {plan.image_id}"]
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
