"""Backup chains: the rules of ``stackback.chains`` and how rotation and deletion follow them.

Properties run with an adversarial retention (it forgets whatever Hypothesis picks),
so the chain guards hold whatever the rules decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from stackback import safety
from stackback.chains import (
    FOR_THE_CHAIN,
    FOREIGN_CHILD,
    FOREIGN_PARENT,
    INCREMENTAL,
    ChainRule,
    ancestors,
    choose,
    deletion_order,
    foreign_rooted,
)
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
    DeletionRequest,
    DeletionStage,
    RotationRequest,
    RotationScope,
    judge_deletion,
    plan_rotation,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = "vol-1"
RUN = "run-own"
SCOPE = RotationScope(policy_id="p1")


def vbackup(
    backup_id: str,
    hours: int,
    parent: str | None = None,
    *,
    status: BackupStatus = BackupStatus.AVAILABLE,
    run_id: str | None = None,
    detail: str | None = None,
) -> Backup:
    artifact = Artifact(
        id=f"a-{backup_id}",
        backup_id=backup_id,
        kind=ArtifactKind.VOLUME_BACKUP,
        cloud_id=f"cb-{backup_id}",
        status=ArtifactStatus.AVAILABLE,
    )
    return Backup(
        id=backup_id,
        target=TARGET,
        kind=BackupKind.VOLUME_BACKUP,
        status=status,
        created_at=T0 + timedelta(hours=hours),
        policy_id="p1",
        policy_name="nightly",
        run_id=run_id,
        artifacts=(artifact,),
        parent_id=parent,
        consistency_detail=detail,
    )


def target(*backups: Backup, run_id: str | None = RUN) -> TargetBackups:
    ordered = sorted(backups, key=lambda b: b.created_at, reverse=True)
    return TargetBackups(TARGET, tuple(ordered), run_id)


@contextmanager
def retention_forgetting(data: st.DataObject) -> Iterator[None]:
    def forget_some(items: Any, policy: RetentionPolicy, **_: Any) -> RetentionDecision[Backup]:
        items = list(items)
        doomed = data.draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
        keep = [b for b, gone in zip(items, doomed, strict=True) if not gone]
        forget = [b for b, gone in zip(items, doomed, strict=True) if gone]
        return RetentionDecision(keep=keep, forget=forget, keep_reasons=[("picked",)] * len(keep))

    with patch.object(safety, "apply_policy", forget_some):
        yield


@st.composite
def chained(draw: st.DrawFn) -> TargetBackups:
    """Backups of one volume in chains: each one full, or an increment of an earlier one."""
    count = draw(st.integers(1, 10))
    backups: list[Backup] = []
    for i in range(count):
        parent = draw(st.sampled_from([None, *[b.id for b in backups]]))
        status = draw(st.sampled_from([BackupStatus.AVAILABLE] * 5 + [BackupStatus.DELETING]))
        backups.append(vbackup(f"b{i:02d}", i, parent, status=status))
    own_parent = draw(st.sampled_from([None, *[b.id for b in backups]]))
    backups.append(vbackup("own", count, own_parent, run_id=RUN))
    return target(*backups)


def request(budget: int | None = None) -> RotationRequest:
    return RotationRequest(
        rules=RetentionPolicy(last=1),
        scope=SCOPE,
        now=T0 + timedelta(days=30),
        run_id=RUN,
        budget=budget,
    )


@settings(max_examples=150, deadline=None)
@given(backups=chained(), data=st.data(), budget=st.one_of(st.none(), st.integers(0, 6)))
def test_no_kept_backup_ever_loses_an_ancestor(
    backups: TargetBackups, data: st.DataObject, budget: int | None
) -> None:
    with retention_forgetting(data):
        plan = plan_rotation(request(budget), backups)
    after = backups.with_changes(plan.changes)
    gone = {b.id for b in after.backups if b.status is not BackupStatus.AVAILABLE}
    for kept, _ in plan.keep:
        for parent in ancestors(kept, backups.backups):
            assert parent.id not in {b.id for b in plan.forget}, "a kept backup lost an ancestor"
            if parent.status is BackupStatus.AVAILABLE:
                assert parent.id not in gone


@settings(max_examples=150, deadline=None)
@given(backups=chained(), data=st.data())
def test_deletion_order_is_children_first(backups: TargetBackups, data: st.DataObject) -> None:
    with retention_forgetting(data):
        plan = plan_rotation(request(), backups)
    for order in (plan.forget, plan.forgotten):
        position = {b.id: i for i, b in enumerate(order)}
        for b in order:
            if b.parent_id in position:
                assert position[b.id] < position[b.parent_id], "a parent is deleted first"
    # every parent marked now has no live child left undeleted
    after = backups.with_changes(plan.changes)
    for b in plan.forget:
        for child in after.backups:
            if child.parent_id == b.id:
                assert child.status in (BackupStatus.DELETING, BackupStatus.DELETED)


def test_a_kept_incremental_keeps_its_chain_for_the_chain() -> None:
    full, inc1, own = (
        vbackup("full", 0),
        vbackup("inc1", 1, "full"),
        vbackup("own", 2, "inc1", run_id=RUN),
    )
    plan = plan_rotation(request(), target(full, inc1, own))
    reasons = {b.id: why for b, why in plan.keep}
    assert reasons["inc1"] == (FOR_THE_CHAIN,) and reasons["full"] == (FOR_THE_CHAIN,)
    assert plan.forget == ()


def test_a_chain_is_forgotten_newest_first() -> None:
    full, inc1, inc2 = vbackup("full", 0), vbackup("inc1", 1, "full"), vbackup("inc2", 2, "inc1")
    own = vbackup("own", 3, run_id=RUN)  # a new full: the old chain can go
    plan = plan_rotation(request(), target(full, inc1, inc2, own))
    assert [b.id for b in plan.forget] == ["inc2", "inc1", "full"]
    assert [b.id for b in plan.forgotten] == ["inc2", "inc1", "full"]


def test_the_budget_takes_the_newest_of_a_chain_first() -> None:
    full, inc1, inc2 = vbackup("full", 0), vbackup("inc1", 1, "full"), vbackup("inc2", 2, "inc1")
    own = vbackup("own", 3, run_id=RUN)
    plan = plan_rotation(request(budget=1), target(full, inc1, inc2, own))
    assert [b.id for b in plan.forget] == ["inc2"]


def test_a_parent_with_live_children_is_refused_even_with_force() -> None:
    full, inc1 = vbackup("full", 0), vbackup("inc1", 1, "full")
    verdict = judge_deletion(DeletionRequest("full", force=True), target(full, inc1, run_id=None))
    assert verdict.refusal is not None and "inc1" in verdict.refusal


def test_a_parent_whose_children_are_being_deleted_may_be_asked_for() -> None:
    full = vbackup("full", 0)
    inc1 = vbackup("inc1", 1, "full", status=BackupStatus.DELETING)
    verdict = judge_deletion(
        DeletionRequest("full"), target(full, inc1, vbackup("x", 5), run_id=None)
    )
    assert verdict.allowed


def test_the_final_check_waits_for_children_without_restoring_the_parent() -> None:
    full = vbackup("full", 0, status=BackupStatus.DELETING)
    inc1 = vbackup("inc1", 1, "full", status=BackupStatus.DELETING)
    final = DeletionRequest("full", stage=DeletionStage.FINAL_CHECK)
    verdict = judge_deletion(final, target(full, inc1, vbackup("x", 5), run_id=None))
    assert verdict.refusal is not None and "waiting" in verdict.refusal
    assert verdict.changes == ()  # still being deleted: finished on a later pass
    gone = replace(inc1, status=BackupStatus.DELETED)
    assert judge_deletion(final, target(full, gone, vbackup("x", 5), run_id=None)).allowed


def test_the_final_check_refuses_a_parent_with_a_live_child() -> None:
    full = vbackup("full", 0, status=BackupStatus.DELETING)
    inc1 = vbackup("inc1", 1, "full")
    final = DeletionRequest("full", stage=DeletionStage.FINAL_CHECK)
    verdict = judge_deletion(final, target(full, inc1, run_id=None))
    assert verdict.refusal is not None and verdict.changes[0].status is BackupStatus.AVAILABLE


def test_a_chain_rooted_in_an_unknown_parent_is_held_and_says_so() -> None:
    inc1 = vbackup("inc1", 1, "cinder-parent-we-never-made")
    inc2 = vbackup("inc2", 2, "inc1")
    own = vbackup("own", 3, run_id=RUN)
    assert foreign_rooted(inc2, [inc1, inc2, own])
    plan = plan_rotation(request(), target(inc1, inc2, own))
    assert plan.forget == ()
    assert {b.id: why for b, why in plan.held} == {"inc1": FOREIGN_PARENT, "inc2": FOREIGN_PARENT}


def test_deletion_order_keeps_unchained_backups_oldest_first() -> None:
    a, b, c = vbackup("a", 0), vbackup("b", 1), vbackup("c", 2)
    assert [x.id for x in deletion_order([c, a, b])] == ["a", "b", "c"]


def test_choose_full_or_incremental() -> None:
    full = vbackup("full", 0, detail="full")
    inc1 = vbackup("inc1", 1, "full", detail=INCREMENTAL)
    now = full.created_at + timedelta(days=30)

    def wants_full(history: list[Backup], rule: ChainRule) -> bool:
        return choose(rule, history, now).full

    cron_only = ChainRule(full_cron="0 0 1 1 *")
    assert wants_full([], cron_only)
    assert not wants_full([full], cron_only)
    assert wants_full([full], ChainRule(full_cron="0 0 * * *")), "the full cron fired"
    assert wants_full([full], ChainRule()), "neither rule: every backup full"
    every3 = ChainRule(full_every=3)
    assert not wants_full([full], every3)
    assert not wants_full([full, inc1], every3)
    assert wants_full([full, inc1, vbackup("inc2", 2, "inc1")], every3)
    every5 = ChainRule(full_every=5)
    failed_full = vbackup("again", 3, status=BackupStatus.FAILED, detail="full")
    assert wants_full([full, inc1, failed_full], every5), "a failed full: the next is full"
    failed_inc = vbackup("again", 3, status=BackupStatus.FAILED, detail=INCREMENTAL)
    assert not wants_full([full, inc1, failed_inc], every5)
    assert choose(every5, [full, inc1, failed_inc], now).parent == inc1, "the chain's tip"


def test_a_backup_held_for_a_foreign_child_keeps_its_ancestors() -> None:
    full = vbackup("full", 0)
    blocked = replace(vbackup("inc1", 1, "full"), error=f"deletion held: {FOREIGN_CHILD}")
    own = vbackup("own", 3, run_id=RUN)
    plan = plan_rotation(request(), target(full, blocked, own))
    assert plan.forget == ()
    assert dict((b.id, why) for b, why in plan.held) == {"inc1": FOREIGN_CHILD}
    assert dict((b.id, why) for b, why in plan.keep)["full"] == (FOR_THE_CHAIN,)
