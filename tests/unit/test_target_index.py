"""What makes a rotation over a million backups cheap keeps its meaning: the held
backups read as their pairs, and TargetBackups' index finds and changes as a scan does."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stackback.policy import Backup, BackupKind, BackupStatus
from stackback.records import BackupChange, TargetBackups
from stackback.safety import OVER_BUDGET, HeldBackups

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _backup(name: str, hours: int = 0, run: str | None = None) -> Backup:
    return Backup(
        id=name,
        target="srv",
        kind=BackupKind.SERVER_IMAGE,
        status=BackupStatus.AVAILABLE,
        created_at=T0 - timedelta(hours=hours),
        deletion_run_id=run,
    )


def test_held_backups_read_as_the_tuple_of_their_pairs() -> None:
    a, b, c = _backup("a"), _backup("b", 1), _backup("c", 2)
    held = HeldBackups([(a, "protected")], [b, c])
    pairs = ((a, "protected"), (b, OVER_BUDGET), (c, OVER_BUDGET))
    assert tuple(held) == pairs and held == pairs and pairs == held
    assert len(held) == 3
    assert [held[i] for i in range(3)] == list(pairs)
    assert held[-1] == (c, OVER_BUDGET) and held[-3] == (a, "protected")
    assert held[1:] == pairs[1:]
    assert hash(held) == hash(pairs)
    assert held != pairs[:2] and HeldBackups() == ()
    for wrong in (3, -4):
        with pytest.raises(IndexError):
            held[wrong]


def test_the_index_finds_and_changes_as_a_scan_does() -> None:
    backups = tuple(_backup(f"b{i}", i) for i in range(5))
    target = TargetBackups("srv", backups, run_id="r1", forgotten_by_run=(backups[4],))
    assert [target.find(b.id) for b in backups] == list(backups)
    assert target.find("nope") is None

    changed = target.with_changes(
        [
            BackupChange("b1", status=BackupStatus.DELETING, deletion_run_id="r1"),
            BackupChange("b4", status=BackupStatus.DELETED),
            BackupChange("elsewhere", status=BackupStatus.DELETING),
        ]
    )
    assert changed.backups[1].status is BackupStatus.DELETING
    assert changed.find("b1") == changed.backups[1]
    assert [b.id for b in changed.forgotten_by_run] == ["b4", "b1"]
    assert changed.forgotten_by_run[0].status is BackupStatus.DELETED
    assert changed.backups[2] is backups[2]
    assert changed.with_changes([]) is changed


def test_an_id_seen_twice_is_changed_in_every_copy_as_before() -> None:
    twin = _backup("twin")
    target = TargetBackups("srv", (twin, _backup("other", 1), replace(twin, created_at=T0)))
    changed = target.with_changes([BackupChange("twin", status=BackupStatus.DELETING)])
    assert [b.status for b in changed.backups if b.id == "twin"] == [BackupStatus.DELETING] * 2
    assert target.find("twin") is twin
