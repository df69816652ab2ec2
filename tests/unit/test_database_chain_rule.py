"""When a database backup is full: ``--full-every``, ``--full-cron``, or both (either asks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackback.chains import ChainRule, choose
from stackback.policy import Backup, BackupKind, BackupStatus

MONDAY = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def chain(days: int) -> list[Backup]:
    """A good full on MONDAY and one increment a day after it, ``days`` backups in all."""
    made: list[Backup] = []
    for day in range(days):
        parent = made[-1].id if made else None
        made.append(
            Backup(
                id=f"b{day}",
                target="db",
                kind=BackupKind.DATABASE_BACKUP,
                status=BackupStatus.AVAILABLE,
                created_at=MONDAY + timedelta(days=day),
                parent_id=parent,
            )
        )
    return made


def test_with_both_rules_the_count_asks_for_a_full_before_the_cron_fires() -> None:
    rule = ChainRule(full_every=3, full_cron="0 0 1 * *")  # monthly cron, full every 3
    assert choose(rule, chain(2), MONDAY + timedelta(days=2)).parent is not None
    assert choose(rule, chain(3), MONDAY + timedelta(days=3)).full


def test_with_both_rules_the_cron_asks_for_a_full_before_the_count_is_reached() -> None:
    rule = ChainRule(full_every=30, full_cron="0 0 * * 0")  # weekly cron, full every 30
    assert not choose(rule, chain(3), MONDAY + timedelta(days=3)).full
    sunday = choose(rule, chain(6), MONDAY + timedelta(days=6))
    assert sunday.full and "--full-cron" in sunday.why


def test_neither_rule_makes_every_backup_full() -> None:
    assert choose(ChainRule(), chain(2), MONDAY + timedelta(days=2)).full


def test_an_increment_names_the_tip_of_the_chain() -> None:
    backups = chain(4)
    choice = choose(ChainRule(full_every=7), backups, MONDAY + timedelta(days=4))
    assert choice.parent == backups[-1]
    assert "5 of 7" in choice.why
