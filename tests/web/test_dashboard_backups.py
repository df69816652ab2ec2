"""Run now, runs, backups on their time line, protect/delete/restore, and RPO status pages."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

from stackback.clock import VirtualClock
from stackback.policy import BackupStatus, RunState
from stackback.restoreplan import RestoreState
from stackback.verification import Verification, VerifyResult
from tests.web.conftest import Dashboard
from tests.web.test_dashboard_policies import create_policy, no_traceback


def run_now(dash: Dashboard, policy_id: str) -> list[str]:
    """Run the policy now from its page; the ids of its finished runs."""
    response = dash.post(f"/policies/{policy_id}/run", page=f"/policies/{policy_id}")
    assert response.status_code == 303, response.text
    runs = [r for r in dash.store.list_runs() if not r.state.is_terminal]
    return [dash.drive(run.id).id for run in runs]


def backed_up(dash: Dashboard, *servers: str) -> tuple[str, list[str]]:
    """A policy of ``servers`` run now once; (policy id, backup ids)."""
    for server in servers:
        dash.sim.create_server(server)
    dash.login()
    policy_id = create_policy(dash, servers="\n".join(servers))
    runs = run_now(dash, policy_id)
    backups = [dash.store.get_run(run_id).backup_id for run_id in runs]
    assert all(backups)
    return policy_id, [b for b in backups if b]


def test_run_now_queues_a_run_per_target_and_the_runs_page_shows_it(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.sim.create_server("web-2")
    dash.login()
    policy_id = create_policy(dash, servers="web-1, web-2")
    response = dash.post(f"/policies/{policy_id}/run", page=f"/policies/{policy_id}")
    assert response.status_code == 303
    page = dash.client.get(response.headers["location"])
    assert "2 run(s) of nightly queued: web-1, web-2" in page.text
    runs = dash.store.list_runs()
    assert {(r.target, r.trigger, r.policy_id, r.state) for r in runs} == {
        ("web-1", "manual", policy_id, RunState.PENDING),
        ("web-2", "manual", policy_id, RunState.PENDING),
    }
    for run in runs:
        assert dash.drive(run.id).state is RunState.SUCCEEDED
    listing = dash.client.get("/runs")
    assert listing.text.count('data-state="succeeded"') == 2
    assert (
        dash.client.get(f"/runs?policy={policy_id}&state=succeeded").text.count('<tr class="run"')
        == 2
    )
    assert '<tr class="run"' not in dash.client.get("/runs?state=failed").text
    detail = dash.client.get(f"/runs/{runs[0].id}")
    assert detail.status_code == 200
    assert re.search(r'<tr class="step outcome-ok"><td>start</td>', detail.text)
    assert "succeeded" in detail.text


def test_run_now_of_a_selector_policy_finds_its_servers(dash: Dashboard) -> None:
    dash.sim.create_server("db-1", metadata={"backup": "nightly"})
    dash.sim.create_server("db-2", metadata={"backup": "other"})
    dash.login()
    policy_id = create_policy(dash, servers="", selector="backup=nightly", cloud=dash.world.spec)
    dash.post(f"/policies/{policy_id}/run", page=f"/policies/{policy_id}")
    (run,) = dash.store.list_runs()
    assert run.target == dash.sim.get_server("db-1").id


def test_run_now_with_nothing_to_back_up_says_so(dash: Dashboard) -> None:
    dash.login()
    policy_id = create_policy(dash, servers="", selector="backup=none", cloud=dash.world.spec)
    response = dash.post(f"/policies/{policy_id}/run", page=f"/policies/{policy_id}")
    assert response.status_code == 409
    assert "has no target to back up now" in response.text
    no_traceback(response.text)


def test_a_failed_run_shows_its_error(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    dash.sim.kill_next_image(dash.sim.get_server("web-1").id)
    dash.post(f"/policies/{policy_id}/run", page=f"/policies/{policy_id}")
    (run,) = dash.store.list_runs()
    assert dash.drive(run.id).state is RunState.FAILED
    listing = dash.client.get("/runs")
    assert 'data-state="failed"' in listing.text
    error = dash.store.get_run(run.id).error
    assert error and unescape(listing.text).count(error) == 1
    detail = dash.client.get(f"/runs/{run.id}")
    assert 'role="alert"' in detail.text and error in unescape(detail.text)


def test_backups_per_target_on_a_time_line_with_reasons(
    dash: Dashboard, clock: VirtualClock
) -> None:
    policy_id, (first,) = backed_up(dash, "web-1")
    clock.advance(timedelta(days=1).total_seconds())
    (run_id,) = run_now(dash, policy_id)
    second = dash.store.get_run(run_id).backup_id
    page = dash.client.get("/backups")
    assert page.status_code == 200
    server_id = dash.sim.get_server("web-1").id
    assert f'data-target="{server_id}"' in page.text
    marks = re.findall(r'class="mark status-(\w+)[^"]*" style="left: ([\d.]+)%"', page.text)
    assert [status for status, _ in marks] == ["available", "available"]
    lefts = sorted(float(left) for _, left in marks)
    assert lefts[0] == 0.0 and 0 < lefts[1] <= 100
    rows = re.findall(r'<td class="reasons">([^<]*)</td>', page.text)
    assert rows == ["daily, weekly", "daily"], rows  # newest first, as retention keeps them
    assert dash.client.get(f"/backups?server={server_id}").text.count('class="backup"') == 2
    assert 'class="backup"' not in dash.client.get("/backups?server=nothing-here").text
    detail = dash.client.get(f"/backups/{second}")
    assert detail.status_code == 200 and "not verified" in detail.text
    assert first != second


def test_protect_and_unprotect(dash: Dashboard) -> None:
    _, (backup_id,) = backed_up(dash, "web-1")
    response = dash.post(f"/backups/{backup_id}/protect", page="/backups")
    assert response.status_code == 303
    assert dash.store.get_backup(backup_id).protected
    page = dash.client.get(f"/backups/{backup_id}")
    assert f"backup {backup_id[:8]} is protected" in page.text
    assert '<span class="badge protected">protected</span>' in page.text
    assert dash.post(f"/backups/{backup_id}/unprotect", page="/backups").status_code == 303
    assert not dash.store.get_backup(backup_id).protected


def test_delete_asks_first_and_refuses_what_safety_refuses(
    dash: Dashboard, clock: VirtualClock
) -> None:
    policy_id, (older,) = backed_up(dash, "web-1")
    confirm = dash.client.get(f"/backups/{older}/delete")
    assert confirm.status_code == 200 and 'id="confirm-delete"' in confirm.text
    last_good = dash.post(f"/backups/{older}/delete", page=f"/backups/{older}/delete")
    assert last_good.status_code == 409
    assert "last good backup" in unescape(last_good.text)
    no_traceback(last_good.text)
    clock.advance(timedelta(days=1).total_seconds())  # the older stays kept as a daily
    run_now(dash, policy_id)
    assert dash.post(f"/backups/{older}/protect", page="/backups").status_code == 303
    protected = dash.post(f"/backups/{older}/delete", page=f"/backups/{older}/delete")
    assert protected.status_code == 409 and "protected" in protected.text
    dash.post(f"/backups/{older}/unprotect", page="/backups")
    deleted = dash.post(f"/backups/{older}/delete", page=f"/backups/{older}/delete")
    assert deleted.status_code == 303
    assert dash.store.get_backup(older).status in (BackupStatus.DELETED, BackupStatus.DELETING)


def test_restore_as_new_shows_the_plan_and_starts_a_job(dash: Dashboard) -> None:
    _, (backup_id,) = backed_up(dash, "web-1")
    form = dash.client.get(f"/backups/{backup_id}/restore")
    assert form.status_code == 200
    assert "It will create" in form.text and "server " in form.text
    page = f"/backups/{backup_id}/restore"
    bad = dash.post(page, {"flavor": "no-such-flavor"}, page=page)
    assert bad.status_code == 400 and "no-such-flavor" in unescape(bad.text)
    no_traceback(bad.text)
    response = dash.post(page, {"name": "web-1-restored"}, page=page)
    assert response.status_code == 303, response.text
    job_page = dash.client.get(response.headers["location"])
    assert job_page.status_code == 200 and "web-1-restored" in job_page.text
    (job,) = dash.store.list_restores(state=None, limit=10)
    assert (job.backup_id, job.plan.name, job.state) == (
        backup_id,
        "web-1-restored",
        RestoreState.PENDING,
    )


def test_status_is_red_when_a_target_is_overdue(dash: Dashboard, clock: VirtualClock) -> None:
    backed_up(dash, "web-1")
    page = dash.client.get("/status")
    assert page.status_code == 200
    assert 'class="verdict verdict-ok">ok<' in page.text
    clock.advance(timedelta(days=3).total_seconds())
    late = dash.client.get("/status")
    assert 'class="verdict verdict-late">late<' in late.text
    assert "target(s) not ok" in late.text
    assert 'tr class="target verdict-row-late"' in late.text


def test_pages_render_with_nothing_in_the_catalogue(dash: Dashboard) -> None:
    dash.login()
    for path, empty in (
        ("/policies", "No policies yet."),
        ("/runs", "No runs yet."),
        ("/backups", "No backups yet."),
        ("/status", "No policy has a target yet."),
    ):
        page = dash.client.get(path)
        assert page.status_code == 200 and empty in page.text, path


def test_a_bad_filter_is_shown_as_bad_input(dash: Dashboard) -> None:
    dash.login()
    response = dash.client.get("/runs?state=exploded")
    assert response.status_code == 400
    assert "unknown run state" in unescape(response.text)
    assert dash.client.get("/runs?policy=nope").status_code == 404


def test_an_unexpected_error_is_a_page_with_an_error_id(dash: Dashboard, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    dash.login()

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom: a bug")

    monkeypatch.setattr("stackback.web.gateway.Gateway.policy_views", explode)
    response = dash.client.get("/policies")
    assert response.status_code == 500
    assert "internal error" in response.text and "error id" in response.text
    assert "boom" not in response.text
    no_traceback(response.text)


def test_the_stylesheet_is_served(dash: Dashboard) -> None:
    response = dash.client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ".verdict-late" in response.text


def test_a_backups_verification_shows_on_its_pages(dash: Dashboard, clock: VirtualClock) -> None:
    _, (backup_id,) = backed_up(dash, "web-1")
    verdict = Verification(
        VerifyResult.FAILED, clock.now(), reason="console never said login:", active_seconds=12.4
    )
    dash.store.record_verification(backup_id, verdict)
    listing = dash.client.get("/backups")
    assert '<span class="verify verify-failed" title="console never said login:">' in listing.text
    assert "(12 s to ACTIVE)" in listing.text
    detail = dash.client.get(f"/backups/{backup_id}")
    assert "console never said login:" in detail.text
