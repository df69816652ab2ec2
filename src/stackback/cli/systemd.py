"""systemd's readiness protocol for the engine processes (``Type=notify`` units).

sd_notify(3): the service manager names a datagram socket in ``NOTIFY_SOCKET`` (a path,
or ``@name`` for Linux's abstract namespace); the service sends it newline-separated
``KEY=VALUE`` lines: ``READY=1`` once it serves, ``STOPPING=1`` when it begins to stop,
``STATUS=...`` a line ``systemctl status`` shows. Without ``NOTIFY_SOCKET`` (not started
by systemd, or not as ``Type=notify``) every call does nothing. A failed send is logged,
never raised: telling systemd is never worth stopping the backups for.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and anything newer: not for us


class Notifier:
    """Sends state changes to the service manager (``NOTIFY_SOCKET`` unless ``socket_path``)."""

    def __init__(
        self, socket_path: str | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        given = socket_path if socket_path is not None else (env or os.environ).get(ENV)
        self.address = _address(given) if given else None
        if given and self.address is None:
            log.warning("%s=%s is not a socket path this process can use", ENV, given)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines (keyword ``STATUS="..."``); True if the manager got them."""
        if self.address is None or not fields:
            return False
        message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as error:
            log.warning("could not notify the service manager (%s): %s", ENV, error)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)


def _one_line(value: str) -> str:
    return " ".join(value.splitlines())
