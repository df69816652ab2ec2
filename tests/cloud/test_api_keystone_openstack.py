"""The API (and its dashboard) in keystone mode against the plane's real Keystone, wired as
``stackback api --auth keystone`` wires it: project beta cannot see, change, run, restore
or delete anything of alpha's through any endpoint, a reader cannot write, a policy
created through the API runs through its trust after its creator's token is revoked, and
that trust outlives the deleted policy until its last backup is gone.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from openstack.connection import Connection

from stackback.cli.api_server import ApiServer, api_server
from stackback.cli.context import AppContext
from stackback.config import load_settings
from stackback.engine.collector import Collector
from stackback.engine.restore import RestoreRunner
from stackback.engine.runner import Runner
from stackback.engine.worker import Worker
from stackback.policy import RunState
from stackback.records import CredentialState, credential_id_of
from stackback.restoreplan import RestoreState
from stackback.store.database import create_db_engine, upgrade
from tests.api.isolation import assert_project_isolation
from tests.cloud.test_keystone_openstack import (  # noqa: F401 - module-scoped fixtures
    SERVICE_CLOUD,
    Identities,
    identities,
    revoke,
    secrets_stay_out_of_logs,
)

pytestmark = pytest.mark.openstack
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def keystone_app(
    identities: Identities,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[AppContext, ApiServer]]:
    """``stackback api --auth keystone --port 0`` in this process (no token cache: every
    request asks Keystone)."""
    for name in ("OS_CLOUD", "STACKBACK_CLOUD", "STACKBACK_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(identities.clouds_yaml))
    monkeypatch.setenv("STACKBACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STACKBACK_KEYSTONE_CLOUD", SERVICE_CLOUD)
    monkeypatch.setenv("STACKBACK_KEYSTONE_CACHE_SECONDS", "0")
    app = AppContext(load_settings=load_settings)
    upgrade(create_db_engine(app.settings.db_url))
    options = {"listen": "127.0.0.1", "port": 0, "auth": "keystone", "policy_file": None}
    server = api_server(app, options)
    server.start()
    try:
        yield app, server
    finally:
        server.stop()
        app.close()


def _drive(app: AppContext, run_id: str) -> Any:
    """A worker cycle until the run ends (the worker acts through the policy's credential)."""
    worker = Worker(app.store, Runner(app.store, app.clouds, app.clock), app.clock)
    deadline = time.monotonic() + 60
    while not app.store.get_run(run_id).state.is_terminal:
        assert time.monotonic() < deadline, app.store.get_run(run_id)
        worker.work_once()
        time.sleep(0.3)
    return app.store.get_run(run_id)


def _ok(client: httpx.Client, token: str, method: str, url: str, status: int, **kw: Any) -> Any:
    response = client.request(method, url, headers={"X-Auth-Token": token}, **kw)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _dashboard_policies(client: httpx.Client, token: str) -> str:
    client.cookies.clear()
    login = client.get("/login")
    found = CSRF.search(login.text)
    assert found is not None
    client.post("/login", data={"token": token, "csrf_token": found.group(1)})
    page = client.get("/policies")
    assert page.status_code == 200, page.text
    return page.text


def test_projects_are_isolated_and_a_policy_runs_through_its_trust(
    identities: Identities,  # noqa: F811
    keystone_app: tuple[AppContext, ApiServer],
    secrets_stay_out_of_logs: list[str],  # noqa: F811
) -> None:
    app, server = keystone_app
    # The test's HTTP client traces every response's headers at DEBUG (httpcore), the
    # dashboard's Set-Cookie among them: the session cookie holds the token only sealed.
    member = identities.users["alpha-member"]
    conn = Connection(
        session=member.session(identities.auth_url), region_name="RegionOne", interface="public"
    )
    booted = conn.compute.create_server(
        name=f"api-ks-{uuid.uuid4().hex[:8]}",
        image_id=conn.image.find_image("stackback-tiny", ignore_missing=False).id,
        flavor_id=conn.compute.find_flavor("m1.tiny", ignore_missing=False).id,
        networks="none",
    )
    tokens = {
        key: identities.users[key].token(identities.auth_url)
        for key in ("alpha-member", "alpha-reader", "beta-member")
    }
    secrets_stay_out_of_logs.extend(tokens.values())
    owner = tokens["alpha-member"]
    try:
        conn.compute.wait_for_server(booted, interval=1, wait=180)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            body = {
                "name": f"alpha-{uuid.uuid4().hex[:6]}",
                "targets": [booted.id],
                "schedules": ["0 1 * * *"],
                "retention": {"last": 3},
            }
            policy = _ok(client, owner, "POST", "/v1/policies", 201, json=body)
            assert policy["project"] == identities.alpha
            assert policy["cloud"].startswith("credential:")  # a trust from alpha's member
            runs = _ok(client, owner, "POST", f"/v1/policies/{policy['id']}/run", 202)
            done = _drive(app, runs[0]["id"])
            assert done.state is RunState.SUCCEEDED, done.error
            restore = _ok(
                client, owner, "POST", f"/v1/backups/{done.backup_id}/restore", 202, json={}
            )
            _ok(client, owner, "POST", f"/v1/servers/{booted.id}/enable", 200, json={})
            alpha = {
                "policy": policy["id"],
                "run_id": done.id,
                "backup_id": str(done.backup_id),
                "restore_id": restore["id"],
                "server": booted.id,
            }
            checked = assert_project_isolation(
                client,
                alpha=alpha,
                owner_token=owner,
                intruder_token=tokens["beta-member"],
                reader_token=tokens["alpha-reader"],
            )
            assert "POST /v1/policies/{policy}/run" in checked
            assert "POST /v1/backups/{backup_id}/restore" in checked
            assert policy["name"] not in _dashboard_policies(client, tokens["beta-member"])
            assert policy["name"] in _dashboard_policies(client, owner)
            assert client.get(f"/policies/{policy['id']}").status_code == 200
            _dashboard_policies(client, tokens["beta-member"])
            assert client.get(f"/policies/{policy['id']}").status_code == 404

            revoke(identities, owner)
            assert client.get("/v1/policies", headers={"X-Auth-Token": owner}).status_code == 401
            later = app.services.policies.run_now(policy["id"])  # as the scheduler would
            again = _drive(app, later[0].id)
            assert again.state is RunState.SUCCEEDED, again.error

            fresh = member.token(identities.auth_url)
            secrets_stay_out_of_logs.append(fresh)
            for listed in _ok(client, fresh, "GET", "/v1/policies", 200)["items"]:
                _ok(client, fresh, "DELETE", f"/v1/policies/{listed['id']}", 204)
            _the_trust_outlives_the_policy_until_its_last_backup(
                app, client, identities, fresh, policy["cloud"]
            )
    finally:
        for image in conn.image.images(owner=identities.alpha):
            conn.image.delete_image(image, ignore_missing=True)
        for found in conn.compute.servers():
            conn.compute.delete_server(found, ignore_missing=True)


def _the_trust_outlives_the_policy_until_its_last_backup(
    app: AppContext,
    client: httpx.Client,
    identities: Identities,  # noqa: F811
    token: str,
    cloud: str,
) -> None:
    """The deleted policy's backups still need its trust (to be deleted, rotated or
    restored): retired, still working in Keystone, and deleted there with the last backup."""
    credential = app.store.get_credential(str(credential_id_of(cloud)))
    assert credential.state is CredentialState.RETIRED, credential
    identities.keystone().trust_connection(credential.keystone_id).authorize()
    runner = RestoreRunner(
        app.store, app.clouds, app.clock, owner="w-plane", poll=timedelta(seconds=1)
    )
    for restore in _ok(client, token, "GET", "/v1/restores", 200)["items"]:
        app.services.restores.cancel(restore["id"])  # the backup's restore, never started
        assert runner.drive(restore["id"]).state is RestoreState.CANCELLED
    backups = _ok(client, token, "GET", "/v1/backups", 200)["items"]
    assert backups, "the policy's backups outlive it"
    for backup in backups:
        _ok(client, token, "DELETE", f"/v1/backups/{backup['id']}?force=true", 202)
    collector = Collector(
        app.store, app.clouds, app.clock, release_credential=app.services.release_credential
    )
    deadline = time.monotonic() + 120
    while app.store.get_credential(credential.id).state is not CredentialState.REVOKED:
        assert time.monotonic() < deadline, app.store.list_credentials()
        collector.collect_pending()
        time.sleep(1)
    with pytest.raises(Exception):  # noqa: B017 - the trust is gone: no token through it
        identities.keystone().trust_connection(credential.keystone_id).authorize()
