"""Errors at the edge: one JSON shape, the right 4xx, body limits, authentication."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackback.api.app import create_app
from stackback.services.authz import PolicyAuthorizer
from tests.api.conftest import PRINCIPALS, Api, TokenTable, nightly

M = "alpha-member"


def _error(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["details"]["error_id"]
    return body["error"]  # type: ignore[no-any-return]


def test_no_token_or_a_wrong_one_is_401(api: Api) -> None:
    _error(api.client.get("/v1/policies"), 401, "unauthenticated")
    _error(api.as_("not-a-token", "GET", "/v1/policies"), 401, "unauthenticated")
    response = api.client.get("/v1/policies", headers={"Authorization": "Bearer alpha-member"})
    assert response.status_code == 200


def test_a_reader_cannot_write_403(api: Api) -> None:
    response = api.as_("alpha-reader", "POST", "/v1/policies", json=nightly("x", "web-1"))
    _error(response, 403, "forbidden")
    assert api.as_("alpha-reader", "GET", "/v1/policies").status_code == 200


def test_all_projects_is_for_admins(api: Api) -> None:
    _error(api.as_(M, "GET", "/v1/runs", params={"all_projects": 1}), 403, "forbidden")
    assert api.as_("cloud-admin", "GET", "/v1/runs", params={"all_projects": 1}).status_code == 200


def test_malformed_json_is_400(api: Api) -> None:
    response = api.as_(
        M,
        "POST",
        "/v1/policies",
        content=b'{"name": ',
        headers={"Content-Type": "application/json"},
    )
    _error(response, 400, "malformed-json")


def test_request_validation_is_422_in_the_same_shape(api: Api) -> None:
    error = _error(api.as_(M, "POST", "/v1/policies", json={"name": "x"}), 422, "invalid-input")
    assert error["details"]["field"] == "schedules"  # type: ignore[index]
    body = {**nightly("x", "web-1"), "unknown": 1}
    _error(api.as_(M, "POST", "/v1/policies", json=body), 422, "invalid-input")


def test_service_errors_map_to_4xx(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    assert api.as_(M, "POST", "/v1/policies", json=nightly("n", "web-1")).status_code == 201
    _error(api.as_(M, "POST", "/v1/policies", json=nightly("n", "web-1")), 409, "conflict")
    error = _error(
        api.as_(M, "POST", "/v1/policies", json=nightly("m", "no-such-server")), 404, "not-found"
    )
    assert "no-such-server" in str(error["message"])
    bad_zone = {**nightly("z", "web-1"), "timezone": "Mars/Olympus"}
    _error(api.as_(M, "POST", "/v1/policies", json=bad_zone), 400, "invalid-input")
    _error(api.as_(M, "GET", "/v1/nothing-here"), 404, "not-found")
    _error(api.as_(M, "PUT", "/v1/policies"), 405, "method-not-allowed")


@pytest.fixture
def small_api(api: Api) -> Iterator[Api]:
    """The same services behind an app that takes bodies of at most 200 bytes."""
    from fastapi.testclient import TestClient

    app = create_app(api.services, TokenTable(PRINCIPALS), PolicyAuthorizer(), max_body_bytes=200)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, api.services, api.sim)


def test_an_oversized_body_is_413(small_api: Api) -> None:
    big = {**nightly("big", "web-1"), "label": "x" * 300}
    _error(small_api.as_(M, "POST", "/v1/policies", json=big), 413, "too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it is read
        yield b'{"name": "big", "label": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}'

    response = small_api.as_(
        M, "POST", "/v1/policies", content=chunks(), headers={"Content-Type": "application/json"}
    )
    _error(response, 413, "too-large")
    assert small_api.as_(M, "GET", "/v1/policies").status_code == 200


def test_the_default_limit_is_one_mebibyte(api: Api) -> None:
    huge = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = api.as_(
        M, "POST", "/v1/policies", content=huge, headers={"Content-Type": "application/json"}
    )
    _error(response, 413, "too-large")


def test_openapi_is_the_api_s_and_the_root_is_the_dashboard(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert all(path.startswith("/v1/") for path in document["paths"])
    root = api.client.get("/", follow_redirects=False)
    assert root.status_code == 303 and "/login" in root.headers["location"]
    login = api.client.get("/login")
    assert login.status_code == 200 and login.headers["content-type"].startswith("text/html")


def test_nul_characters_are_refused_before_the_database_sees_them(api: Api) -> None:
    _error(api.as_(M, "GET", "/v1/runs?target=a%00b"), 400, "invalid-input")
    _error(api.as_(M, "GET", "/v1/policies/a%00b"), 400, "invalid-input")
    body = {**nightly("x\u0000y", "web-1")}
    _error(api.as_(M, "POST", "/v1/policies", json=body), 400, "invalid-input")
    assert api.as_(M, "GET", "/v1/runs?target=a%01b").status_code == 200


def test_naming_another_cloud_is_for_admins_of_every_project(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    elsewhere = {**nightly("n", "web-1"), "cloud": "someone-elses"}
    _error(api.as_(M, "POST", "/v1/policies", json=elsewhere), 403, "forbidden")
    _error(api.as_(M, "POST", "/v1/servers/web-1/enable", json={"cloud": "x"}), 403, "forbidden")
    _error(api.as_(M, "GET", "/v1/servers/web-1", params={"cloud": "x"}), 403, "forbidden")
    created = api.as_(M, "POST", "/v1/policies", json={**elsewhere, "cloud": api.sim.spec})
    assert created.status_code == 201  # the API's own cloud, named
    patch = api.as_(M, "PATCH", "/v1/policies/n", json={"cloud": "someone-elses"})
    _error(patch, 403, "forbidden")
    as_admin = api.as_("cloud-admin", "GET", "/v1/servers/web-1", params={"cloud": api.sim.spec})
    assert as_admin.status_code == 200
