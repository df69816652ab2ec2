"""``--max-snapshots-per-host`` (or its environment variable) reaches the engine."""

from __future__ import annotations

import pytest

from stackback.engine import loop
from tests.cli.conftest import CliRunner


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
