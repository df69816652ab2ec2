"""Schemathesis over the OpenAPI document, against the ASGI app on the simulator: no answer
is a 5xx, and every answer matches the schema the document gives for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stackback.api.app import create_app
from stackback.clock import SystemClock
from stackback.cloud import CloudProvider
from stackback.cloud.simulator import SimulatedCloud
from stackback.services.authz import PolicyAuthorizer
from stackback.services.container import Services
from stackback.services.factory import open_store
from stackback.store.database import create_db_engine, upgrade
from tests.api.conftest import PRINCIPALS, TokenTable, nightly

EXAMPLES = 20
"""Examples per operation and mode: a couple of minutes on two cores."""
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
]


@pytest.fixture
def api_schema(db_url: str, tmp_path: Path) -> Iterator[schemathesis.BaseSchema]:
    """The app over a catalogue (SQLite, PostgreSQL) with a policy, runs, backups and a
    restore of alpha's (so that lists answer with real items)."""
    tmp = tmp_path
    clock = SystemClock()
    cloud = SimulatedCloud(tmp / "sim.sqlite", clock, project="demo")
    cloud.create_server("web-1")
    spec = f"sim:{tmp / 'sim.sqlite'}"
    engine = create_db_engine(db_url)
    upgrade(engine)
    engine.dispose()
    store = open_store(db_url)
    services = Services(store, CloudProvider(spec, clock, tmp / "state"), clock)
    app = create_app(services, TokenTable(PRINCIPALS), PolicyAuthorizer(), default_cloud=spec)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        headers = {"X-Auth-Token": "alpha-member"}
        policy = client.post("/v1/policies", json=nightly("nightly", "web-1"), headers=headers)
        runs = client.post(f"/v1/policies/{policy.json()['id']}/run", headers=headers).json()
        services.runs.wait(runs[0]["id"], timeout=30)
        backup = services.runs.get(runs[0]["id"]).backup_id
        client.post(f"/v1/backups/{backup}/restore", json={}, headers=headers)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        store.dispose()
        cloud.close()


@pytest.mark.slow
def test_no_server_error_and_answers_match_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(headers={"X-Auth-Token": "alpha-member"}, checks=CHECKS)

            check()
