"""The openstacksdk adapter's port check: Nova's addresses, and a real TCP connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from stackback.cloud.openstack.probe import OpenStackPortCheck, first_answer, server_addresses


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Fake(OpenStackPortCheck):
    def __init__(self, addresses: Any) -> None:
        server = SimpleNamespace(addresses=addresses)
        self._conn = SimpleNamespace(compute=SimpleNamespace(get_server=lambda _id: server))

    @property
    def conn(self) -> Any:
        return self._conn

    @property
    def _where(self) -> str:
        return "test"


def test_nova_addresses_are_read_from_every_network() -> None:
    addresses = {
        "private": [{"addr": "10.0.0.5", "version": 4}],
        "public": [{"addr": "172.24.4.9"}, {"version": 6}],
    }
    assert server_addresses(addresses) == ["10.0.0.5", "172.24.4.9"]
    assert server_addresses(None) == []


def test_a_listening_port_answers_and_a_closed_one_says_why(listening: int) -> None:
    assert _Fake({"net": [{"addr": "127.0.0.1"}]}).check_port("s", listening, 2.0) is None
    why = first_answer(["127.0.0.1"], _closed_port(), 2.0)
    assert why is not None and why.startswith("127.0.0.1:")
    assert _Fake({}).check_port("s", listening, 2.0) == "the server has no address"
