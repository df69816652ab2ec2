"""Helpers for tests that run stackback engine processes for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

STACKBACK = [sys.executable, "-m", "stackback"]


def start(
    args: Sequence[str], *, env: dict[str, str] | None = None, log: Path
) -> subprocess.Popen[bytes]:
    """Start ``stackback ARGS`` in its own process group, output to ``log``."""
    handle = log.open("ab")
    return subprocess.Popen(
        [*STACKBACK, *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def stop(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 20) -> list[int]:
    """SIGTERM, then wait; SIGKILL whatever is still there. Returns the exit codes."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            codes.append(process.wait())
    return codes


def wait_until(predicate: Callable[[], bool], timeout: float, *, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
