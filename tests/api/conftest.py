"""The API on the simulator: an app per test, tokens for personas of two projects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stackback.api.app import create_app
from stackback.clock import SystemClock
from stackback.cloud import CloudProvider
from stackback.errors import Unauthenticated
from stackback.services.access import Principal
from stackback.services.authz import PolicyAuthorizer
from stackback.services.container import Services
from stackback.services.factory import open_store
from tests.cli.conftest import Sim, sim  # noqa: F401  (the simulator fixture)

PRINCIPALS = {
    "alpha-member": Principal("u-alpha", "alpha", frozenset({"member", "reader"})),
    "alpha-reader": Principal("u-alpha-reader", "alpha", frozenset({"reader"})),
    "beta-member": Principal("u-beta", "beta", frozenset({"member", "reader"})),
    "beta-reader": Principal("u-beta-reader", "beta", frozenset({"reader"})),
    "demo-member": Principal("u-demo", "demo", frozenset({"member", "reader"})),
    "cloud-admin": Principal("u-admin", "admin", frozenset({"admin", "member", "reader"})),
}


class TokenTable:
    """A test ``Authenticator``: each known token proves its principal."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self.principals = dict(principals)

    def authenticate(self, token: str | None) -> Principal:
        if token is None or token not in self.principals:
            raise Unauthenticated("unknown token")
        return self.principals[token]


def headers(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}


@dataclass
class Api:
    client: TestClient
    services: Services
    sim: Sim

    def as_(self, token: str, method: str, url: str, **kwargs: Any) -> Any:
        """A request with ``token``; the response."""
        extra = kwargs.pop("headers", {})
        return self.client.request(method, url, headers={**headers(token), **extra}, **kwargs)

    def ok(self, token: str, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.as_(token, method, url, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def wait_for_runs(self, runs: list[dict[str, Any]]) -> None:
        for run in runs:
            self.services.runs.wait(run["id"], timeout=30)


@pytest.fixture
def api(sim: Sim, tmp_path: Path) -> Iterator[Api]:  # noqa: F811
    clock = SystemClock()
    store = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    services = Services(store, CloudProvider(sim.spec, clock, tmp_path / "state"), clock)
    app = create_app(services, TokenTable(PRINCIPALS), PolicyAuthorizer(), default_cloud=sim.spec)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, services, sim)
    finally:
        store.dispose()


def nightly(name: str, *servers: str, **extra: Any) -> dict[str, Any]:
    """A policy body backing ``servers`` up nightly, keeping 3."""
    return {
        "name": name,
        "targets": list(servers),
        "schedules": ["0 1 * * *"],
        "timezone": "Europe/Amsterdam",
        "retention": {"last": 3},
        **extra,
    }
