"""Backups of a server that no longer exists, on the simulator and a virtual clock.

The server is deleted, the clock advanced: the sweeper records the backups orphaned
with the time their server was last seen, and applies the policy's orphan rule;
under ``keep`` (the default) nothing goes however long the server stays gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stackback.engine.orphans import OrphanSweeper
from stackback.errors import CloudUnavailable
from stackback.policy import Backup, BackupStatus, Policy
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from stackback.store.sql import BackupFilter
from tests.engine.conftest import Rig

DAY = timedelta(days=1)


def policy(rig: Rig, orphans: str | None = None, **where: object) -> Policy:
    return rig.policies.create(
        PolicySpec(
            name="nightly",
            schedules=("0 1 * * *",),
            timezone="UTC",
            retention=RetentionPolicy(last=5),
            orphans=orphans,
            **where,  # type: ignore[arg-type]
        )
    )


def backups(rig: Rig) -> list[Backup]:
    return rig.store.list_backups(BackupFilter(include_deleted=True, limit=None))


def live(rig: Rig) -> list[Backup]:
    return [b for b in backups(rig) if b.status is BackupStatus.AVAILABLE]


def five_backups_then_delete_the_server(rig: Rig, **where: object) -> datetime:
    """Five nightly backups of web-1, then web-1 deleted; returns when it was deleted."""
    server = rig.sim.create_server("web-1", metadata={"backup": "nightly"})
    if not where:
        where = {"targets": (server.id,)}
    rig.engine.drain(rig.clock.now() + 5 * DAY)
    assert len(live(rig)) == 5 and not any(b.orphaned for b in live(rig))
    rig.sim.delete_server(server.id)
    return rig.clock.now()


def test_under_keep_a_gone_servers_backups_stay_orphaned_for_ever(rig: Rig) -> None:
    policy(rig, orphans=None, targets=("web-1",))
    deleted_at = five_backups_then_delete_the_server(rig, targets=("web-1",))
    rig.engine.drain(deleted_at + 400 * DAY)
    kept = live(rig)
    assert len(kept) == 5 and len(backups(rig)) == 5, "an orphaned backup was deleted under keep"
    assert all(b.orphaned for b in kept)
    assert all(b.source_gone_at is not None and b.source_gone_at >= deleted_at for b in kept)
    assert all(b.source_last_seen_at is not None for b in kept)
    assert all(b.source_last_seen_at <= deleted_at for b in kept)  # type: ignore[operator]
    assert len(rig.sim.images()) == 5


def test_expire_after_forgets_them_once_the_duration_since_last_seen_has_passed(
    rig: Rig,
) -> None:
    policy(rig, orphans="expire-after 90d", targets=("web-1",))
    deleted_at = five_backups_then_delete_the_server(rig, targets=("web-1",))
    rig.engine.drain(deleted_at + 89 * DAY)
    assert len(live(rig)) == 5 and all(b.orphaned for b in live(rig))
    rig.engine.drain(deleted_at + 91 * DAY)
    (last,) = live(rig)  # the last good backup stays: only `backup delete --force` takes it
    assert last.created_at == max(b.created_at for b in backups(rig))
    gone = [b for b in backups(rig) if b.status is BackupStatus.DELETED]
    assert len(gone) == 4
    assert all(r.startswith("forgotten: its server is gone") for b in gone for r in b.reasons)
    assert len(rig.sim.images()) == 1  # the collector deleted the cloud artifacts


def test_keep_last_keeps_the_newest_of_a_selector_policys_gone_server(rig: Rig) -> None:
    policy(rig, orphans="keep-last 2", selector="backup=nightly")
    deleted_at = five_backups_then_delete_the_server(rig, selector="backup=nightly")
    rig.engine.drain(deleted_at + 2 * DAY)
    newest = sorted(backups(rig), key=lambda b: b.created_at)[-2:]
    assert {b.id for b in live(rig)} == {b.id for b in newest}


def test_a_server_the_cloud_cannot_be_asked_about_is_not_taken_for_gone(rig: Rig) -> None:
    made = policy(rig, orphans="keep-last 1", targets=("web-1",))
    five_backups_then_delete_the_server(rig, targets=("web-1",))

    def unreachable(_name: str | None) -> object:
        class Down:
            def get_server(self, _server: str) -> None:
                raise CloudUnavailable("the cloud is down")

        return Down()

    sweeper = OrphanSweeper(rig.store, unreachable, rig.clock)  # type: ignore[arg-type]
    assert sweeper.sweep(made) == 0
    assert len(live(rig)) == 5 and not any(b.orphaned for b in live(rig))


def test_a_server_seen_again_is_no_longer_orphaned(rig: Rig) -> None:
    made = policy(rig, targets=("web-1",))
    five_backups_then_delete_the_server(rig, targets=("web-1",))
    sweeper = OrphanSweeper(rig.store, lambda _name: rig.sim, rig.clock)
    sweeper.sweep(made)
    target = live(rig)[0].target
    assert all(b.orphaned for b in live(rig))
    rig.clock.advance(7200)
    rig.store.record_source(target, now=rig.clock.now(), exists=True)
    assert not any(b.orphaned for b in live(rig))
    assert all(b.source_last_seen_at == rig.clock.now() for b in live(rig))


def test_a_run_that_finds_its_server_gone_records_its_backups_orphaned_at_once(
    rig: Rig,
) -> None:
    server = rig.sim.create_server("web-1")
    policy(rig, targets=(server.id,))
    rig.engine.drain(rig.clock.now() + 5 * DAY)
    rig.sim.delete_server(server.id)
    deleted_at = rig.clock.now()
    rig.engine.orphans.interval = timedelta(days=1000)  # no sweep from now on: the run tells
    rig.engine.drain(deleted_at + DAY)
    runs = rig.store.list_runs()
    assert "no longer exists" in (runs[0].error or "")
    assert len(live(rig)) == 5 and all(b.orphaned for b in live(rig))
    first = {b.id: b.source_gone_at for b in live(rig)}
    rig.engine.drain(deleted_at + 3 * DAY)
    assert {b.id: b.source_gone_at for b in live(rig)} == first  # the first time is kept
