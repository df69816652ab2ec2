"""Helpers for the CLI tests: run ``stackback`` in-process or as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stackback.cli import main
from stackback.clock import SystemClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig
from stackback.engine.settings import EngineSettings

STACKBACK = Path(sys.executable).with_name("stackback")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


CliRunner = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """``cli("policy", "list", stdin="...")`` runs ``stackback.cli.main`` and captures it."""
    monkeypatch.setenv("COLUMNS", "250")  # tables wide enough not to wrap cells

    def run(*args: str, stdin: str | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def ok_json(cli: CliRunner, *args: str, stdin: str | None = None) -> Any:
    """Run a command with ``-f json`` that must succeed; its parsed output."""
    result = cli(*args, "-f", "json", stdin=stdin)
    assert result.code == 0, result.err
    return result.json()


def start_process(*args: str, stdin: str | None = None) -> subprocess.Popen[str]:
    """The installed console script in a real process (inherits STACKBACK_STATE_DIR).

    Call ``communicate()`` on it; start several before waiting, as each takes a second
    or two to import.
    """
    process = subprocess.Popen(
        [str(STACKBACK), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stdin is not None
    process.stdin.write(stdin or "")
    process.stdin.close()
    process.stdin = None  # communicate() must not touch it again
    return process


def assert_one_line_error(err: str, *words: str) -> None:
    """One line on stderr, no traceback, naming the problem."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


@dataclass
class Sim:
    cloud: SimulatedCloud
    path: Path

    @property
    def spec(self) -> str:
        return f"sim:{self.path}"


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sim]:
    """A simulated cloud with fast images, and ``backup now --wait`` polling it quickly.

    ``--wait`` polls at the engine's default pace (15 s); the simulator's images
    are ready in 0.2 s, so the tests poll every 50 ms instead.
    """
    path = tmp_path / "sim.sqlite"
    cloud = SimulatedCloud(path, SystemClock(), project="demo")
    cloud.configure(
        SimConfig(
            image_snapshot_seconds=0.1,
            image_base_seconds=0.1,
            image_seconds_per_gb=0,
            volume_snapshot_seconds=0.1,
        )
    )
    fast = EngineSettings(poll_interval=timedelta(seconds=0.05))
    monkeypatch.setattr("stackback.services.runs.WAIT_SETTINGS", fast)
    try:
        yield Sim(cloud, path)
    finally:
        cloud.close()


@pytest.fixture
def fast_restores(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated boots and volumes ready in 0.1 s, and ``restore --wait`` polling every 50 ms."""
    config = sim.cloud.config()
    sim.cloud.configure(replace(config, server_boot_seconds=0.1, volume_create_seconds=0.1))
    monkeypatch.setattr("stackback.cli.restore.WAIT_POLL", timedelta(seconds=0.05))


def backup_of(cli: CliRunner, sim: Sim, server: str) -> str:
    """The id of a backup of ``server`` taken now (``backup now --wait``)."""
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", server, "--wait")
    backup_id: str = run["backup_id"]
    return backup_id


def servers_and_volumes(sim: Sim) -> tuple[int, int]:
    """How many servers and volumes the simulated cloud holds (every project)."""
    with sim.cloud._db.transaction() as conn:
        servers = conn.execute("SELECT count(*) FROM servers").fetchone()[0]
        volumes = conn.execute("SELECT count(*) FROM volumes").fetchone()[0]
    return int(servers), int(volumes)
