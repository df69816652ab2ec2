"""A verification's port check on a real cloud: a TCP connection to the server's addresses."""

from __future__ import annotations

import socket
from typing import Any

from openstack.connection import Connection

from stackback.cloud.openstack.errors import cloud_errors


def server_addresses(addresses: Any) -> list[str]:
    """The addresses in Nova's ``addresses`` (network name -> list of {addr, ...})."""
    if not isinstance(addresses, dict):
        return []
    return [
        str(entry["addr"])
        for entries in addresses.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict) and entry.get("addr")
    ]


def first_answer(addresses: list[str], port: int, timeout: float) -> str | None:
    """None when one of ``addresses`` accepts a TCP connection on ``port``; else why not."""
    if not addresses:
        return "the server has no address"
    reasons = []
    for address in addresses:
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return None
        except OSError as error:
            reasons.append(f"{address}: {error.strerror or error}")
    return "; ".join(reasons)


class OpenStackPortCheck:
    """Mixed into :class:`~stackback.cloud.openstack.OpenStackCloud`."""

    @property
    def conn(self) -> Connection:
        raise NotImplementedError

    @property
    def _where(self) -> str:
        raise NotImplementedError

    def check_port(self, server_id: str, port: int, timeout: float) -> str | None:
        """Connect to ``port`` on each of the server's addresses (from where stackback runs)."""
        with cloud_errors(f"reading the addresses of server {server_id} on {self._where}"):
            server = self.conn.compute.get_server(server_id)
        return first_answer(server_addresses(server.addresses), port, timeout)
