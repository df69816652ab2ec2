"""A stop (SIGTERM) ends the engine's cycle early: nothing more is scheduled or claimed."""

from __future__ import annotations

import threading
from datetime import timedelta

from stackback.records import RunFilter
from tests.engine.conftest import Rig
from tests.engine.test_runs import daily


def stopped() -> threading.Event:
    stop = threading.Event()
    stop.set()
    return stop


def test_a_stopping_engine_schedules_nothing(rig: Rig) -> None:
    web = rig.sim.create_server("web")
    daily(rig, web.id)
    rig.clock.advance(timedelta(hours=1, minutes=1).total_seconds())  # 01:00 is due
    assert rig.engine.step(stopped()) == 0
    assert rig.store.list_runs(RunFilter(limit=10)) == []
    assert rig.engine.step() > 0  # not stopping: the due run is scheduled


def test_a_stopping_engine_claims_no_run(rig: Rig) -> None:
    web = rig.sim.create_server("web")
    run = rig.store.create_manual_run(
        target=web.id, now=rig.clock.now(), label=None, retention=None, cloud=None
    )
    assert rig.engine.step(stopped()) == 0
    after = rig.store.get_run(run.id)
    assert (after.attempt, after.lease_owner) == (0, None)  # never claimed, not even briefly
