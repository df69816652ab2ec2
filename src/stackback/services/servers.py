"""Servers as the cloud knows them: checking names when they are given, and coverage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stackback.errors import CloudError, CloudNotFound, NotFound, ServerLookupFailed
from stackback.policy import Policy
from stackback.ports import CloudResolver, ServerInfo


def describe_server(server: ServerInfo) -> str:
    """A server for messages: its name, with its id in brackets."""
    return f"{server.name} [{server.id}]"


class ServerDirectory:
    """Asks a policy's cloud about the servers a command names."""

    def __init__(self, clouds: CloudResolver) -> None:
        self.clouds = clouds

    def require(self, server: str, cloud: str | None) -> ServerInfo:
        """The server named ``server`` (name or id) in ``cloud``.

        ``NotFound`` (bad input) when the cloud has no such server; ``ServerLookupFailed``
        when the cloud cannot be asked (unreachable, refused credentials, 5xx).
        """
        where = f"cloud {cloud!r}" if cloud else "the cloud"
        try:
            return self.clouds(cloud).get_server(server)
        except CloudNotFound:
            raise NotFound(
                f"no server {server!r} in {where} (give its name or id; --offline skips this check)"
            ) from None
        except CloudError as error:
            raise ServerLookupFailed(
                f"cannot check server {server!r} in {where} ({error.code}: {error.message}); "
                "--offline skips this check"
            ) from error

    def require_all(self, servers: Sequence[str], cloud: str | None) -> list[ServerInfo]:
        return [self.require(server, cloud) for server in servers]


@dataclass(frozen=True)
class Coverage:
    """Which policies back a server up, judged from what the cloud says of it."""

    server: ServerInfo | None
    """None when the server was not found (or no cloud was asked)."""
    checked: bool
    """Whether a cloud was asked (so that ``server is None`` means "does not exist")."""
    explicit: tuple[Policy, ...]
    by_selector: tuple[Policy, ...]
    """Selector policies that match the server's metadata (all of them if it is unknown)."""


def coverage(
    server_ref: str, server: ServerInfo | None, checked: bool, policies: Sequence[Policy]
) -> Coverage:
    """The policies that cover a server: naming it (by name or id) or selecting its metadata."""
    names = {server_ref} | ({server.id, server.name} if server else set())
    explicit = tuple(p for p in policies if names & set(p.targets))
    by_selector = tuple(
        p
        for p in policies
        if p.selector is not None and (server is None or p.selector.matches(dict(server.metadata)))
    )
    return Coverage(server, checked, explicit, by_selector)
