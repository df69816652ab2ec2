"""Project beta cannot see, change, run, restore or delete anything of alpha's; a reader
cannot write (every endpoint of the OpenAPI document)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, nightly
from tests.api.isolation import assert_project_isolation
from tests.web.conftest import csrf_of


def test_every_endpoint_isolates_projects(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    policy = api.ok("alpha-member", "POST", "/v1/policies", 201, json=nightly("alpha", "web-1"))
    runs = api.ok("alpha-member", "POST", f"/v1/policies/{policy['id']}/run", 202)
    api.wait_for_runs(runs)
    run = api.ok("alpha-member", "GET", f"/v1/runs/{runs[0]['id']}")
    restore = api.ok(
        "alpha-member", "POST", f"/v1/backups/{run['backup_id']}/restore", 202, json={}
    )
    api.ok("alpha-member", "POST", "/v1/servers/web-1/enable", json={"retention": 2})
    alpha = {
        "policy": policy["id"],
        "run_id": run["id"],
        "backup_id": run["backup_id"],
        "restore_id": restore["id"],
        "server": "web-1",
    }

    checked = assert_project_isolation(
        api.client,
        alpha=alpha,
        owner_token="alpha-member",
        intruder_token="beta-member",
        reader_token="alpha-reader",
    )

    assert "DELETE /v1/backups/{backup_id}" in checked
    assert "POST /v1/backups/{backup_id}/restore" in checked
    assert "POST /v1/policies/{policy}/run" in checked
    assert "GET /v1/restores/{restore_id} (by id prefix)" in checked
    assert "DELETE /v1/runs/{run_id} (by id prefix)" in checked
    # an admin sees alpha's resources only when it asks for every project
    assert api.as_("cloud-admin", "GET", f"/v1/policies/{policy['id']}").status_code == 404
    everything = api.ok("cloud-admin", "GET", "/v1/policies", params={"all_projects": 1})
    assert policy["id"] in [p["id"] for p in everything["items"]]


ALPHA_RESTORE = "abcdef01-0000-4000-8000-000000000001"
BETA_RESTORE = "abcdef02-0000-4000-8000-000000000002"


def _restore_of_own_backup(api: Api, project: str, server: str) -> dict[str, Any]:
    api.sim.cloud.create_server(server)
    member = f"{project}-member"
    policy = api.ok(member, "POST", "/v1/policies", 201, json=nightly(project, server))
    runs = api.ok(member, "POST", f"/v1/policies/{policy['id']}/run", 202)
    api.wait_for_runs(runs)
    run = api.ok(member, "GET", f"/v1/runs/{runs[0]['id']}")
    restore: dict[str, Any] = api.ok(
        member, "POST", f"/v1/backups/{run['backup_id']}/restore", 202, json={}
    )
    return restore


def test_a_restore_id_prefix_is_looked_up_within_the_callers_project(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alpha's and beta's restores share their first six characters: to beta the prefix is
    its own restore (not an ambiguity that tells alpha's exists), and a longer prefix of
    alpha's is not found, exactly as a prefix of no restore; an admin sees both."""
    ids = iter([ALPHA_RESTORE, BETA_RESTORE])
    monkeypatch.setattr("stackback.store.sql.restores.new_id", lambda: next(ids))
    alpha = _restore_of_own_backup(api, "alpha", "web-1")
    beta = _restore_of_own_backup(api, "beta", "web-2")
    assert (alpha["id"], beta["id"]) == (ALPHA_RESTORE, BETA_RESTORE)
    assert (alpha["project"], beta["project"]) == ("alpha", "beta")

    assert api.ok("beta-member", "GET", "/v1/restores/abcdef")["id"] == BETA_RESTORE
    assert api.ok("alpha-member", "GET", "/v1/restores/abcdef")["id"] == ALPHA_RESTORE
    hidden = api.as_("beta-member", "GET", "/v1/restores/abcdef01")
    unknown = api.as_("beta-member", "GET", "/v1/restores/abcdef09")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
        "abcdef09", "abcdef01"
    )
    listed = api.ok("beta-member", "GET", "/v1/restores")["items"]
    assert [job["id"] for job in listed] == [BETA_RESTORE]

    everything = {"all_projects": 1}
    ambiguous = api.as_("cloud-admin", "GET", "/v1/restores/abcdef", params=everything)
    assert ambiguous.status_code == 400, ambiguous.text
    shown = api.ok("cloud-admin", "GET", "/v1/restores/abcdef01", params=everything)
    assert shown["id"] == ALPHA_RESTORE
    listed = api.ok("cloud-admin", "GET", "/v1/restores", params=everything)["items"]
    assert {job["id"] for job in listed} == {ALPHA_RESTORE, BETA_RESTORE}

    api.client.cookies.clear()  # the dashboard asks the store the same way
    page = api.client.get("/login")
    login = {"token": "beta-member", "csrf_token": csrf_of(page.text)}
    assert api.client.post("/login", data=login, follow_redirects=False).status_code == 303
    assert BETA_RESTORE in api.client.get("/restores/abcdef").text
    assert api.client.get("/restores/abcdef01").status_code == 404
