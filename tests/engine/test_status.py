"""``stackback status`` over real runs: ok, failing, late after downtime, never."""

from __future__ import annotations

from datetime import timedelta

from stackback.rpo import Verdict
from stackback.services.status import StatusService
from tests.engine.conftest import Rig
from tests.engine.test_runs import DAY, daily


def verdicts(rig: Rig) -> dict[str, tuple[Verdict, str]]:
    return {
        (r.target_name or r.target): (r.verdict, r.reason)
        for r in StatusService(rig.store, rig.clock).report()
    }


def test_status_follows_what_the_runs_did(rig: Rig) -> None:
    web = rig.sim.create_server("web")
    db = rig.sim.create_server("db")
    daily(rig, web.id, db.id, last=5)
    daily(rig, "ghost", last=5)  # a server the cloud does not have: every run fails
    assert {v for v, _ in verdicts(rig).values()} == {Verdict.OK}  # nothing promised yet

    rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
    now = verdicts(rig)
    assert now["web"][0] is Verdict.OK and now["db"][0] is Verdict.OK
    assert now["ghost"][0] is Verdict.NEVER and "last run failed" in now["ghost"][1]

    rig.sim.kill_next_image(db.id)
    rig.engine.drain(rig.clock.now() + DAY)
    now = verdicts(rig)
    assert now["web"][0] is Verdict.OK
    assert now["db"][0] is Verdict.FAILING and "last run failed" in now["db"][1]

    rig.clock.advance(3 * 86400)  # stackback was down: the occurrences are missed
    rig.engine.drain(rig.clock.now() + timedelta(minutes=5))
    now = verdicts(rig)
    assert now["web"][0] is Verdict.LATE and "missed" in now["web"][1]


def test_a_target_named_by_the_policy_is_one_row_whatever_its_runs_knew(rig: Rig) -> None:
    web = rig.sim.create_server("web")
    daily(rig, "web", last=5)  # named, not by id: a missed run knows only the name
    rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
    rig.clock.advance(3 * 86400)
    rig.engine.drain(rig.clock.now() + timedelta(minutes=5))
    rows = StatusService(rig.store, rig.clock).report()
    assert [(r.target, r.verdict) for r in rows] == [(web.id, Verdict.LATE)]
