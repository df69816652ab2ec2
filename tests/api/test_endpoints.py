"""Every endpoint through the ASGI app on the simulator (FastAPI's TestClient)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stackback.policy import BackupStatus
from stackback.records import BackupFilter
from tests.api.conftest import Api, nightly

M = "alpha-member"


def _policy(api: Api, name: str, *servers: str, **extra: Any) -> dict[str, Any]:
    for server in servers:
        api.sim.cloud.create_server(server)
    created: dict[str, Any] = api.ok(
        M, "POST", "/v1/policies", 201, json=nightly(name, *servers, **extra)
    )
    return created


def _backups_of(api: Api, policy: dict[str, Any], times: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(times):
        started = api.ok(M, "POST", f"/v1/policies/{policy['id']}/run", 202)
        api.wait_for_runs(started)
        runs += started
    return [api.ok(M, "GET", f"/v1/runs/{run['id']}") for run in runs]


def test_policy_create_show_list_in_zone_and_utc(api: Api) -> None:
    created = _policy(api, "nightly", "web-1")
    assert created["project"] == "alpha"
    assert created["timezone"] == "Europe/Amsterdam"
    schedule = created["schedules"][0]
    local = datetime.fromisoformat(schedule["next_run"])
    utc = datetime.fromisoformat(schedule["next_run_utc"])
    assert local == utc and utc.utcoffset() == timedelta(0)
    assert local.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert (local.hour, local.minute) == (1, 0)

    assert api.ok(M, "GET", f"/v1/policies/{created['id']}") == created
    assert api.ok(M, "GET", "/v1/policies/nightly")["id"] == created["id"]
    listed = api.ok(M, "GET", "/v1/policies")
    assert [p["id"] for p in listed["items"]] == [created["id"]]
    assert listed["next_marker"] is None


def test_policy_update_applies_at_the_next_rotation_and_recreates_nothing(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1")
    runs = _backups_of(api, policy, 3)
    backups = {run["backup_id"] for run in runs}

    changed = api.ok(
        M,
        "PATCH",
        f"/v1/policies/{policy['id']}",
        json={"retention": {"last": 1}, "schedules": ["30 2 * * *"]},
    )
    assert changed["id"] == policy["id"]
    assert changed["retention"] == {"last": 1}
    assert changed["schedules"][0]["cron"] == "30 2 * * *"
    assert changed["targets"] == ["web-1"]  # what was not given stays
    assert changed["timezone"] == "Europe/Amsterdam"
    # nothing deleted or recreated by the change itself
    listed = api.ok(M, "GET", "/v1/backups", params={"policy": policy["id"]})["items"]
    assert {b["id"] for b in listed} == backups
    assert all(b["status"] == "available" for b in listed)

    preview = api.ok(M, "GET", f"/v1/policies/{policy['id']}/retention-preview")
    actions = {row["backup"]: (row["action"], row["reasons"]) for row in preview}
    assert set(actions) == backups
    newest = runs[-1]["backup_id"]
    assert actions[newest] == ("keep", ["last"])
    assert sorted(a for a, _ in actions.values()) == ["forget", "forget", "keep"]
    assert all(reasons == [] for action, reasons in actions.values() if action == "forget")

    # the next run rotates by the new rule
    _backups_of(api, policy, 1)
    live = api.ok(M, "GET", "/v1/backups", params={"policy": policy["id"]})["items"]
    assert [b["status"] for b in live if b["status"] == "available"] == ["available"]


def test_policy_update_refuses_bad_values_with_the_field(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1")
    response = api.as_(M, "PATCH", f"/v1/policies/{policy['id']}", json={"schedules": ["nope"]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid-input"
    assert error["details"]["field"] == "cron"
    assert error["details"]["error_id"]


def test_enable_disable_run_now_and_delete(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1", "web-2")
    disabled = api.ok(M, "POST", f"/v1/policies/{policy['id']}/disable")
    assert disabled["enabled"] is False
    assert disabled["schedules"][0]["next_run"] is None
    assert api.ok(M, "POST", f"/v1/policies/{policy['id']}/enable")["enabled"] is True

    runs = api.ok(M, "POST", f"/v1/policies/{policy['id']}/run", 202)
    assert sorted(r["target"] for r in runs) == ["web-1", "web-2"]
    assert {r["project"] for r in runs} == {"alpha"}
    assert {r["policy_id"] for r in runs} == {policy["id"]}
    api.wait_for_runs(runs)

    assert api.ok(M, "DELETE", f"/v1/policies/{policy['id']}", 204) is None
    assert api.as_(M, "GET", f"/v1/policies/{policy['id']}").status_code == 404
    # its runs and backups stay, still in its project
    left = api.ok(M, "GET", "/v1/backups")["items"]
    assert len(left) == 2 and {b["project"] for b in left} == {"alpha"}


def test_run_now_of_a_selector_policy_runs_each_matching_server(api: Api) -> None:
    api.sim.cloud.create_server("db-1", metadata={"backup": "yes"})
    api.sim.cloud.create_server("db-2", metadata={"backup": "no"})
    body = {**nightly("by-tag"), "targets": None, "selector": "backup=yes"}
    policy = api.ok(M, "POST", "/v1/policies", 201, json=body)
    runs = api.ok(M, "POST", f"/v1/policies/{policy['id']}/run", 202)
    assert len(runs) == 1
    api.wait_for_runs(runs)
    assert api.ok(M, "GET", f"/v1/runs/{runs[0]['id']}")["target_name"] == "db-1"


def test_server_shortcuts(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    enabled = api.ok(M, "POST", "/v1/servers/web-1/enable", json={"retention": 4})
    assert enabled["name"] == "server-web-1"
    assert enabled["retention"] == {"last": 4}
    assert enabled["project"] == "alpha"
    _policy(api, "also", "web-1x")
    api.ok(M, "PATCH", "/v1/policies/also", json={"targets": ["web-1"]})

    shown = api.ok(M, "GET", "/v1/servers/web-1")
    assert shown["server_exists"] is True
    assert {p["name"]: p["covers"] for p in shown["policies"]} == {
        "server-web-1": "explicitly",
        "also": "explicitly",
    }
    disabled = api.ok(M, "POST", "/v1/servers/web-1/disable")
    assert disabled["policy"]["enabled"] is False
    assert disabled["still_backed_up_by"] == ["also"]
    assert api.ok(M, "POST", "/v1/servers/web-1/enable")["enabled"] is True


def test_runs_filters_show_and_delete(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1", "web-2")
    runs = _backups_of(api, policy, 1)
    pending = api.ok(M, "POST", f"/v1/policies/{policy['id']}/run", 202)

    def ids(**params: Any) -> set[str]:
        return {r["id"] for r in api.ok(M, "GET", "/v1/runs", params=params)["items"]}

    everything = {r["id"] for r in runs + pending}
    assert ids() == everything
    assert ids(policy="nightly") == everything
    assert ids(target="web-1") == {r["id"] for r in runs + pending if r["target"] == "web-1"}
    assert ids(state="pending") == {r["id"] for r in pending}
    assert ids(state="succeeded") == {r["id"] for r in runs}
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert ids(since=hour_ago) == everything
    assert ids(until=hour_ago) == set()
    assert ids(since="2000-01-01T00:00:00") == everything  # no zone: UTC

    shown = api.ok(M, "GET", f"/v1/runs/{runs[0]['id']}")
    assert shown["state"] == "succeeded"
    assert shown["timezone"] == "Europe/Amsterdam"  # its policy's, beside the UTC times
    assert shown["scheduled_for"].endswith("Z")
    assert {r["timezone"] for r in api.ok(M, "GET", "/v1/runs")["items"]} == {"Europe/Amsterdam"}
    assert [s["name"] for s in shown["steps"]]
    assert shown["steps"][0]["outcome"]
    assert "lease_owner" in shown

    conflict = api.as_(M, "DELETE", f"/v1/runs/{pending[0]['id']}")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    assert api.ok(M, "DELETE", f"/v1/runs/{runs[0]['id']}", 204) is None
    assert api.as_(M, "GET", f"/v1/runs/{runs[0]['id']}").status_code == 404
    assert api.as_(M, "GET", f"/v1/runs/{runs[0]['id']}").json()["error"]["code"] == "not-found"


def test_backups_show_protect_delete(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1")
    first, second = (run["backup_id"] for run in _backups_of(api, policy, 2))

    shown = api.ok(M, "GET", f"/v1/backups/{first}")
    assert shown["status"] == "available"
    assert shown["timezone"] == "Europe/Amsterdam"
    assert shown["artifacts"][0]["kind"] == "image"
    assert shown["reasons"] and shown["verification"] is None

    assert api.ok(M, "POST", f"/v1/backups/{first}/protect")["protected"] is True
    assert api.ok(M, "GET", f"/v1/backups/{first}")["reasons"] == ["protected"]
    assert api.as_(M, "DELETE", f"/v1/backups/{first}").status_code == 409
    assert api.ok(M, "POST", f"/v1/backups/{first}/unprotect")["protected"] is False

    deleted = api.ok(M, "DELETE", f"/v1/backups/{first}", 202)
    assert deleted["status"] in ("deleting", "deleted")
    last_good = api.as_(M, "DELETE", f"/v1/backups/{second}")
    assert last_good.status_code == 409, last_good.text
    assert api.ok(M, "DELETE", f"/v1/backups/{second}", 202, params={"force": 1})["id"] == second
    assert api.ok(M, "GET", "/v1/backups")["items"] == []
    with_deleted = api.ok(M, "GET", "/v1/backups", params={"include_deleted": True})["items"]
    assert {b["id"] for b in with_deleted} == {first, second}


def test_restore_and_verify_a_backup(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1")
    (run,) = _backups_of(api, policy, 1)
    backup = run["backup_id"]

    restore = api.ok(M, "POST", f"/v1/backups/{backup}/restore", 202, json={"name": "web-1b"})
    assert restore["backup_id"] == backup
    assert restore["mode"] == "as-new" and restore["name"] == "web-1b"
    assert restore["state"] == "pending"
    verify = api.ok(M, "POST", f"/v1/backups/{backup}/verify", 202)
    assert verify["mode"] == "verify"

    assert api.ok(M, "GET", f"/v1/restores/{restore['id']}")["id"] == restore["id"]
    listed = api.ok(M, "GET", "/v1/restores")["items"]
    assert [job["id"] for job in listed] == [verify["id"], restore["id"]]
    in_place = api.as_(M, "POST", f"/v1/backups/{backup}/restore", json={"mode": "sideways"})
    assert in_place.status_code == 422


def test_status_is_the_cli_status(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1")
    _backups_of(api, policy, 1)
    rows = api.ok(M, "GET", "/v1/status")
    assert len(rows) == 1
    row = rows[0]
    assert (row["policy"], row["policy_id"], row["target_name"]) == (
        "nightly",
        policy["id"],
        "web-1",
    )
    assert row["verdict"] in ("ok", "never")
    assert api.ok(M, "GET", "/v1/status", params={"policy": "nightly"}) == rows
    assert api.ok("beta-member", "GET", "/v1/status") == []


def test_lists_page_with_limit_and_marker(api: Api) -> None:
    names = [f"p{i}" for i in range(5)]
    for name in reversed(names):
        _policy(api, name, f"srv-{name}")
    seen: list[str] = []
    marker = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"marker": marker} if marker else {})}
        page = api.ok(M, "GET", "/v1/policies", params=params)
        seen += [p["name"] for p in page["items"]]
        marker = page["next_marker"]
        if marker is None:
            break
        assert len(page["items"]) == 2
    assert seen == names

    runs = _backups_of(api, api.ok(M, "GET", "/v1/policies/p0"), 3)
    first = api.ok(M, "GET", "/v1/runs", params={"limit": 2})
    second = api.ok(M, "GET", "/v1/runs", params={"limit": 2, "marker": first["next_marker"]})
    assert second["next_marker"] is None
    paged = [r["id"] for r in first["items"] + second["items"]]
    assert paged == [r["id"] for r in api.ok(M, "GET", "/v1/runs")["items"]]
    assert sorted(paged) == sorted(r["id"] for r in runs)

    first = api.ok(M, "GET", "/v1/backups", params={"limit": 1})
    second = api.ok(M, "GET", "/v1/backups", params={"limit": 5, "marker": first["next_marker"]})
    assert len(second["items"]) == 2 and second["next_marker"] is None
    assert first["items"][0]["id"] not in {b["id"] for b in second["items"]}

    bad = api.as_(M, "GET", "/v1/runs", params={"marker": "no-such-run"})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["field"] == "marker"
    assert api.as_(M, "GET", "/v1/runs", params={"limit": 0}).status_code == 422


def test_backups_page_follows_the_store(api: Api) -> None:
    policy = _policy(api, "nightly", "web-1")
    _backups_of(api, policy, 2)
    stored = api.services.store.list_backups(
        BackupFilter(statuses=(BackupStatus.AVAILABLE,), project="alpha")
    )
    listed = api.ok(M, "GET", "/v1/backups")["items"]
    assert [b["id"] for b in listed] == [b.id for b in stored]
