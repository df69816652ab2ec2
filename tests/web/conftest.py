"""The dashboard on the simulator: an app with only its router, test principals, helpers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stackback.clock import SystemClock, VirtualClock
from stackback.cloud import CloudProvider
from stackback.cloud.simulator import SimulatedCloud
from stackback.cloud.simulator.config import SimConfig
from stackback.engine.settings import EngineSettings
from stackback.errors import Forbidden, Unauthenticated
from stackback.policy import Run
from stackback.ports import Clock, Store
from stackback.services.access import Action, Principal
from stackback.services.factory import open_store
from stackback.services.runs import RunService
from stackback.web.router import make_router

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ADMIN_TOKEN = "admin-token-0123456789"
READER_TOKEN = "reader-token-0123456789"
FAST = EngineSettings(poll_interval=timedelta(seconds=0.05))
READ_ACTIONS = frozenset(
    {
        Action.POLICY_LIST,
        Action.POLICY_SHOW,
        Action.RUN_LIST,
        Action.RUN_SHOW,
        Action.BACKUP_LIST,
        Action.BACKUP_SHOW,
        Action.RESTORE_LIST,
        Action.RESTORE_SHOW,
        Action.STATUS_SHOW,
    }
)


class TokenAuthenticator:
    """Two fixed tokens: an admin and a reader."""

    principals = {
        ADMIN_TOKEN: Principal("u-admin", "p-alpha", frozenset({"admin"}), user_name="alice"),
        READER_TOKEN: Principal("u-reader", "p-alpha", frozenset({"reader"}), user_name="rita"),
    }

    def authenticate(self, token: str | None) -> Principal:
        if token is None or token not in self.principals:
            raise Unauthenticated("the token is not valid")
        return self.principals[token]


@dataclass
class RecordingAuthorizer:
    """Readers read, admins do everything; remembers every question it was asked."""

    asked: list[tuple[str, Action, str | None]] = field(default_factory=list)

    def authorize(self, principal: Principal, action: Action, project_id: str | None) -> None:
        self.asked.append((principal.user_id, action, project_id))
        if "admin" in principal.roles or action in READ_ACTIONS:
            return
        raise Forbidden(f"{principal.user_name} may not {action.value}")


def build_app(world: World, authorizer: RecordingAuthorizer) -> FastAPI:
    """An app with only the dashboard's router, as the API app includes it."""
    app = FastAPI()
    app.include_router(
        make_router(
            store=world.store,
            clouds=world.clouds,
            clock=world.clock,
            authenticator=TokenAuthenticator(),
            authorizer=authorizer,
            default_cloud=world.spec,
        )
    )
    return app


CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None and found.group(1), "no CSRF token on the page"
    return found.group(1)


@dataclass
class Dashboard:
    client: TestClient
    world: World
    authorizer: RecordingAuthorizer

    @property
    def sim(self) -> SimulatedCloud:
        return self.world.sim

    @property
    def store(self) -> Store:
        return self.world.store

    def login(self, token: str = ADMIN_TOKEN) -> None:
        page = self.client.get("/login")
        response = self.client.post(
            "/login", data={"token": token, "csrf_token": csrf_of(page.text)}
        )
        assert response.status_code == 303, response.text

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, page: str = "/policies"
    ) -> httpx.Response:
        """Post a form as the page it is on would (with that page's CSRF token)."""
        token = csrf_of(self.client.get(page).text)
        return self.client.post(path, data={**(data or {}), "csrf_token": token})

    def drive(self, run_id: str) -> Run:
        """A worker takes the run until it ends (the simulator's images are ready at once)."""
        return drive(self.world, run_id)


def drive(world: World, run_id: str) -> Run:
    """A worker takes the run until it ends (the simulator's images are ready at once)."""
    return RunService(world.store, world.clouds, world.clock, FAST).wait(run_id, timeout=60)


def fast_simulator(path: Path) -> SimulatedCloud:
    cloud = SimulatedCloud(path, SystemClock(), project="demo")
    cloud.configure(
        SimConfig(
            image_snapshot_seconds=0.05,
            image_base_seconds=0.05,
            image_seconds_per_gb=0,
            volume_snapshot_seconds=0.05,
            server_boot_seconds=0.05,
            volume_create_seconds=0.05,
        )
    )
    return cloud


@dataclass
class World:
    """A fresh catalogue and a simulated cloud with fast images, on one clock."""

    store: Store
    clouds: CloudProvider
    sim: SimulatedCloud
    spec: str

    @property
    def clock(self) -> Clock:
        return self.clouds.clock

    def close(self) -> None:
        self.store.dispose()
        self.sim.close()


def make_world(directory: Path, clock: Clock) -> World:
    sim_path = directory / "sim.sqlite"
    sim = fast_simulator(sim_path)
    spec = f"sim:{sim_path}"
    store = open_store(f"sqlite:///{directory / 'stackback.db'}")
    return World(store, CloudProvider(spec, clock, directory / "state"), sim, spec)


@pytest.fixture
def clock() -> VirtualClock:
    """Time moves only when a test (or a worker's wait) moves it."""
    return VirtualClock(T0)


@pytest.fixture
def world(tmp_path: Path, clock: VirtualClock) -> Iterator[World]:
    made = make_world(tmp_path, clock)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def dash(world: World) -> Iterator[Dashboard]:
    """The dashboard in a TestClient, logged out."""
    authorizer = RecordingAuthorizer()
    app = build_app(world, authorizer)
    with TestClient(app, follow_redirects=False) as client:
        yield Dashboard(client, world, authorizer)
