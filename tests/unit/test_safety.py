"""The safety rules as properties of the two pure functions of ``stackback.safety``.

Each property is checked twice for rotations: with the real retention policy,
and with an adversarial one that forgets an arbitrary subset of the candidates,
so that every guard of ``plan_rotation`` is exercised whatever retention decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from stackback import safety
from stackback.policy import (
    Artifact,
    ArtifactKind,
    ArtifactStatus,
    Backup,
    BackupKind,
    BackupStatus,
)
from stackback.records import TargetBackups
from stackback.retention import RetentionDecision, RetentionPolicy
from stackback.safety import (
    NEWEST_REASON,
    OWN_REASON,
    DeletionRequest,
    DeletionStage,
    RotationRequest,
    RotationScope,
    judge_deletion,
    plan_rotation,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUN = "run-1"
TARGET = "srv"
POLICY_SCOPE = RotationScope(policy_id="p1")
LABEL_SCOPE = RotationScope(label="manual")

#: Who took a backup: (policy_id, policy_name); a deleted policy's keeps its name.
OWNERS = {
    "policy p1": ("p1", "nightly"),
    "policy p2": ("p2", "weekly"),
    "a deleted policy": (None, "gone"),
    "by hand": (None, None),
}


def backup(
    backup_id: str,
    hours: int,
    *,
    status: BackupStatus = BackupStatus.AVAILABLE,
    owner: str = "by hand",
    label: str | None = "manual",
    protected: bool = False,
    run_id: str | None = None,
    guarded: bool = False,
    intact: bool = True,
) -> Backup:
    policy_id, policy_name = OWNERS[owner]
    image = Artifact(
        id=f"a-{backup_id}",
        backup_id=backup_id,
        kind=ArtifactKind.IMAGE,
        cloud_id=f"img-{backup_id}",
        status=ArtifactStatus.AVAILABLE if intact else ArtifactStatus.FAILED,
    )
    return Backup(
        id=backup_id,
        target=TARGET,
        kind=BackupKind.SERVER_IMAGE,
        status=status,
        created_at=T0 + timedelta(hours=hours),
        policy_id=policy_id,
        policy_name=policy_name,
        run_id=run_id,
        label=label,
        protected=protected,
        artifacts=(image,),
        deletion_guarded=guarded,
    )


@dataclass(frozen=True)
class Case:
    """A rotation to plan: the target's backups as the store hands them over, and the request."""

    backups: TargetBackups
    request: RotationRequest

    def in_scope_good(self) -> list[Backup]:
        scope = self.request.scope
        assert scope is not None
        return [
            b
            for b in self.backups.backups
            if b.status is BackupStatus.AVAILABLE and scope.covers(b) and not b.protected
        ]


@st.composite
def cases(draw: st.DrawFn, *, own_status: BackupStatus | None = BackupStatus.AVAILABLE) -> Case:
    """A target's live backups of every kind of owner, the run's own one, what it forgot before."""
    scope = draw(st.sampled_from([POLICY_SCOPE, LABEL_SCOPE]))
    count = draw(st.integers(0, 12))
    hours = draw(
        st.lists(st.integers(0, 24 * 90), min_size=count + 1, max_size=count + 1, unique=True)
    )
    backups = [
        backup(
            f"b{i:02d}",
            hours[i],
            status=draw(st.sampled_from([BackupStatus.AVAILABLE] * 4 + [BackupStatus.DELETING])),
            owner=draw(st.sampled_from(sorted(OWNERS))),
            label=draw(st.sampled_from(["manual", "pre-upgrade", None])),
            protected=draw(st.booleans()),
        )
        for i in range(count)
    ]
    if own_status is not None:
        own_is_newest = draw(st.booleans())
        backups.append(
            backup(
                "own",
                max(hours) + 1 if own_is_newest else hours[-1],
                status=own_status,
                owner="policy p1" if scope is POLICY_SCOPE else "by hand",
                run_id=RUN,
            )
        )
    earlier = draw(st.integers(0, 4))
    forgotten_before = tuple(
        replace(backup(f"f{i}", -i - 1, status=BackupStatus.DELETED), deletion_run_id=RUN)
        for i in range(earlier)
    )
    rules = draw(
        st.builds(
            RetentionPolicy,
            last=st.integers(0, 4),
            daily=st.integers(0, 4),
            weekly=st.integers(0, 3),
            within=st.sampled_from([None, "2d", "10d"]),
        )
    )
    request = RotationRequest(
        rules=rules,
        scope=scope,
        now=T0 + timedelta(days=draw(st.integers(0, 120))),
        run_id=RUN,
        budget=draw(st.integers(0, 8)),
    )
    backups.sort(key=lambda b: b.created_at, reverse=True)
    return Case(TargetBackups(TARGET, tuple(backups), RUN, forgotten_before), request)


@contextmanager
def adversarial_retention(data: st.DataObject) -> Iterator[None]:
    """Retention that forgets whatever Hypothesis picks: the safety rules must hold anyway."""

    def forget_some(items: Any, policy: RetentionPolicy, **_: Any) -> RetentionDecision[Backup]:
        items = list(items)
        doomed = data.draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
        keep = [b for b, gone in zip(items, doomed, strict=True) if not gone]
        forget = [b for b, gone in zip(items, doomed, strict=True) if gone]
        return RetentionDecision(keep=keep, forget=forget, keep_reasons=[("picked",)] * len(keep))

    with patch.object(safety, "apply_policy", forget_some):
        yield


def marked_for_deletion(case: Case, plan: safety.RotationPlan) -> set[str]:
    marked = {c.backup_id for c in plan.changes if c.status is BackupStatus.DELETING}
    assert marked == {b.id for b in plan.forget}
    assert all(c.deletion_run_id == RUN for c in plan.changes if c.backup_id in marked)
    return marked


def assert_rotation_is_safe(case: Case, plan: safety.RotationPlan) -> None:
    marked = marked_for_deletion(case, plan)
    good = case.in_scope_good()
    if good:
        newest = max(good, key=lambda b: b.created_at)
        assert newest.id not in marked, "the newest good backup was forgotten"
    assert "own" not in marked, "the run's own backup was forgotten"
    protected = {b.id for b in case.backups.backups if b.protected}
    assert not protected & marked, "a protected backup was forgotten"
    touched = {c.backup_id for c in plan.changes}
    assert not protected & touched, "a protected backup was counted"
    after = case.backups.with_changes(plan.changes)
    if any(b.status is BackupStatus.AVAILABLE for b in case.backups.backups):
        assert any(b.status is BackupStatus.AVAILABLE for b in after.backups)
    assert case.request.budget is not None
    assert len(marked) <= max(0, case.request.budget - len(case.backups.forgotten_by_run))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_a_rotation_never_forgets_the_newest_good_its_own_or_a_protected_backup(
    case: Case,
) -> None:
    assert_rotation_is_safe(case, plan_rotation(case.request, case.backups))


@settings(max_examples=300, deadline=None)
@given(cases(), st.data())
def test_the_rotation_rules_hold_whatever_retention_decides(
    case: Case, data: st.DataObject
) -> None:
    with adversarial_retention(data):
        plan = plan_rotation(case.request, case.backups)
    assert_rotation_is_safe(case, plan)


@settings(max_examples=200, deadline=None)
@given(cases(), st.data())
def test_a_labels_keep_last_never_touches_a_policys_backups(
    case: Case, data: st.DataObject
) -> None:
    request = replace(case.request, scope=LABEL_SCOPE, rules=RetentionPolicy(last=1))
    with adversarial_retention(data):
        plan = plan_rotation(request, case.backups)
    for change in plan.changes:
        touched = case.backups.find(change.backup_id)
        assert touched is not None
        assert touched.is_manual, f"{touched.policy_name}'s backup {touched.id} was touched"
        assert touched.label == "manual"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [BackupStatus.CREATING, BackupStatus.FAILED, BackupStatus.DELETING, None]
    ).flatmap(lambda status: cases(own_status=status)),
    st.data(),
)
def test_nothing_is_forgotten_unless_the_runs_own_backup_is_available(
    case: Case, data: st.DataObject
) -> None:
    with adversarial_retention(data):
        plan = plan_rotation(case.request, case.backups)
    assert plan.forget == () and plan.changes == ()
    assert plan.note is not None and plan.note.startswith("its own backup is")


@settings(max_examples=300, deadline=None)
@given(cases())
def test_planning_again_on_the_result_forgets_nothing_more(case: Case) -> None:
    """Within one run (its budget counts what it forgot), and without a budget at all."""
    for request in (case.request, replace(case.request, budget=None)):
        first = plan_rotation(request, case.backups)
        after = case.backups.with_changes(first.changes)
        again = plan_rotation(request, after)
        assert again.forget == (), "a second plan forgot more"
        assert {b.id for b in again.forgotten} == {b.id for b in first.forgotten}


def test_the_newest_and_the_runs_own_backups_are_kept_with_their_reason() -> None:
    """The own backup is older than another (a clock step back); retention keeps one."""
    newer = backup("newer", 10, owner="policy p1")
    own = backup("own", 5, owner="policy p1", run_id=RUN)
    older = backup("older", 1, owner="policy p1")
    request = RotationRequest(
        rules=RetentionPolicy(last=1), scope=POLICY_SCOPE, now=T0, run_id=RUN, budget=5
    )
    plan = plan_rotation(request, TargetBackups(TARGET, (newer, own, older), RUN))
    assert [(b.id, reasons) for b, reasons in plan.keep] == [
        ("newer", ("last",)),
        ("own", (OWN_REASON,)),
    ]
    assert [b.id for b in plan.forget] == ["older"]
    assert [b.status for b in plan.forgotten] == [BackupStatus.DELETING]


def test_a_preview_spares_the_newest_when_retention_would_not(monkeypatch: Any) -> None:
    monkeypatch.setattr(
        safety,
        "apply_policy",
        lambda items, policy, **_: RetentionDecision(keep=[], forget=list(items), keep_reasons=[]),
    )
    backups = (backup("new", 2, owner="policy p1"), backup("old", 1, owner="policy p1"))
    request = RotationRequest(rules=RetentionPolicy(last=1), scope=POLICY_SCOPE, now=T0)
    plan = plan_rotation(request, TargetBackups(TARGET, backups))
    assert [(b.id, r) for b, r in plan.keep] == [("new", (NEWEST_REASON,))]
    assert [b.id for b in plan.forget] == ["old"]


def test_the_budget_counts_what_the_run_forgot_in_earlier_attempts() -> None:
    backups = tuple(backup(f"b{i}", 10 - i) for i in range(6))
    own = backup("own", 20, run_id=RUN)
    before = (replace(backup("f", 0, status=BackupStatus.DELETED), deletion_run_id=RUN),)
    request = RotationRequest(
        rules=RetentionPolicy(last=1), scope=LABEL_SCOPE, now=T0, run_id=RUN, budget=3
    )
    plan = plan_rotation(request, TargetBackups(TARGET, (own, *backups), RUN, before))
    assert [b.id for b in plan.forget] == ["b5", "b4"]  # oldest first, 3 - 1 left
    assert [b.id for b, _ in plan.held] == ["b3", "b2", "b1", "b0"]
    assert [b.id for b in plan.forgotten] == ["f", "b5", "b4"]


# -- judging a deletion --------------------------------------------------------------


@st.composite
def deletion_cases(draw: st.DrawFn) -> tuple[TargetBackups, Backup]:
    """A target's backups and one of them to delete, in any state."""
    count = draw(st.integers(0, 5))
    others = [
        backup(
            f"b{i}",
            i,
            status=draw(st.sampled_from([BackupStatus.AVAILABLE, BackupStatus.DELETING])),
            protected=draw(st.booleans()),
        )
        for i in range(count)
    ]
    subject = backup(
        "subject",
        100,
        status=draw(st.sampled_from(list(BackupStatus))),
        protected=draw(st.booleans()),
        guarded=draw(st.booleans()),
        intact=draw(st.booleans()),
    )
    return TargetBackups(TARGET, (subject, *others)), subject


def another_good(backups: TargetBackups, subject: Backup) -> bool:
    return any(b.id != subject.id and b.status is BackupStatus.AVAILABLE for b in backups.backups)


@settings(max_examples=300, deadline=None)
@given(deletion_cases())
def test_a_request_refuses_the_last_good_and_a_protected_backup_without_force(
    case: tuple[TargetBackups, Backup],
) -> None:
    backups, subject = case
    verdict = judge_deletion(DeletionRequest(subject.id), backups)
    settled = subject.status in (BackupStatus.DELETED, BackupStatus.DELETING)
    if subject.protected and not settled:
        assert not verdict.allowed and "protected" in (verdict.refusal or "")
    if subject.status is BackupStatus.AVAILABLE and not another_good(backups, subject):
        assert not verdict.allowed, "the last good backup would be deleted"
    if not verdict.allowed:
        assert verdict.changes == ()
    elif subject.status is BackupStatus.AVAILABLE:
        after = backups.with_changes(verdict.changes)
        assert any(b.status is BackupStatus.AVAILABLE for b in after.backups)
        assert all(c.deletion_guarded is True for c in verdict.changes)


@settings(max_examples=200, deadline=None)
@given(deletion_cases())
def test_force_lets_any_backup_go(case: tuple[TargetBackups, Backup]) -> None:
    backups, subject = case
    verdict = judge_deletion(DeletionRequest(subject.id, force=True), backups)
    assert verdict.allowed
    after = backups.with_changes(verdict.changes).find(subject.id)
    assert after is not None
    if subject.status is not BackupStatus.DELETED:
        assert after.status is BackupStatus.DELETING and not after.deletion_guarded
    if subject.status not in (BackupStatus.DELETED, BackupStatus.DELETING):
        assert not after.protected


@settings(max_examples=300, deadline=None)
@given(deletion_cases())
def test_the_final_check_refuses_a_protected_backup_and_a_guarded_last_good_one(
    case: tuple[TargetBackups, Backup],
) -> None:
    backups, subject = case
    check = DeletionRequest(subject.id, stage=DeletionStage.FINAL_CHECK)
    verdict = judge_deletion(check, backups)
    deleting = subject.status is BackupStatus.DELETING
    last_good = subject.deletion_guarded and not another_good(backups, subject)
    assert verdict.allowed == (deleting and not subject.protected and not last_good)
    if deleting and not verdict.allowed:
        (restored,) = backups.with_changes(verdict.changes).backups[:1]
        intact = all(a.status is ArtifactStatus.AVAILABLE for a in subject.artifacts)
        assert restored.status is (BackupStatus.AVAILABLE if intact else BackupStatus.FAILED)
        assert restored.error == verdict.refusal and not restored.deletion_guarded
    else:
        assert verdict.changes == ()


def test_a_backup_an_unfinished_run_is_still_taking_is_refused() -> None:
    subject = backup("subject", 1, status=BackupStatus.CREATING, run_id="r-9")
    backups = TargetBackups(TARGET, (subject,))
    verdict = judge_deletion(DeletionRequest("subject", force=True, taken_by_run="r-9"), backups)
    assert verdict.refusal == "backup subject is still being taken by run r-9"
    assert judge_deletion(DeletionRequest("subject"), backups).allowed


def test_a_backup_a_restore_reads_is_never_deleted_even_with_force() -> None:
    """Retention holds it back and a deletion request is refused while a restore reads it."""
    older, newer = backup("older", 1), backup("newer", 2)
    reading = TargetBackups(TARGET, (newer, older), being_restored=frozenset({older.id}))
    for force in (False, True):
        verdict = judge_deletion(DeletionRequest(older.id, force=force), reading)
        assert verdict.refusal is not None and "being restored" in verdict.refusal
        assert verdict.changes == ()
    free = TargetBackups(TARGET, (newer, older))
    assert judge_deletion(DeletionRequest(older.id), free).allowed
