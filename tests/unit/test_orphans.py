"""The orphan rule (``stackback.safety.plan_orphans``) as properties, and its parsing.

A target whose server is gone keeps its backups under ``keep``; ``expire-after``
forgets them only once the duration has passed since the server was last seen;
``keep-last N`` keeps the newest N. Whatever the rule, a protected backup, another
policy's backup and the last good backup are never forgotten, and nothing is
forgotten while the server is not recorded gone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackback.errors import InvalidInput
from stackback.policy import Backup, BackupStatus, OrphanMode, OrphanRule
from stackback.records import TargetBackups
from stackback.retention import Duration
from stackback.safety import OrphanRequest, plan_orphans, source_last_seen
from tests.unit.test_safety import OWNERS, T0, TARGET, backup

GONE_AT = T0 + timedelta(days=100)
RULES = st.one_of(
    st.just(OrphanRule()),
    st.builds(
        lambda days: OrphanRule(OrphanMode.EXPIRE_AFTER, after=Duration(days=days)),
        st.integers(1, 200),
    ),
    st.builds(lambda n: OrphanRule(OrphanMode.KEEP_LAST, keep_last=n), st.integers(1, 6)),
)


@dataclass(frozen=True)
class Case:
    backups: TargetBackups
    request: OrphanRequest

    def in_scope_good(self) -> list[Backup]:
        return [
            b
            for b in self.backups.backups
            if b.status is BackupStatus.AVAILABLE and b.policy_id == "p1" and not b.protected
        ]


@st.composite
def cases(
    draw: st.DrawFn, *, gone: bool = True, rules: st.SearchStrategy[OrphanRule] = RULES
) -> Case:
    count = draw(st.integers(0, 12))
    hours = draw(st.lists(st.integers(0, 24 * 90), min_size=count, max_size=count, unique=True))
    seen = draw(st.one_of(st.none(), st.integers(0, 24 * 99)))
    backups = [
        replace(
            backup(
                f"b{i:02d}",
                hours[i],
                status=draw(
                    st.sampled_from([BackupStatus.AVAILABLE] * 4 + [BackupStatus.DELETING])
                ),
                owner=draw(st.sampled_from(["policy p1"] * 3 + sorted(OWNERS))),
                protected=draw(st.booleans()),
            ),
            source_last_seen_at=None if seen is None else T0 + timedelta(hours=seen),
            source_gone_at=GONE_AT if gone else None,
        )
        for i in range(count)
    ]
    backups.sort(key=lambda b: b.created_at, reverse=True)
    request = OrphanRequest(
        draw(rules),
        "p1",
        now=GONE_AT + timedelta(days=draw(st.integers(0, 400))),
        budget=draw(st.one_of(st.none(), st.integers(0, 8))),
    )
    return Case(TargetBackups(TARGET, tuple(backups)), request)


def forgotten(case: Case) -> set[str]:
    plan = plan_orphans(case.request, case.backups)
    marked = {c.backup_id for c in plan.changes if c.status is BackupStatus.DELETING}
    assert marked == {b.id for b in plan.forget}
    return marked


@settings(max_examples=300, deadline=None)
@given(cases(rules=st.just(OrphanRule())))
def test_under_keep_no_orphaned_backup_is_ever_forgotten(case: Case) -> None:
    plan = plan_orphans(case.request, case.backups)
    assert plan.forget == () and plan.changes == ()


@settings(max_examples=300, deadline=None)
@given(cases(gone=False))
def test_nothing_is_forgotten_while_the_server_is_not_found_gone(case: Case) -> None:
    assert forgotten(case) == set()


@settings(max_examples=300, deadline=None)
@given(cases())
def test_no_rule_forgets_a_protected_another_policys_or_the_last_good_backup(case: Case) -> None:
    marked = forgotten(case)
    mine = {b.id for b in case.in_scope_good()}
    assert marked <= mine, "a protected or another owner's backup was forgotten"
    after = case.backups.with_changes(plan_orphans(case.request, case.backups).changes)
    if any(b.status is BackupStatus.AVAILABLE for b in case.backups.backups):
        assert any(b.status is BackupStatus.AVAILABLE for b in after.backups)
    if case.request.budget is not None:
        assert len(marked) <= case.request.budget


@settings(max_examples=300, deadline=None)
@given(cases())
def test_expire_after_forgets_only_once_the_duration_has_passed_since_last_seen(
    case: Case,
) -> None:
    rule = case.request.rule
    marked = forgotten(case)
    if rule.mode is not OrphanMode.EXPIRE_AFTER:
        return
    assert rule.after is not None
    seen = source_last_seen(case.in_scope_good() + [
        b for b in case.backups.backups
        if b.status is BackupStatus.AVAILABLE and b.policy_id == "p1" and b.protected
    ])  # fmt: skip
    if marked:
        assert seen is not None and case.request.now - seen >= timedelta(days=rule.after.days)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_keep_last_keeps_the_newest_n(case: Case) -> None:
    rule = case.request.rule
    marked = forgotten(case)
    if rule.mode is not OrphanMode.KEEP_LAST:
        return
    assert rule.keep_last is not None
    newest = sorted(case.in_scope_good(), key=lambda b: b.created_at, reverse=True)
    assert not {b.id for b in newest[: rule.keep_last]} & marked


def orphaned(backup_id: str, hours: int, **kwargs: object) -> Backup:
    made = backup(backup_id, hours, owner="policy p1")
    return replace(made, source_gone_at=GONE_AT, **kwargs)  # type: ignore[arg-type]


def test_expire_after_forgets_all_but_the_last_good_once_due_and_nothing_before() -> None:
    seen = T0 + timedelta(days=10)
    backups = TargetBackups(
        TARGET,
        tuple(orphaned(f"b{i}", 24 * i, source_last_seen_at=seen) for i in (3, 2, 1)),
    )
    rule = OrphanRule.parse("expire-after 90d")
    early = OrphanRequest(rule, "p1", now=seen + timedelta(days=89))
    assert plan_orphans(early, backups).forget == ()
    due = OrphanRequest(rule, "p1", now=seen + timedelta(days=90))
    plan = plan_orphans(due, backups)
    assert [b.id for b in plan.forget] == ["b1", "b2"]
    assert [(b.id, why) for b, why in plan.held] == [
        ("b3", f"backup b3 is the last good backup of {TARGET}: use --force")
    ]


def test_keep_last_forgets_the_oldest_beyond_n() -> None:
    backups = TargetBackups(TARGET, tuple(orphaned(f"b{i}", i) for i in (4, 3, 2, 1)))
    plan = plan_orphans(OrphanRequest(OrphanRule.parse("keep-last 2"), "p1", now=GONE_AT), backups)
    assert [b.id for b in plan.forget] == ["b1", "b2"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("keep", "keep"),
        ("expire-after 90d", "expire-after 90d"),
        ("expire-after=1y6m", "expire-after 1y6m"),
        (" keep-last  3 ", "keep-last 3"),
    ],
)
def test_rules_parse_and_show(text: str, shown: str) -> None:
    assert str(OrphanRule.parse(text)) == shown
    assert OrphanRule.parse(shown) == OrphanRule.parse(text)


@pytest.mark.parametrize(
    "text",
    ["", "delete", "keep 3", "expire-after", "expire-after 90", "expire-after 0d",
     "keep-last", "keep-last 0", "keep-last -1", "keep-last x", "keep-last 3 4",
     "keep-last 99999", "expire-after 2w"],
)  # fmt: skip
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        OrphanRule.parse(text)
