"""The consistency rules: what a run tries for a server, and when a pause still binds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stackback.consistency import (
    Action,
    ConsistencyLevel,
    Fallback,
    check_max_pause,
    choose_approach,
    parse_level,
    still_needs_pause,
)
from stackback.engine.consistent import pause_pending
from stackback.errors import InvalidInput
from stackback.policy import Step

AGENT = {"hw_qemu_guest_agent": "yes", "os_require_quiesce": "yes"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def approach(asked: str, fallback: str = "crash", **server: object):  # type: ignore[no-untyped-def]
    facts: dict[str, object] = {
        "server_status": "ACTIVE",
        "boot_properties": {},
        "volume_backed": False,
        "data_volumes": 1,
    }
    facts.update(server)
    return choose_approach(ConsistencyLevel(asked), Fallback(fallback), **facts)  # type: ignore[arg-type]


def test_crash_never_pauses() -> None:
    assert approach("crash").action is Action.NONE


def test_paused_pauses_an_active_server_and_keeps_a_paused_one_paused() -> None:
    assert approach("paused").action is Action.PAUSE
    assert approach("paused", server_status="PAUSED").action is Action.ALREADY_PAUSED


@pytest.mark.parametrize("status", ["SHUTOFF", "SUSPENDED", "ERROR"])
def test_a_server_that_cannot_be_paused_gets_the_fallback(status: str) -> None:
    crash = approach("paused", server_status=status)
    assert crash.action is Action.NONE and crash.level is ConsistencyLevel.CRASH
    assert status in crash.reason
    assert approach("paused", "fail", server_status=status).action is Action.FAIL


def test_quiesced_needs_agent_required_quiesce_active_and_nova_taking_every_disk() -> None:
    good = approach("quiesced", boot_properties=AGENT, volume_backed=True)
    assert good.action is Action.QUIESCE and good.level is ConsistencyLevel.QUIESCED
    for why, facts in {
        "guest agent not enabled": {"boot_properties": {}, "volume_backed": True},
        "quiesce not required": {
            "boot_properties": {"hw_qemu_guest_agent": "yes"},
            "volume_backed": True,
        },
        "server is PAUSED": {
            "boot_properties": AGENT,
            "volume_backed": True,
            "server_status": "PAUSED",
        },
        "data volumes": {"boot_properties": AGENT, "volume_backed": False},
        "not enforced": {"boot_properties": AGENT, "volume_backed": False, "data_volumes": 0},
    }.items():
        fallen = approach("quiesced", **facts)
        assert fallen.level is ConsistencyLevel.CRASH and why in fallen.reason, why
        assert approach("quiesced", "fail", **facts).action is Action.FAIL


def test_only_a_snapshot_not_yet_cut_needs_the_pause() -> None:
    assert still_needs_pause("queued") and still_needs_pause("creating")
    for state in ("saving", "active", "available", "error", "killed", "deleted", ""):
        assert not still_needs_pause(state)


def _step(name: str, outcome: str, detail: str = "") -> Step:
    return Step(name, T0, T0, outcome, detail)


def test_a_pause_without_an_unpause_after_it_is_pending_with_the_prior_state() -> None:
    asked = _step("pause", "requested", "server s1 was ACTIVE")
    assert pause_pending([_step("start", "ok"), asked]) == ("ACTIVE", T0)
    assert pause_pending([asked, _step("pause", "ok")]) == ("ACTIVE", T0)
    assert pause_pending([asked, _step("unpause", "ok")]) is None
    assert pause_pending([asked, _step("pause", "refused")]) is None
    assert pause_pending([asked, _step("unpause", "ok"), asked]) == ("ACTIVE", T0)
    assert pause_pending([_step("start", "ok")]) is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_level("frozen")
    for seconds in (0, -1, 3601):
        with pytest.raises(InvalidInput):
            check_max_pause(seconds)
