"""Engine processes under systemd (``Type=notify``): readiness, and a graceful stop.

A real ``stackback worker`` / ``serve`` process, on the simulator, with ``NOTIFY_SOCKET``
naming a datagram socket of this test (as systemd does): ``READY=1`` arrives once it
serves; SIGTERM in the middle of a batch brings ``STOPPING=1`` and exit 0 within the
lease, and leaves no run leased (each is finished, or given back for another worker).
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackback.clock import SystemClock
from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig
from stackback.policy import Run
from stackback.store.sql import RunFilter, SqlStore
from tests.engine.processes import start, stop, wait_until

pytestmark = pytest.mark.slow

LEASE = 60.0
SERVERS = 4


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    """A datagram socket like systemd's (in a short directory: socket paths are short)."""
    directory = tempfile.mkdtemp(prefix="sb-notify-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(directory, "notify"))
    try:
        yield sock
    finally:
        sock.close()
        os.unlink(os.path.join(directory, "notify"))
        os.rmdir(directory)


def receive_until(sock: socket.socket, key: str, timeout: float) -> list[dict[str, str]]:
    """Every message received until one carrying ``key``; fails after ``timeout`` seconds."""
    messages: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {key} within {timeout} s; got {messages}")
        sock.settimeout(left)
        data = sock.recv(4096).decode()
        message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        messages.append(message)
        if key in message:
            return messages


def held(store: SqlStore, worker: str) -> list[Run]:
    return [r for r in store.list_runs(RunFilter(limit=100)) if r.lease_owner == worker]


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_ready_then_a_graceful_stop_on_sigterm(
    command: str,
    store: SqlStore,
    db_url: str,
    tmp_path: Path,
    notify_socket: socket.socket,
) -> None:
    sim_path = tmp_path / "cloud.sqlite"
    sim = SimulatedCloud(sim_path, SystemClock(), project="demo")
    # Every cloud call takes a second: a batch of runs lasts long enough to be stopped in.
    sim.configure(
        SimConfig(
            latency_seconds=1, image_snapshot_seconds=1, image_base_seconds=1,
            image_seconds_per_gb=0,
        )
    )  # fmt: skip
    cloud = f"sim:{sim_path}"
    now = SystemClock().now()
    for i in range(SERVERS):
        server = sim.create_server(f"web-{i}")
        store.create_manual_run(target=server.id, now=now, label=None, retention=None, cloud=cloud)
    sim.close()
    name = f"w-{command}"
    args = ["--db", db_url, "--os-cloud", cloud, command, "--worker-name", name]
    args += ["--lease", str(LEASE), "--poll-interval", "1"]
    if command == "serve":  # its API on any free port: never a clash with another process
        args += ["--port", "0"]
    address = notify_socket.getsockname()
    process = start(args, env={"NOTIFY_SOCKET": address}, log=tmp_path / f"{command}.log")
    try:
        ready = receive_until(notify_socket, "READY", timeout=120)[-1]
        assert ready["READY"] == "1" and name in ready["STATUS"]
        wait_until(lambda: bool(held(store, name)), 60, what="a batch of runs in progress")
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        stopping = receive_until(notify_socket, "STOPPING", timeout=LEASE)[-1]
        assert stopping["STOPPING"] == "1" and "stopping" in stopping["STATUS"]
        code = process.wait(LEASE)
        assert time.monotonic() - stopped_at < LEASE
    finally:
        stop([process])
    log = (tmp_path / f"{command}.log").read_text()
    assert code == 0, log
    assert held(store, name) == []  # finished or given back: another worker takes them now
    runs = store.list_runs(RunFilter(limit=100))
    assert len(runs) == SERVERS and any(r.attempt > 0 for r in runs)
