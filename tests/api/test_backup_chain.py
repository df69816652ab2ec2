"""A backup's chain (what an incremental backup depends on, what depends on it) is shown
alike by the API, the CLI's ``backup show`` and the dashboard: ``views.backup_detail``
over ``BackupService.chain``."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from stackback.cloud.simulator.config import SimConfig
from stackback.policy import Backup, BackupKind, BackupStatus
from tests.api.conftest import Api, nightly
from tests.web.conftest import csrf_of


def _chained_backups(api: Api, count: int) -> list[str]:
    """``count`` backups of a Cinder volume by a policy with a full every 3, oldest first."""
    api.sim.cloud.configure(
        replace(SimConfig(), image_snapshot_seconds=0.1, volume_backup_seconds=0.1)
    )
    volume = api.sim.cloud.create_volume_standalone("data-1")
    body = nightly("chained", kind="volume-backup", volumes=[volume.id], full_every=3)
    del body["targets"]
    policy = api.ok("alpha-member", "POST", "/v1/policies", 201, json=body)
    ids: list[str] = []
    for _ in range(count):
        runs = api.ok("alpha-member", "POST", f"/v1/policies/{policy['id']}/run", 202)
        api.wait_for_runs(runs)
        run = api.ok("alpha-member", "GET", f"/v1/runs/{runs[0]['id']}")
        assert run["state"] == "succeeded", run
        ids.append(run["backup_id"])
    return ids


def _show(api: Api, backup_id: str, token: str = "alpha-member") -> dict[str, Any]:
    shown: dict[str, Any] = api.ok(token, "GET", f"/v1/backups/{backup_id}")
    return shown


def test_show_gives_an_incremental_backup_s_chain_as_the_cli_does(api: Api) -> None:
    full, first, second = _chained_backups(api, 3)
    newest = _show(api, second)
    assert newest["parent_id"] == first
    assert (newest["chain"], newest["children"]) == ([full, first], [])
    middle = _show(api, first)
    assert (middle["chain"], middle["children"]) == ([full], [second])
    root = _show(api, full)
    assert (root["parent_id"], root["chain"], root["children"]) == (None, [], [first])


def test_a_backup_of_a_kind_without_chains_has_none(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    policy = api.ok("alpha-member", "POST", "/v1/policies", 201, json=nightly("p", "web-1"))
    runs = api.ok("alpha-member", "POST", f"/v1/policies/{policy['id']}/run", 202)
    api.wait_for_runs(runs)
    backup_id = api.ok("alpha-member", "GET", f"/v1/runs/{runs[0]['id']}")["backup_id"]
    shown = _show(api, backup_id)
    assert shown["chain"] is None and shown["children"] is None


def test_openapi_json_lists_the_chain_fields(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    backup = schema["components"]["schemas"]["BackupOut"]["properties"]
    assert {"chain", "children"} <= set(backup)
    assert "full backup first" in backup["chain"]["description"]


def test_another_project_sees_no_chain_and_the_dashboard_shows_it(api: Api) -> None:
    full, first, second = _chained_backups(api, 3)
    assert api.as_("beta-member", "GET", f"/v1/backups/{first}").status_code == 404
    api.client.cookies.clear()
    page = api.client.get("/login")
    api.client.post(
        "/login",
        data={"token": "alpha-member", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    html = api.client.get(f"/backups/{first}").text
    chain = html.split('id="chain">', 1)[1].split("</dd>", 1)[0]
    assert f'/backups/{full}"' in chain and first not in chain
    children = html.split('id="children">', 1)[1].split("</dd>", 1)[0]
    assert f'/backups/{second}"' in children


def test_a_chain_shows_only_the_caller_s_project_s_backups(api: Api) -> None:
    store = api.services.store
    t0 = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)

    def backup(project: str, day: int, parent: str | None) -> str:
        made = store.ensure_backup(
            Backup(
                id=str(uuid.uuid4()),
                target="vol-shared",
                kind=BackupKind.VOLUME_BACKUP,
                status=BackupStatus.AVAILABLE,
                created_at=t0 + timedelta(days=day),
                parent_id=parent,
                project=project,
            )
        )
        return made.id

    alpha_full = backup("alpha", 0, None)
    beta_increment = backup("beta", 1, alpha_full)
    alpha_view = _show(api, alpha_full)
    assert alpha_view["children"] == [] and beta_increment not in str(alpha_view)
    assert _show(api, f"{alpha_full}?all_projects=1", "cloud-admin")["children"] == [beta_increment]
    beta_view = _show(api, beta_increment, "beta-member")
    assert beta_view["chain"] == [alpha_full]  # its parent_id, a backup beta does not see
    assert api.as_("beta-member", "GET", f"/v1/backups/{alpha_full}").status_code == 404
