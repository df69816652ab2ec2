"""The per-host limit of snapshots in progress, in the store: claims and the start write.

Run on SQLite and (marked ``postgres``) on a real PostgreSQL by the ``store`` fixture.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from stackback.errors import HostBusy
from stackback.policy import Run, RunState
from stackback.store.database import create_db_engine, downgrade, upgrade
from stackback.store.sql import SqlStore

T0 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
LEASE = 600.0


def _pending(store: SqlStore, target: str, *, cloud: str | None = None) -> Run:
    return store.create_manual_run(target=target, now=T0, label=None, retention=None, cloud=cloud)


def _start(store: SqlStore, target: str, host: str, *, cloud: str | None = None) -> Run:
    """A run of ``target`` whose snapshot is in progress on ``host``."""
    run = _pending(store, target, cloud=cloud)
    [claimed] = store.claim_runs(T0, "w0", lease_seconds=LEASE, run_id=run.id)
    return store.update_run(run.id, claimed.attempt, state=RunState.SNAPSHOTTING, host=host)


def _waiting_for_host(store: SqlStore, target: str, host: str) -> Run:
    """A pending run whose host was learnt by a start that found the host full."""
    run = _pending(store, target)
    [claimed] = store.claim_runs(T0, "w0", lease_seconds=LEASE, run_id=run.id)
    return store.update_run(
        run.id, claimed.attempt, host=host, lease_owner=None, lease_expires_at=None
    )


def test_a_claim_leaves_a_pending_run_whose_host_is_full(store: SqlStore) -> None:
    _start(store, "a", "h1")
    running = _start(store, "b", "h1")
    store.update_run(running.id, running.attempt, state=RunState.WAITING)
    queued = _waiting_for_host(store, "c", "h1")

    assert store.claim_runs(T0, "w1", lease_seconds=LEASE, host_limit=2) == []
    assert store.next_wakeup(2) == T0 + timedelta(seconds=LEASE)  # the running ones' leases
    assert store.next_wakeup() == T0
    [claimed] = store.claim_runs(T0, "w1", lease_seconds=LEASE, host_limit=3)
    assert claimed.id == queued.id


def test_without_a_limit_a_full_host_does_not_hold_a_run_back(store: SqlStore) -> None:
    _start(store, "a", "h1")
    queued = _waiting_for_host(store, "c", "h1")

    [claimed] = store.claim_runs(T0, "w1", lease_seconds=LEASE)
    assert claimed.id == queued.id


def test_a_host_gets_room_when_a_snapshot_is_found_available(store: SqlStore) -> None:
    running = _start(store, "a", "h1")
    queued = _waiting_for_host(store, "c", "h1")
    assert store.claim_runs(T0, "w1", lease_seconds=LEASE, host_limit=1) == []

    store.update_run(running.id, running.attempt, state=RunState.ROTATING)
    assert store.next_wakeup(1) == T0
    [claimed] = store.claim_runs(T0, "w1", lease_seconds=LEASE, host_limit=1)
    assert claimed.id == queued.id


def test_a_run_whose_host_is_unknown_is_claimed_to_learn_it(store: SqlStore) -> None:
    _start(store, "a", "h1")
    fresh = _pending(store, "c")

    [claimed] = store.claim_runs(T0, "w1", lease_seconds=LEASE, host_limit=1)
    assert claimed.id == fresh.id


def test_other_hosts_and_other_clouds_do_not_count(store: SqlStore) -> None:
    _start(store, "a", "h1")
    _start(store, "b", "h2")
    _start(store, "c", "h3", cloud="east")
    queued = _waiting_for_host(store, "d", "h3")  # cloud None: h3 of another cloud

    [claimed] = store.claim_runs(T0, "w1", lease_seconds=LEASE, host_limit=1)
    assert claimed.id == queued.id


def test_a_start_beyond_the_limit_raises_and_writes_nothing(store: SqlStore) -> None:
    _start(store, "a", "h1")
    run = _pending(store, "b")
    [claimed] = store.claim_runs(T0, "w1", lease_seconds=LEASE, host_limit=1)

    with pytest.raises(HostBusy):
        store.update_run(
            run.id, claimed.attempt, state=RunState.SNAPSHOTTING, host="h1", host_limit=1
        )
    after = store.get_run(run.id)
    assert (after.state, after.host) == (RunState.PENDING, None)
    started = store.update_run(
        run.id, claimed.attempt, state=RunState.SNAPSHOTTING, host="h1", host_limit=2
    )
    assert (started.state, started.host) == (RunState.SNAPSHOTTING, "h1")


def test_a_start_without_a_limit_or_a_host_is_not_counted(store: SqlStore) -> None:
    _start(store, "a", "h1")
    unknown, unlimited = _pending(store, "b"), _pending(store, "c")
    for run in (unknown, unlimited):
        store.claim_runs(T0, "w1", lease_seconds=LEASE, run_id=run.id)
    store.update_run(unknown.id, 1, state=RunState.SNAPSHOTTING, host_limit=1)
    store.update_run(unlimited.id, 1, state=RunState.SNAPSHOTTING, host="h1")
    assert store.get_run(unlimited.id).state is RunState.SNAPSHOTTING


def test_concurrent_starts_on_one_host_never_exceed_the_limit(store: SqlStore) -> None:
    """Workers of several replicas starting runs of one host at the same instant."""
    runs = [_pending(store, f"srv-{i}") for i in range(6)]
    claimed = store.claim_runs(T0, "w1", lease_seconds=LEASE, limit=6, host_limit=2)
    assert len(claimed) == 6
    barrier = threading.Barrier(len(claimed))
    outcomes: list[str] = []

    def start(run: Run) -> None:
        barrier.wait()
        try:
            store.update_run(
                run.id, run.attempt, state=RunState.SNAPSHOTTING, host="h1", host_limit=2
            )
            outcomes.append("started")
        except HostBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=start, args=(run,)) for run in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["busy"] * 4 + ["started"] * 2
    snapshotting = [r for r in runs if store.get_run(r.id).state is RunState.SNAPSHOTTING]
    assert len(snapshotting) == 2


def test_a_claim_takes_no_more_runs_of_a_host_than_it_has_room_for(store: SqlStore) -> None:
    _start(store, "a", "h1")
    queued = [_waiting_for_host(store, f"q{i}", "h1") for i in range(3)]
    elsewhere = _waiting_for_host(store, "e", "h2")
    unknown = _pending(store, "u")

    claimed = store.claim_runs(T0, "w1", lease_seconds=LEASE, limit=10, host_limit=2)
    assert {r.id for r in claimed} - {elsewhere.id, unknown.id} <= {q.id for q in queued}
    assert len(claimed) == 3  # one of h1's queue, h2's run, the run of an unknown host
    left = [q for q in queued if store.get_run(q.id).lease_owner is None]
    assert len(left) == 2


def test_migration_says_the_kind_of_each_recorded_host(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_db_engine(url)
    upgrade(engine, "0019")
    hashed = "ab" * 28
    with engine.begin() as connection:
        for run_id, host in (
            ("r1", f"'{hashed}'"),
            ("r2", "'compute-7'"),
            ("r3", "NULL"),
            ("r4", "'host:compute-8'"),
        ):
            connection.execute(
                text(
                    "INSERT INTO runs (id, target, scheduled_for, due_at, state, attempt,"
                    ' "trigger", created_at, host) VALUES'
                    f" ('{run_id}', 's', '2026-01-01', '2026-01-01', 'succeeded', 1, 'manual',"
                    f" '2026-01-01', {host})"
                )
            )
    upgrade(engine)
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, host FROM runs")).all())
    assert rows == {
        "r1": f"hostid:{hashed}",
        "r2": "host:compute-7",
        "r3": None,
        "r4": "host:compute-8",
    }
    downgrade(engine, "0019")
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, host FROM runs")).all())
    engine.dispose()
    assert rows == {"r1": hashed, "r2": "compute-7", "r3": None, "r4": "compute-8"}
