"""Project beta cannot see, change, run, restore or delete anything of alpha's; a reader
cannot write (every endpoint of the OpenAPI document)."""

from __future__ import annotations

from tests.api.conftest import Api, nightly
from tests.api.isolation import assert_project_isolation


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
    # an admin sees alpha's resources only when it asks for every project
    assert api.as_("cloud-admin", "GET", f"/v1/policies/{policy['id']}").status_code == 404
    everything = api.ok("cloud-admin", "GET", "/v1/policies", params={"all_projects": 1})
    assert policy["id"] in [p["id"] for p in everything["items"]]
