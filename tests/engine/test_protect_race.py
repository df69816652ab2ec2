"""Protecting a backup races its deletion: decided under the backup's row lock.

``set_protected`` locks the backup row and re-reads it before deciding, so an
operator is never told "protected" for a backup that a rotation, a deletion
request or the collector is deleting or has deleted (both databases; on SQLite
``BEGIN IMMEDIATE`` serialises the transactions, on PostgreSQL the row lock does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, select, update

from stackback.errors import Conflict
from stackback.policy import Backup, BackupStatus
from stackback.records import TargetBackups
from stackback.retention import RetentionPolicy
from stackback.safety import DeletionRequest, DeletionVerdict, judge_deletion
from stackback.store.models import BackupRow
from stackback.store.sql import SqlStore
from tests.engine.test_safety_gaps import image_backup, rotation

BACKUPS = cast(Table, BackupRow.__table__)


def wait_until_blocked(store: SqlStore, thread: threading.Thread) -> None:
    """Return once ``thread`` waits for a lock held by the test (it must not finish)."""
    if store.is_postgres:
        with store.engine.connect() as probe:
            for _ in range(200):
                waiting = probe.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ).scalar_one()
                probe.rollback()  # pg_stat_activity is a snapshot per transaction
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting, f"{thread.name} never waited for the locked backup"
    thread.join(0.5)  # SQLite: BEGIN IMMEDIATE waits (busy timeout) for the other writer
    assert thread.is_alive(), f"{thread.name} did not wait for the concurrent transaction"


def in_thread(name: str, call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome


def test_protecting_a_backup_being_deleted_or_deleted_is_refused(
    store: SqlStore, clock: Any
) -> None:
    now = clock.now()
    store.ensure_backup(image_backup("b-deleting", BackupStatus.AVAILABLE, now))
    store.ensure_backup(image_backup("b-deleted", BackupStatus.AVAILABLE, now))
    store.update_backup("b-deleting", status=BackupStatus.DELETING, reasons=("forget",))
    store.update_backup("b-deleted", status=BackupStatus.DELETED, deleted_at=now)
    before = {b: store.get_backup(b) for b in ("b-deleting", "b-deleted")}

    with pytest.raises(Conflict, match="b-deleting is being deleted: it cannot be protected"):
        store.set_protected("b-deleting", True)
    with pytest.raises(Conflict, match="b-deleted was deleted: it cannot be protected"):
        store.set_protected("b-deleted", True)
    assert {b: store.get_backup(b) for b in before} == before

    # unprotecting asks for a state that already holds: returned as it is
    assert store.set_protected("b-deleting", False) == before["b-deleting"]
    assert store.set_protected("b-deleted", False) == before["b-deleted"]
    assert {b: store.get_backup(b) for b in before} == before


def test_protect_waits_for_a_concurrent_deletion_and_then_refuses(
    store: SqlStore, clock: Any
) -> None:
    """A collector (another connection) holds the row: protect waits, then sees it deleted.

    Without the row lock, on PostgreSQL, protect read "available" and its write
    waited for the deletion's commit, then set ``protected`` on a deleted backup.
    """
    store.ensure_backup(image_backup("b-1", BackupStatus.AVAILABLE, clock.now()))
    row = BACKUPS.c.id == "b-1"
    with store.engine.connect() as collector:
        collector.execute(select(BACKUPS.c.id).where(row).with_for_update())
        collector.execute(update(BACKUPS).where(row).values(status=BackupStatus.DELETING.value))
        thread, outcome = in_thread("protect", lambda: store.set_protected("b-1", True))
        wait_until_blocked(store, thread)
        collector.execute(
            update(BACKUPS)
            .where(row)
            .values(status=BackupStatus.DELETED.value, deleted_at=clock.now())
        )
        collector.commit()
    thread.join(15)
    assert not thread.is_alive()
    assert "result" not in outcome, outcome
    assert isinstance(outcome["error"], Conflict)
    assert "was deleted" in outcome["error"].message
    final = store.get_backup("b-1")
    assert (final.status, final.protected) == (BackupStatus.DELETED, False)


def test_protect_waits_for_a_concurrent_deletion_request_and_then_refuses(
    store: SqlStore, clock: Any
) -> None:
    """The same race through a deletion request (the operator's delete, judged locked)."""
    now = clock.now()
    store.ensure_backup(image_backup("b-old", BackupStatus.AVAILABLE, now - timedelta(days=1)))
    store.ensure_backup(image_backup("b-new", BackupStatus.AVAILABLE, now))
    checked, go_on = threading.Event(), threading.Event()

    def slow_judge(backups: TargetBackups) -> DeletionVerdict:
        verdict = judge_deletion(DeletionRequest("b-old", reasons=("by hand",)), backups)
        checked.set()  # the target's backups are locked, nothing committed yet
        assert go_on.wait(15)
        return verdict

    deleting, deleted = in_thread(
        "delete", lambda: store.decide_for_target("srv", slow_judge, include=("b-old",))
    )
    assert checked.wait(15)
    protecting, outcome = in_thread("protect", lambda: store.set_protected("b-old", True))
    try:
        wait_until_blocked(store, protecting)
    finally:
        go_on.set()
    deleting.join(15)
    protecting.join(15)
    assert deleted["result"].allowed
    assert isinstance(outcome.get("error"), Conflict), outcome
    assert "being deleted" in outcome["error"].message
    final = store.get_backup("b-old")
    assert (final.status, final.protected) == (BackupStatus.DELETING, False)


def test_a_rotation_does_not_forget_a_backup_protected_meanwhile(
    store: SqlStore, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation decides with the row locked, after protect commits: it forgets nothing."""
    now = clock.now()
    run = store.create_manual_run(target="srv", now=now, label="manual", retention=None)
    [claimed] = store.claim_runs(now, "w1", lease_seconds=60)
    fence = (run.id, claimed.attempt)
    store.ensure_backup(image_backup("b-old", BackupStatus.AVAILABLE, now - timedelta(days=2)))
    store.ensure_backup(image_backup("b-new", BackupStatus.CREATING, now, run.id), fence=fence)
    store.update_backup("b-new", status=BackupStatus.AVAILABLE, fence=fence)
    decided, go_on = threading.Event(), threading.Event()
    to_backup = SqlStore._backup

    def slow_backup(self: SqlStore, session: Any, row: Any) -> Backup:
        if threading.current_thread().name == "protect":
            decided.set()  # protected under the row lock, not committed yet
            assert go_on.wait(15)
        return to_backup(self, session, row)

    monkeypatch.setattr(SqlStore, "_backup", slow_backup)
    protecting, protected = in_thread("protect", lambda: store.set_protected("b-old", True))
    assert decided.wait(15)
    rotating, rotated = in_thread(
        "rotate",
        lambda: store.decide_for_target(
            "srv", rotation(RetentionPolicy(last=1), run.id, now), fence=fence
        ),
    )
    try:
        wait_until_blocked(store, rotating)
    finally:
        go_on.set()
    protecting.join(15)
    rotating.join(15)
    assert protected["result"].protected is True
    assert rotated["result"].forgotten == ()
    final = store.get_backup("b-old")
    assert (final.status, final.protected) == (BackupStatus.AVAILABLE, True)
