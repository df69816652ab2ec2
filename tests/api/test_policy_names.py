"""Each project names its policies (and its per-server shortcuts) as it likes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stackback.policy import Backup, BackupKind, BackupStatus
from tests.api.conftest import Api, nightly

A, B = "alpha-member", "beta-member"
ADMIN = "cloud-admin"


def test_two_projects_each_have_their_own_nightly(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    api.sim.cloud.create_server("db-1")
    alpha = api.ok(A, "POST", "/v1/policies", 201, json=nightly("nightly", "web-1"))
    beta = api.ok(B, "POST", "/v1/policies", 201, json=nightly("nightly", "db-1"))
    assert alpha["id"] != beta["id"] and beta["project"] == "beta"

    assert api.ok(A, "GET", "/v1/policies/nightly")["id"] == alpha["id"]
    assert api.ok(B, "GET", "/v1/policies/nightly")["id"] == beta["id"]
    assert [p["id"] for p in api.ok(A, "GET", "/v1/policies")["items"]] == [alpha["id"]]
    assert [p["id"] for p in api.ok(B, "GET", "/v1/policies")["items"]] == [beta["id"]]
    changed = api.ok(B, "PATCH", "/v1/policies/nightly", json={"retention": {"last": 9}})
    assert changed["id"] == beta["id"]
    assert api.ok(A, "GET", f"/v1/policies/{alpha['id']}")["retention"] == {"last": 3}
    assert api.as_(B, "GET", f"/v1/policies/{alpha['id']}").status_code == 404
    again = api.as_(A, "POST", "/v1/policies", json=nightly("nightly", "web-1"))
    assert again.status_code == 409  # still one "nightly" per project

    # an admin of every project names it by id; the name alone is ambiguous there
    ambiguous = api.as_(ADMIN, "GET", "/v1/policies/nightly?all_projects=1")
    assert ambiguous.status_code == 400
    assert "id" in ambiguous.json()["error"]["message"]
    shown = api.ok(ADMIN, "GET", f"/v1/policies/{beta['id']}?all_projects=1")
    assert shown["project"] == "beta"
    assert api.ok(B, "GET", "/v1/status?policy=nightly")[0]["policy_id"] == beta["id"]
    runs = api.ok(B, "POST", "/v1/policies/nightly/run", 202)
    assert {run["target"] for run in runs} == {"db-1"}
    assert api.ok(B, "GET", "/v1/runs?policy=nightly")["items"][0]["policy_id"] == beta["id"]
    api.ok(B, "DELETE", "/v1/policies/nightly", 204)
    assert api.ok(A, "GET", "/v1/policies/nightly")["id"] == alpha["id"]


def test_shortcuts_of_same_named_servers_in_two_projects(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    alpha = api.ok(A, "POST", "/v1/servers/web-1/enable", json={"retention": 4})
    beta = api.ok(B, "POST", "/v1/servers/web-1/enable", json={"retention": 2})
    assert alpha["name"] == beta["name"] == "server-web-1"
    assert (alpha["project"], beta["project"]) == ("alpha", "beta")
    assert alpha["id"] != beta["id"]

    again = api.ok(B, "POST", "/v1/servers/web-1/enable", json={"retention": 5})
    assert again["id"] == beta["id"] and again["retention"] == {"last": 5}
    disabled = api.ok(B, "POST", "/v1/servers/web-1/disable")
    assert disabled["policy"]["id"] == beta["id"]
    assert api.ok(A, "GET", f"/v1/policies/{alpha['id']}")["enabled"] is True
    shown = api.ok(A, "GET", "/v1/servers/web-1")
    assert [(p["name"], p["enabled"]) for p in shown["policies"]] == [("server-web-1", True)]
    assert api.ok(A, "POST", "/v1/servers/web-1/disable")["policy"]["id"] == alpha["id"]


def test_an_id_prefix_does_not_tell_of_another_projects_runs(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["fedcba01-0000-4000-8000-000000000001", "fedcba02-0000-4000-8000-000000000002"])
    monkeypatch.setattr("stackback.store.sql.runs.new_id", lambda: next(ids))
    for server, token in (("web-1", A), ("db-1", B)):
        api.sim.cloud.create_server(server)
        api.ok(token, "POST", "/v1/policies", 201, json=nightly("nightly", server))
    mine = api.ok(A, "POST", "/v1/policies/nightly/run", 202)[0]
    theirs = api.ok(B, "POST", "/v1/policies/nightly/run", 202)[0]
    api.wait_for_runs([mine, theirs])
    # "fedcba" starts both ids: alpha is given its own run, not told beta has one too
    assert api.ok(A, "GET", "/v1/runs/fedcba")["id"] == mine["id"]
    assert api.ok(B, "GET", "/v1/runs/fedcba")["id"] == theirs["id"]
    assert api.as_(A, "GET", "/v1/runs/fedcba02").status_code == 404
    assert api.as_(ADMIN, "GET", "/v1/runs/fedcba?all_projects=1").status_code == 400


def test_an_id_prefix_does_not_tell_of_another_projects_backups(api: Api) -> None:
    for number, project in ((1, "alpha"), (2, "beta")):
        api.services.store.ensure_backup(
            Backup(
                id=f"abcdef0{number}-0000-4000-8000-00000000000{number}",
                target="web-1",
                kind=BackupKind.SERVER_IMAGE,
                status=BackupStatus.AVAILABLE,
                created_at=datetime.now(UTC),
                project=project,
            )
        )
    assert api.ok(A, "GET", "/v1/backups/abcdef")["id"].startswith("abcdef01")
    assert api.ok(B, "GET", "/v1/backups/abcdef")["id"].startswith("abcdef02")
    assert api.as_(A, "GET", "/v1/backups/abcdef02").status_code == 404
    assert api.as_(ADMIN, "GET", "/v1/backups/abcdef?all_projects=1").status_code == 400
