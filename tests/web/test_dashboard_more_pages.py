"""The restores list and a restore's steps, deleting a policy, and a policy's retention
preview: the dashboard shows what ``restore list|show``, ``policy delete`` and ``retention
preview`` (and the API) show, from the same services and views."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from html import unescape

import pytest

from stackback.engine.restore import RestoreRunner
from stackback.errors import NotFound
from stackback.policy import Backup, BackupKind, BackupStatus
from stackback.restoreplan import RestoreState
from stackback.retention import RetentionPolicy
from stackback.services.backups import BackupService
from stackback.services.policies import PolicyService, PolicySpec
from stackback.services.servers import ServerDirectory
from stackback.views import preview_view
from tests.web.conftest import T0, Dashboard
from tests.web.test_dashboard_backups import backed_up
from tests.web.test_dashboard_policies import create_policy, no_traceback

# -- restores -----------------------------------------------------------------------------


def _restored(dash: Dashboard) -> tuple[str, str]:
    """A backup of web-1 restored as a new server by a worker; (backup id, restore id)."""
    _, (backup_id,) = backed_up(dash, "web-1")
    page = f"/backups/{backup_id}/restore"
    response = dash.post(page, {"name": "web-1-restored"}, page=page)
    assert response.status_code == 303, response.text
    restore_id = response.headers["location"].rsplit("/", 1)[-1]
    world = dash.world
    runner = RestoreRunner(world.store, world.clouds, world.clock, owner="w-test")
    assert runner.drive(restore_id).state is RestoreState.SUCCEEDED
    return backup_id, restore_id


def test_the_restores_page_lists_restores_and_one_shows_its_steps(dash: Dashboard) -> None:
    backup_id, restore_id = _restored(dash)
    listing = dash.client.get("/restores")
    assert listing.status_code == 200
    rows = re.findall(r'<tr class="restore" data-state="([^"]+)">', listing.text)
    assert rows == ["succeeded"]
    assert f'/restores/{restore_id}"' in listing.text and f'/backups/{backup_id}"' in listing.text
    assert "web-1-restored" in listing.text
    assert 'class="restore"' not in dash.client.get("/restores?state=failed").text
    bad = dash.client.get("/restores?state=exploded")
    assert bad.status_code == 400 and "unknown restore state" in unescape(bad.text)
    detail = dash.client.get(f"/restores/{restore_id}")
    assert detail.status_code == 200
    job = dash.store.get_restore(restore_id)
    steps = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", detail.text.split('id="steps"')[1])
    assert steps and steps == [(s.name, s.outcome) for s in job.steps]
    assert job.created and all(c.id in detail.text for c in job.created)


def test_the_restores_page_with_none(dash: Dashboard) -> None:
    dash.login()
    page = dash.client.get("/restores")
    assert page.status_code == 200 and "No restores yet." in page.text
    assert 'href="http://testserver/restores"' in page.text  # in the navigation


# -- deleting a policy --------------------------------------------------------------------


def test_deleting_a_policy_asks_first_and_a_get_never_deletes(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    policy_page = dash.client.get(f"/policies/{policy_id}")
    assert f'/policies/{policy_id}/delete"' in policy_page.text
    confirm = dash.client.get(f"/policies/{policy_id}/delete")
    assert confirm.status_code == 200 and 'id="confirm-delete"' in confirm.text
    assert "nightly" in confirm.text
    assert dash.store.get_policy(policy_id).id == policy_id  # the GET deleted nothing
    response = dash.post(f"/policies/{policy_id}/delete", page=f"/policies/{policy_id}/delete")
    assert response.status_code == 303
    assert response.headers["location"].endswith("/policies")
    with pytest.raises(NotFound):
        dash.store.get_policy(policy_id)
    listing = dash.client.get(response.headers["location"])
    assert "policy nightly deleted" in listing.text
    assert dash.client.get(f"/policies/{policy_id}").status_code == 404
    assert dash.client.get(f"/policies/{policy_id}/delete").status_code == 404


def test_deleting_a_policy_keeps_its_backups(dash: Dashboard) -> None:
    policy_id, (backup_id,) = backed_up(dash, "web-1")
    response = dash.post(f"/policies/{policy_id}/delete", page=f"/policies/{policy_id}/delete")
    assert response.status_code == 303
    assert dash.store.get_backup(backup_id).status is BackupStatus.AVAILABLE


def test_deleting_a_policy_needs_the_csrf_token(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    missing = dash.client.post(f"/policies/{policy_id}/delete", data={})
    forged = dash.client.post(f"/policies/{policy_id}/delete", data={"csrf_token": "0" * 64})
    for refused in (missing, forged):
        assert refused.status_code == 403
        assert "did not come from this dashboard" in refused.text
        no_traceback(refused.text)
    assert dash.store.get_policy(policy_id).id == policy_id


def test_a_reader_may_not_delete_a_policy(dash: Dashboard) -> None:
    from tests.web.conftest import READER_TOKEN

    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    dash.login(READER_TOKEN)
    assert f'/policies/{policy_id}/delete"' not in dash.client.get(f"/policies/{policy_id}").text
    assert dash.client.get(f"/policies/{policy_id}/delete").status_code == 403
    refused = dash.post(f"/policies/{policy_id}/delete", page=f"/policies/{policy_id}")
    assert refused.status_code == 403
    assert dash.store.get_policy(policy_id).id == policy_id


# -- retention preview --------------------------------------------------------------------


def test_the_retention_preview_shows_why_and_the_chain_parent(dash: Dashboard) -> None:
    world = dash.world
    policy = PolicyService(world.store, world.clock, ServerDirectory(world.clouds)).create(
        PolicySpec(
            name="vb",
            kind="volume-backup",
            volumes=("vol1",),
            full_every=3,
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=1),
            project="p-alpha",
        ),
        offline=True,
    )
    ids: list[str] = []
    for day in range(4):  # full, inc, inc, then a new full
        made = world.store.ensure_backup(
            Backup(
                id=str(uuid.uuid4()),
                target="vol1",
                kind=BackupKind.VOLUME_BACKUP,
                status=BackupStatus.AVAILABLE,
                created_at=T0 - timedelta(days=4 - day),
                policy_id=policy.id,
                policy_name=policy.name,
                parent_id=ids[-1] if day in (1, 2) else None,
                project="p-alpha",
            )
        )
        ids.append(made.id)
    dash.login()
    assert f'/policies/{policy.id}/retention"' in dash.client.get(f"/policies/{policy.id}").text
    page = dash.client.get(f"/policies/{policy.id}/retention")
    assert page.status_code == 200
    rows = re.findall(
        r'<tr class="preview-row action-(\w+)" data-action="\w+">\s*'
        r'<td><a href="[^"]*/backups/([^"]+)">.*?<td class="reasons">([^<]*)</td>\s*'
        r'<td class="parent">(.*?)</td>',
        page.text,
        re.S,
    )
    shown = [
        (backup, action, unescape(reasons), re.sub(r".*/backups/([^\"]+)\".*", r"\1", parent))
        for action, backup, reasons, parent in rows
    ]
    expected = [
        preview_view(row)
        for row in BackupService(world.store, world.clouds, world.clock).preview(policy.id)
    ]
    assert shown == [
        (
            row["backup"],
            row["action"],
            ", ".join(row["reasons"]) or "—",
            row["parent_id"] or '<span class="muted">(full)</span>',
        )
        for row in expected
    ]
    assert [(b, a) for b, a, _, _ in shown] == [
        (ids[3], "keep"),
        (ids[2], "forget"),
        (ids[1], "forget"),
        (ids[0], "forget"),
    ]
    assert shown[0][2] == "last" and shown[1][3] == ids[1] and shown[2][3] == ids[0]
    assert all(dash.store.get_backup(i).status is BackupStatus.AVAILABLE for i in ids)


def test_the_retention_preview_of_a_policy_without_backups(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    page = dash.client.get(f"/policies/{policy_id}/retention")
    assert page.status_code == 200 and "No good backups of this policy yet." in page.text
    assert dash.client.get("/policies/nope/retention").status_code == 404
