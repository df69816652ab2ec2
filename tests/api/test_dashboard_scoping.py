"""The dashboard served by the API's app sees what the API sees: a principal's own project
only (another project's records are not listed, and their pages are not found)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stackback.policy import Backup, BackupKind, BackupStatus
from tests.api.conftest import Api, nightly
from tests.web.conftest import csrf_of

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _login(api: Api, token: str) -> None:
    api.client.cookies.clear()
    page = api.client.get("/login")
    response = api.client.post(
        "/login", data={"token": token, "csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


def _alpha(api: Api) -> dict[str, Any]:
    api.sim.cloud.create_server("web-1")
    policy = api.ok("alpha-member", "POST", "/v1/policies", 201, json=nightly("alpha-db", "web-1"))
    runs = api.ok("alpha-member", "POST", f"/v1/policies/{policy['id']}/run", 202)
    api.wait_for_runs(runs)
    run = api.ok("alpha-member", "GET", f"/v1/runs/{runs[0]['id']}")
    restore = api.ok("alpha-member", "POST", f"/v1/backups/{run['backup_id']}/restore", 202)
    return {"policy": policy, "run": run, "restore": restore}


def test_a_beta_user_sees_nothing_of_alpha_in_the_dashboard(api: Api) -> None:
    alpha = _alpha(api)
    policy_id, run_id = alpha["policy"]["id"], alpha["run"]["id"]
    backup_id, restore_id = alpha["run"]["backup_id"], alpha["restore"]["id"]
    ids = (policy_id, run_id, backup_id, "alpha-db")

    _login(api, "alpha-member")
    for listing in ("/policies", "/runs", "/backups", "/status"):
        page = api.client.get(listing)
        assert page.status_code == 200 and "alpha-db" in page.text, listing

    _login(api, "beta-member")
    for listing in ("/policies", "/runs", "/backups", "/status"):
        page = api.client.get(listing)
        assert page.status_code == 200, listing
        assert not any(ref in page.text for ref in ids), listing
    for path in (
        f"/policies/{policy_id}",
        "/policies/alpha-db",
        f"/policies/{policy_id}/edit",
        f"/runs/{run_id}",
        f"/backups/{backup_id}",
        f"/backups/{backup_id}/delete",
        f"/backups/{backup_id}/restore",
        f"/restores/{restore_id}",
    ):
        assert api.client.get(path).status_code == 404, path
    token = csrf_of(api.client.get("/policies").text)
    for action in (
        f"/policies/{policy_id}/run",
        f"/policies/{policy_id}/disable",
        f"/backups/{backup_id}/protect",
        f"/backups/{backup_id}/delete",
    ):
        response = api.client.post(action, data={"csrf_token": token}, follow_redirects=False)
        assert response.status_code == 404, action
    assert api.services.store.get_policy(policy_id).enabled
    assert not api.services.store.get_backup(backup_id).protected

    _login(api, "cloud-admin")  # who acts on every project sees every project's
    assert "alpha-db" in api.client.get("/policies").text
    assert api.client.get(f"/backups/{backup_id}").status_code == 200


def test_the_dashboard_looks_names_and_id_prefixes_up_within_the_project(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alpha and beta each have a policy named nightly, and a run and a backup whose ids
    share their first six characters: to beta each is its own (never an ambiguity that tells
    alpha's exists), and a longer prefix of alpha's is not found."""
    store = api.services.store
    api.sim.cloud.create_server("web-1")
    policies = {
        project: api.ok(
            f"{project}-member", "POST", "/v1/policies", 201, json=nightly("nightly", "web-1")
        )
        for project in ("alpha", "beta")
    }
    run_ids = iter(["fedcba01-0000-4000-8000-000000000001", "fedcba02-0000-4000-8000-000000000002"])
    monkeypatch.setattr("stackback.store.sql.runs.new_id", lambda: next(run_ids))
    for project, policy in policies.items():
        store.create_manual_run(
            target="srv",
            now=NOW,
            label=None,
            retention=None,
            policy=store.get_policy(policy["id"]),
        )
        number = "01" if project == "alpha" else "02"
        store.ensure_backup(
            Backup(
                id=f"abcdef{number}-0000-4000-8000-0000000000{number}",
                target="srv",
                kind=BackupKind.SERVER_IMAGE,
                status=BackupStatus.AVAILABLE,
                created_at=NOW,
                project=project,
            )
        )

    _login(api, "beta-member")
    for path, own in (
        ("/policies/nightly", policies["beta"]["id"]),
        ("/runs/fedcba", "fedcba02"),
        ("/backups/abcdef", "abcdef02"),
        ("/policies/nightly/edit", policies["beta"]["id"]),
        ("/backups/abcdef/restore", "abcdef02"),
    ):
        page = api.client.get(path)
        assert page.status_code == 200 and own in page.text, (path, page.status_code)
    for path in ("/runs/fedcba01", "/backups/abcdef01"):
        assert api.client.get(path).status_code == 404, path
