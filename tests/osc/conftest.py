"""Run ``openstack backup ...`` in this process: the openstack client's own shell, with
stackback's plugin acting as the simulated cloud (no plane, no Keystone)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stackback.config import load_settings
from stackback.osc.client import StackbackClient
from tests.cli import conftest as cli_conftest
from tests.cli.conftest import Result, Sim

# the CLI tests' fixtures: the simulated cloud, fast restores, `stackback` in process
cli = cli_conftest.cli
sim = cli_conftest.sim
fast_restores = cli_conftest.fast_restores


@pytest.fixture
def fast_osc_restores(fast_restores: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated boots in 0.1 s, and ``backup restore|verify --wait`` polling every 50 ms."""
    monkeypatch.setattr("stackback.osc.restore.WAIT_POLL", timedelta(seconds=0.05))


pytest.importorskip("openstackclient")

OscRunner = Callable[..., Result]


@pytest.fixture
def osc(
    sim: Sim,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> OscRunner:
    """``osc("backup", "list", "-f", "json")``: the openstack shell's exit code and output.

    The plugin's client acts as the simulated cloud instead of the openstack client's
    (which it would authenticate against); the database is ``STACKBACK_DB``.
    """
    from openstackclient import shell
    from osc_lib import clientmanager

    monkeypatch.setenv("STACKBACK_DB", f"sqlite:///{tmp_path / 'osc.db'}")
    monkeypatch.setenv("COLUMNS", "250")
    clients: list[StackbackClient] = []

    def simulated(manager: Any) -> StackbackClient:
        client = StackbackClient(lambda: load_settings(cloud=sim.spec))
        clients.append(client)
        return client

    monkeypatch.setattr(StackbackClient, "for_client_manager", staticmethod(simulated))

    def run(*args: str) -> Result:
        capsys.readouterr()
        handlers, level = list(logging.root.handlers), logging.root.level
        try:
            code = shell.main(list(args))
        except SystemExit as done:  # argparse's usage errors, as the real command exits
            code = int(done.code or 0)
        finally:
            # the shell logs to the stderr of this call (captured): not to the next call's
            logging.root.handlers[:] = handlers
            logging.root.setLevel(level)
            for client in clients:
                client.close()
            clients.clear()
            # the openstack client caches a plugin's client on its class: one per process
            vars(clientmanager.ClientManager)["backup"]._handle = None
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def osc_json(osc: OscRunner, *args: str) -> Any:
    """``openstack ARGS -f json``, which must succeed; its parsed output."""
    result = osc(*args, "-f", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)
