"""Whose credentials act: a project's caller acts through its project's own cloud (the API's
default one, or its stored trust), never through an operator's cloud a record names."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text

from stackback.policy import RunState
from stackback.records import BackupFilter
from tests.api.conftest import Api, nightly
from tests.web.conftest import csrf_of

OPERATOR_CLOUD = "operator-admin"


def _made_through(api: Api, backup_id: str, cloud: str) -> None:
    """As if the backup had been taken with ``backup now --os-cloud CLOUD``."""
    with api.services.store.engine.begin() as connection:  # type: ignore[attr-defined]
        connection.execute(
            text("UPDATE backups SET cloud = :cloud WHERE id = :id"),
            {"cloud": cloud, "id": backup_id},
        )


def test_a_backup_taken_through_an_operators_cloud_is_acted_on_by_every_project_callers_only(
    api: Api,
) -> None:
    api.sim.cloud.create_server("web-1")
    run = api.services.backups.backup_now("web-1", label=None, keep_last=None, cloud=api.sim.spec)
    assert api.services.runs.wait(run.id, timeout=30).state is RunState.SUCCEEDED
    (backup,) = api.services.store.list_backups(BackupFilter(target=run.target))
    assert backup.project == "demo"
    planned = api.as_("demo-member", "POST", f"/v1/backups/{backup.id}/restore", json={})
    assert planned.status_code == 202, planned.text  # through the project's own cloud

    _made_through(api, backup.id, OPERATOR_CLOUD)
    assert api.ok("demo-member", "GET", f"/v1/backups/{backup.id}")["id"] == backup.id
    for method, path in (
        ("POST", f"/v1/backups/{backup.id}/restore"),
        ("POST", f"/v1/backups/{backup.id}/verify"),
        ("DELETE", f"/v1/backups/{backup.id}"),
    ):
        refused = api.as_("demo-member", method, path, json={} if method == "POST" else None)
        assert refused.status_code == 403, (path, refused.text)
    assert api.services.store.get_backup(backup.id).status is backup.status

    page = api.client.get("/login")
    login = {"token": "demo-member", "csrf_token": csrf_of(page.text)}
    assert api.client.post("/login", data=login, follow_redirects=False).status_code == 303
    form = {"csrf_token": csrf_of(api.client.get(f"/backups/{backup.id}").text)}
    posted = api.client.post(f"/backups/{backup.id}/delete", data=form, follow_redirects=False)
    assert posted.status_code == 403, posted.text
    assert api.services.store.get_backup(backup.id).status is backup.status


def test_a_project_caller_cannot_move_a_policy_off_its_trust(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    created = api.ok("alpha-member", "POST", "/v1/policies", 201, json=nightly("n", "web-1"))
    store = api.services.store
    policy = store.get_policy(created["id"])
    trusted = replace(policy, cloud="credential:8c1f6d52-5a0e-4d0e-9a51-0d6f1f3c2b11")
    store.update_policy(trusted, None, now=api.services.clock.now())

    url = f"/v1/policies/{policy.id}"
    for cloud in (api.sim.spec, OPERATOR_CLOUD):  # the API's default cloud, or any other
        moved = api.as_("alpha-member", "PATCH", url, json={"cloud": cloud})
        assert moved.status_code == 403, moved.text
    assert store.get_policy(policy.id).cloud == trusted.cloud
    same = api.as_("alpha-member", "PATCH", url, json={"cloud": trusted.cloud, "enabled": True})
    assert same.status_code == 200, same.text
