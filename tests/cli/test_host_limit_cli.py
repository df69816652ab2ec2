"""``--max-snapshots-per-host`` (or its environment variable) reaches the engine."""

from __future__ import annotations

from typing import Any

import pytest

from stackback.engine import loop
from stackback.policy import Run
from stackback.services.runs import RunService
from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json


def test_the_engine_gets_the_limit_from_the_option_or_the_environment(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int | None] = []

    def step(engine: loop.Engine, stop: object = None) -> int:
        seen.append(engine.settings.max_snapshots_per_host)
        return 0

    monkeypatch.setattr(loop.Engine, "step", step)
    assert cli("--os-cloud", "sim", "worker", "--once", "--max-snapshots-per-host", "3").code == 0
    monkeypatch.setenv("STACKBACK_MAX_SNAPSHOTS_PER_HOST", "5")
    assert cli("--os-cloud", "sim", "serve", "--once").code == 0
    monkeypatch.delenv("STACKBACK_MAX_SNAPSHOTS_PER_HOST")
    assert cli("--os-cloud", "sim", "scheduler", "--once").code == 0
    assert seen == [3, 5, None]


def test_backup_now_wait_takes_the_limit_from_the_environment(
    cli: CliRunner, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int | None] = []
    real_wait = RunService.wait

    def wait(service: RunService, run_id: str, **kwargs: Any) -> Run:
        seen.append(service.settings.max_snapshots_per_host)
        return real_wait(service, run_id, **kwargs)

    monkeypatch.setattr(RunService, "wait", wait)
    sim.cloud.create_server("web1")
    monkeypatch.setenv("STACKBACK_MAX_SNAPSHOTS_PER_HOST", "2")
    assert ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "web1", "--wait")["state"] == (
        "succeeded"
    )
    monkeypatch.setenv("STACKBACK_MAX_SNAPSHOTS_PER_HOST", "0")
    wrong = cli("--os-cloud", sim.spec, "backup", "now", "web1", "--wait")
    assert wrong.code == 2
    assert_one_line_error(wrong.err, "STACKBACK_MAX_SNAPSHOTS_PER_HOST")
    assert seen == [2]
