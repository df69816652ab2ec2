"""sd_notify: the datagrams systemd reads, and nothing at all without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from stackback.cli.serve import _Progress
from stackback.cli.systemd import Notifier
from stackback.clock import VirtualClock
from tests.conftest import T0


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="sb-notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert notifier.ready("serving") is False


def test_ready_stopping_and_status_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    assert notifier.ready("worker w1: serving")
    assert sock.recv(4096) == b"READY=1\nSTATUS=worker w1: serving"
    assert notifier.status("two\nlines")
    assert sock.recv(4096) == b"STATUS=two lines"  # one line: a newline would end the field
    assert notifier.stopping("stopping")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_an_abstract_socket_name_is_understood() -> None:
    name = f"stackback-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    with sock:
        assert Notifier(env={"NOTIFY_SOCKET": "@" + name}).ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"


def test_a_socket_that_is_gone_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier("/nonexistent/stackback/notify")
    assert notifier.enabled and notifier.ready("up") is False
    assert "could not notify" in caplog.text
    assert not Notifier("vsock:2:1234").enabled


def test_status_tells_progress_until_the_stop(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    progress = _Progress(Notifier(path), "worker w1", VirtualClock(T0))
    progress.started()
    assert sock.recv(4096) == b"READY=1\nSTATUS=worker w1: serving"
    progress.cycle(0)  # idle: nothing to tell
    progress.cycle(3)
    assert sock.recv(4096) == (
        b"STATUS=worker w1: serving; 3 steps since start, last at 2026-03-01 00:00:00 UTC"
    )
    progress.stopping = True
    progress._told = None
    progress.cycle(2)  # the stop's own STATUS stays
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
