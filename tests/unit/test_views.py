"""The shapes every face shows: one per record kind, the same wherever a field appears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackback.policy import (
    Artifact,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
    Policy,
    Run,
    RunState,
    Selector,
    Step,
)
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyView, ScheduleView
from stackback.views import (
    artifact_view,
    backup_detail,
    backup_summary,
    policy_detail,
    policy_summary,
    run_detail,
    run_summary,
    schedule_view,
    step_view,
)

T0 = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
SCHEDULE = ScheduleView("0 1 * * *", T0, T0, None, None, None)
POLICY = Policy(
    id="p1",
    name="nightly",
    kind=BackupKind.SERVER_IMAGE,
    schedules=("0 1 * * *",),
    timezone="UTC",
    retention=RetentionPolicy(daily=7),
    selector=Selector("role", "db"),
)
ARTIFACT = Artifact("a1", "b1", ArtifactKind.IMAGE, "img-1", ArtifactStatus.AVAILABLE, size=5)
BACKUP = Backup(
    id="b1",
    target="srv-1",
    kind=BackupKind.SERVER_IMAGE,
    status=BackupStatus.AVAILABLE,
    created_at=T0,
    policy_id="p1",
    policy_name="nightly",
    reasons=("daily within 7",),
    artifacts=(ARTIFACT,),
)


def _run(**changes: object) -> Run:
    base = dict(
        id="r1",
        policy_id="p1",
        target="web1",
        scheduled_for=T0,
        due_at=T0,
        state=RunState.PENDING,
        policy_name="nightly",
    )
    return Run(**{**base, **changes})  # type: ignore[arg-type]


def test_schedule_view_shape() -> None:
    assert schedule_view(SCHEDULE) == {
        "cron": "0 1 * * *",
        "next_run": T0,
        "next_run_utc": T0,
        "last_fired_at": None,
        "deferred_occurrence": None,
        "retry_at": None,
    }


def test_policy_summary_has_its_schedules_as_objects_as_the_detail_does() -> None:
    view = PolicyView(POLICY, (SCHEDULE,))
    summary = policy_summary(view)
    assert set(summary) == {
        "id", "name", "kind", "targets", "selector", "schedules", "timezone",
        "window_minutes", "retention", "retention_description", "enabled", "cloud",
        "label", "created_at", "updated_at", "consistency", "fallback", "max_pause_seconds",
        "verify", "last_verification",
        "orphans", "project", "full_every", "full_cron",
    }  # fmt: skip
    assert summary["schedules"] == [schedule_view(SCHEDULE)]
    assert summary["selector"] == "role=db" and summary["retention"] == {"daily": 7}
    assert policy_detail(view) == summary


def test_artifact_view_shape() -> None:
    assert artifact_view(ARTIFACT) == {
        "kind": "image",
        "id": "img-1",
        "status": "available",
        "size": 5,
        "error": None,
        "delete_attempts": 0,
    }


def test_backup_summary_and_detail_share_one_shape_with_artifact_views() -> None:
    summary = backup_summary(BACKUP)
    assert set(summary) == {
        "id", "target", "target_name", "policy", "policy_id", "label", "kind", "status",
        "protected", "created_at", "completed_at", "deleted_at", "reasons", "run_id",
        "error", "deletion_run_id", "deletion_guarded", "artifacts", "consistency",
        "consistency_detail",
        "verification",
        "orphaned", "source_last_seen_at", "source_gone_at", "parent_id", "project",
    }  # fmt: skip
    assert summary["artifacts"] == [artifact_view(ARTIFACT)]
    assert summary["reasons"] == ["daily within 7"]
    assert backup_detail(BACKUP) == summary


def test_backup_detail_with_a_chain_adds_it_and_children_and_nothing_else() -> None:
    summary = backup_summary(BACKUP)
    shown = backup_detail(BACKUP, (("full", "inc-1"), ("inc-3",)))
    assert shown == {**summary, "chain": ["full", "inc-1"], "children": ["inc-3"]}
    assert backup_detail(BACKUP, ([], [])) == {**summary, "chain": [], "children": []}


def test_a_protected_backup_is_kept_for_being_protected() -> None:
    protected = Backup(**{**BACKUP.__dict__, "protected": True})
    assert backup_summary(protected)["reasons"] == ["protected"]


def test_run_summary_shape_and_its_tries() -> None:
    summary = run_summary(_run())
    assert set(summary) == {
        "id", "policy", "policy_id", "target", "target_name", "trigger", "label", "state",
        "scheduled_for", "due_at", "started_at", "finished_at", "attempt", "backup_id",
        "error", "error_id", "next_try_at", "project",
    }  # fmt: skip
    assert summary["attempt"] == 0  # not started yet
    ok = Step("start", T0, T0, "ok", attempt=1)
    wait = Step("wait", T0, T0, "ok", attempt=2)
    # claimed twice (start, then the image check), tried once
    assert run_summary(_run(started_at=T0, attempt=2, steps=(ok, wait)))["attempt"] == 1
    retry = Step("pending", T0, T0, "retry", attempt=1)
    assert run_summary(_run(started_at=T0, attempt=3, steps=(retry, ok)))["attempt"] == 2
    later = T0 + timedelta(minutes=1)
    assert run_summary(_run(not_before=later))["next_try_at"] == later
    done = _run(state=RunState.SUCCEEDED, not_before=later)
    assert run_summary(done)["next_try_at"] is None


def test_run_detail_adds_the_lease_and_the_steps() -> None:
    step = Step("start", T0, T0, "ok", "server srv-1 (web1)", attempt=4)
    run = _run(attempt=4, lease_owner="host:1:abc", lease_expires_at=T0, steps=(step,))
    detail = run_detail(run)
    assert {k: v for k, v in detail.items() if k in run_summary(run)} == run_summary(run)
    assert detail["lease_owner"] == "host:1:abc"
    assert detail["lease_expires_at"] == T0
    assert detail["lease_attempt"] == 4
    assert detail["steps"] == [step_view(step)]
    assert step_view(step) == {
        "name": "start",
        "attempt": 4,
        "started_at": T0,
        "finished_at": T0,
        "outcome": "ok",
        "detail": "server srv-1 (web1)",
    }


def test_a_policy_s_verify_schedule_and_last_verification() -> None:
    from dataclasses import replace

    from stackback.verification import Verification, VerifyResult, VerifySettings

    verdict = Verification(VerifyResult.FAILED, T0, "no login prompt", 42.0, "r1")
    policy = replace(POLICY, verify=VerifySettings("0 3 1 * *", network="isolated"))
    data = policy_detail(PolicyView(policy, (SCHEDULE,), T0, ("b1", verdict)))
    assert data["verify"] == {
        "cron": "0 3 1 * *", "flavor": None, "network": "isolated", "pick": "newest",
        "next_run_utc": T0,
    }  # fmt: skip
    assert data["last_verification"] == {
        "backup_id": "b1", "result": "failed", "reason": "no login prompt", "verified_at": T0,
        "active_seconds": 42.0, "restore_id": "r1",
    }  # fmt: skip
    assert backup_summary(replace(BACKUP, verification=verdict))["verification"] == {
        k: v for k, v in data["last_verification"].items() if k != "backup_id"
    }
