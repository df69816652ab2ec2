"""Which volumes of a whole-server backup go as one Cinder group snapshot (pure rules)."""

from __future__ import annotations

from stackback.consistency import (
    GroupPlan,
    VolumeGroup,
    groups_detail,
    plan_groups,
    promises_consistent_snapshots,
)


def _group(gid: str, volumes: tuple[str, ...], consistent: bool = True) -> VolumeGroup:
    return VolumeGroup(gid, gid, volumes, "type", consistent, "" if consistent else "no spec")


def test_only_the_is_true_spec_promises_consistent_group_snapshots() -> None:
    assert promises_consistent_snapshots({"consistent_group_snapshot_enabled": "<is> True"})
    assert promises_consistent_snapshots({"consistent_group_snapshot_enabled": "true"})
    assert not promises_consistent_snapshots({"consistent_group_snapshot_enabled": "<is> False"})
    assert not promises_consistent_snapshots({})


def test_a_promising_group_wholly_in_the_backup_goes_together() -> None:
    plan = plan_groups(("a", "b", "c"), [_group("g", ("a", "b"))])
    assert [g.id for g in plan.groups] == ["g"] and plan.alone == ("c",)


def test_a_group_that_promises_nothing_or_holds_others_goes_per_volume_saying_why() -> None:
    plan = plan_groups(
        ("a", "b", "c"), [_group("g", ("a",), consistent=False), _group("h", ("b", "x"))]
    )
    assert plan.groups == () and plan.alone == ("a", "b", "c")
    assert plan.why_alone == ("group g: no spec", "group h also holds x, not in this backup")


def test_a_group_of_none_of_the_volumes_is_ignored() -> None:
    assert plan_groups(("a",), [_group("g", ("z",))]) == GroupPlan((), ("a",))


def test_the_detail_names_what_was_taken_and_what_was_not() -> None:
    group = _group("g", ("a", "b"))
    plan = GroupPlan((group,), ("c",), ("group h: no spec",))
    assert groups_detail({"gs1": group}, plan) == (
        "volumes: group snapshot gs1 of consistency group g (a, b); "
        "per volume: c (group h: no spec)"
    )
    assert groups_detail({}, GroupPlan((), ())) == ""
