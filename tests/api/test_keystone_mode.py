"""keystone mode on the simulator: new policies get their credential (trust by default, or
the application credential the body names, whose secret is never echoed), and Keystone
unreachable is a 503 in the API's one error shape."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from stackback.api.app import create_app
from stackback.clock import SystemClock
from stackback.cloud import CloudProvider
from stackback.services.access import Principal
from stackback.services.authz import PolicyAuthorizer
from stackback.services.container import Services
from stackback.services.factory import open_store
from tests.api.conftest import PRINCIPALS, Api, TokenTable, headers, nightly
from tests.api.test_dashboard_scoping import _login
from tests.api.test_serve_cli import _start, _stop, _url
from tests.cli.conftest import Sim, sim  # noqa: F401  (the simulator fixture)
from tests.web.conftest import csrf_of
from tests.web.test_dashboard_policies import POLICY_FORM

SECRET = "app-cred-secret-never-echoed-0123456789"
UNREACHABLE_CLOUDS = """clouds:
  stackback-service:
    auth:
      auth_url: http://127.0.0.1:1/v3
      username: stackback
      password: unused
      project_name: service
      user_domain_name: Default
      project_domain_name: Default
"""


@dataclass
class Credentials:
    """Records what the API asked for; each new credential is the simulator's cloud."""

    cloud: str
    made: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    released: list[str | None] = field(default_factory=list)

    def new(self, principal: Principal, app_id: str | None, app_secret: str | None) -> str:
        self.made.append((principal.user_id, app_id, app_secret))
        return self.cloud

    def release(self, cloud: str | None) -> None:
        self.released.append(cloud)


@pytest.fixture
def keystone_api(sim: Sim, tmp_path: Path) -> Iterator[tuple[Api, Credentials]]:  # noqa: F811
    clock = SystemClock()
    store = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    credentials = Credentials(sim.spec)
    services = Services(
        store,
        CloudProvider(sim.spec, clock, tmp_path / "state"),
        clock,
        release_credential=credentials.release,
        new_credential=credentials.new,
    )
    app = create_app(services, TokenTable(PRINCIPALS), PolicyAuthorizer(), default_cloud=sim.spec)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, services, sim), credentials
    finally:
        store.dispose()


def test_a_new_policy_acts_through_a_trust_or_the_application_credential_named(
    keystone_api: tuple[Api, Credentials], caplog: pytest.LogCaptureFixture
) -> None:
    api, credentials = keystone_api
    caplog.set_level(logging.DEBUG)
    api.sim.cloud.create_server("web-1")
    api.ok("alpha-member", "POST", "/v1/policies", 201, json=nightly("by-trust", "web-1"))
    named = {"id": "app-1", "secret": SECRET}
    response = api.as_(
        "alpha-member",
        "POST",
        "/v1/policies",
        json=nightly("by-app-cred", "web-1", application_credential=named),
    )
    assert response.status_code == 201, response.text
    assert credentials.made == [("u-alpha", None, None), ("u-alpha", "app-1", SECRET)]
    assert "application_credential" not in response.json()
    for body in (response.text, api.as_("alpha-member", "GET", "/v1/policies").text):
        assert SECRET not in body
    assert SECRET not in caplog.text

    missing = api.as_("alpha-member", "POST", "/v1/policies", json=nightly("gone", "nope"))
    assert missing.status_code == 404 and SECRET not in missing.text
    assert credentials.released == [api.sim.spec]  # the failed policy's credential is given up


def test_the_secret_is_write_only_in_the_openapi_document(
    keystone_api: tuple[Api, Credentials],
) -> None:
    api, _ = keystone_api
    document = api.client.get("/openapi.json").json()
    secret = document["components"]["schemas"]["ApplicationCredentialIn"]["properties"]["secret"]
    assert secret.get("writeOnly") is True and secret.get("format") == "password"
    assert "example" not in secret and "examples" not in secret
    too_long = {"id": "app-1", "secret": "s" * 1025}
    refused = api.as_(
        "alpha-member",
        "POST",
        "/v1/policies",
        json=nightly("x", "web-1", application_credential=too_long),
    )
    assert refused.status_code == 422 and "s" * 1025 not in refused.text


@pytest.mark.slow  # a real `stackback api` process
def test_keystone_unreachable_is_a_503(
    sim: Sim,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(UNREACHABLE_CLOUDS)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    monkeypatch.setenv("STACKBACK_KEYSTONE_CLOUD", "stackback-service")
    monkeypatch.setenv("STACKBACK_KEYSTONE_TIMEOUT", "2")
    monkeypatch.setenv("STACKBACK_AUTH", "keystone")
    process, lines = _start("--os-cloud", sim.spec, "api", "--port", "0")
    try:
        assert not any("API token" in line for line in lines)  # no local token in keystone mode
        response = httpx.get(f"{_url(lines)}/v1/policies", headers=headers("a-token"), timeout=30)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] and "a-token" not in response.text
        no_token = httpx.get(f"{_url(lines)}/v1/policies", timeout=30)
        assert no_token.status_code == 401
    finally:
        assert _stop(process) == 0


def test_a_server_shortcut_acts_through_a_new_trust_and_keeps_it_when_enabled_again(
    keystone_api: tuple[Api, Credentials],
) -> None:
    api, credentials = keystone_api
    api.sim.cloud.create_server("web-1")
    api.ok("alpha-member", "POST", "/v1/servers/web-1/enable", json={})
    api.ok("alpha-member", "POST", "/v1/servers/web-1/enable", json={"retention": 2})
    assert credentials.made == [("u-alpha", None, None)]  # enabling again keeps its credential
    assert api.as_("beta-member", "POST", "/v1/servers/nope/enable", json={}).status_code == 404
    assert credentials.made[-1] == ("u-beta", None, None)
    assert credentials.released == [api.sim.spec]  # given up with the refused shortcut


def test_a_policy_created_in_the_dashboard_acts_through_a_trust_of_its_creator(
    keystone_api: tuple[Api, Credentials],
) -> None:
    api, credentials = keystone_api
    api.sim.cloud.create_server("web-1")
    _login(api, "alpha-member")
    form = {**POLICY_FORM, "csrf_token": csrf_of(api.client.get("/policies/new").text)}
    created = api.client.post("/policies/new", data=form, follow_redirects=False)
    assert created.status_code == 303, created.text
    policy = api.services.store.get_policy("nightly")
    assert policy.project == "alpha" and policy.cloud == api.sim.spec
    assert credentials.made == [("u-alpha", None, None)]
    form["name"], form["servers"] = "broken", "nope"
    refused = api.client.post("/policies/new", data=form, follow_redirects=False)
    assert refused.status_code != 303
    assert credentials.released == [api.sim.spec]
