"""What `serve` logs: one INFO line per finished run, and every step at DEBUG."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.engine.conftest import Rig
from tests.engine.test_runs import DAY, daily


def test_one_info_line_per_finished_run_and_the_steps_at_debug(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    web = rig.sim.create_server("web")
    daily(rig, web.id, "ghost", last=1)
    with caplog.at_level(logging.DEBUG, logger="stackback"):
        rig.engine.drain(rig.clock.now() + 2 * DAY + timedelta(hours=2))
    finished = [r for r in caplog.records if " finished: " in r.getMessage()]
    succeeded = [r for r in finished if r.levelno == logging.INFO]
    failed = [r for r in finished if r.levelno == logging.WARNING]
    assert len(succeeded) == len(failed) >= 2  # one line per run, each night
    assert f"target web [{web.id}], succeeded in " in succeeded[-1].getMessage()
    assert "policy p0" in succeeded[-1].getMessage()
    assert "kept 1, forgot 1" in succeeded[-1].getMessage()
    assert "target ghost, failed in " in failed[0].getMessage()
    steps = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(m.endswith(f"step start ok: server {web.id} (web)") for m in steps)
    assert all(not m.startswith("run None") for m in steps if m.startswith("run "))
