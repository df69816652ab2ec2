"""The dashboard's login, policy pages and actions, through a TestClient on the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from html import unescape
from typing import Any

import pytest

from stackback.services.access import Action
from tests.web.conftest import READER_TOKEN, Dashboard, csrf_of

POLICY_FORM: dict[str, Any] = {
    "name": "nightly",
    "servers": "web-1",
    "crons": "0 1 * * *",
    "timezone": "Europe/Amsterdam",
    "window": "30",
    "kind": "server-image",
    "keep_daily": "7",
    "keep_weekly": "4",
    "consistency": "crash",
    "fallback": "crash",
    "max_pause": "60",
    "orphans": "keep",
}


def create_policy(dash: Dashboard, **changes: Any) -> str:
    """Create a policy through the form; its id (from the page it redirects to)."""
    response = dash.post("/policies/new", {**POLICY_FORM, **changes}, page="/policies/new")
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text


# -- login --------------------------------------------------------------------------------


def test_every_page_sends_a_stranger_to_the_login_page(dash: Dashboard) -> None:
    for path in ("/", "/policies", "/runs", "/backups", "/status", "/policies/new"):
        response = dash.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].endswith(f"/login?next={path.replace('/', '%2F')}")


def test_an_action_without_a_session_is_refused_and_nothing_is_created(dash: Dashboard) -> None:
    response = dash.client.post("/policies/new", data=POLICY_FORM)
    assert response.status_code == 401
    assert "log in" in response.text.lower()
    no_traceback(response.text)
    assert dash.store.list_policies() == []


def test_login_keeps_the_token_in_an_http_only_strict_cookie(dash: Dashboard) -> None:
    page = dash.client.get("/login?next=/status")
    response = dash.client.post(
        "/login",
        data={
            "token": "admin-token-0123456789",
            "csrf_token": csrf_of(page.text),
            "next": "/status",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/status"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("stackback_session=")
    )
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert dash.client.get("/status").status_code == 200


def test_a_wrong_token_is_refused_on_the_login_page(dash: Dashboard) -> None:
    page = dash.client.get("/login")
    response = dash.client.post("/login", data={"token": "guess", "csrf_token": csrf_of(page.text)})
    assert response.status_code == 401
    assert "the token is not valid" in response.text
    assert dash.client.get("/policies").status_code == 303


def test_login_needs_the_login_form_token(dash: Dashboard) -> None:
    """A page elsewhere cannot log a browser in with the attacker's token (login CSRF)."""
    dash.client.get("/login")
    response = dash.client.post("/login", data={"token": "admin-token-0123456789"})
    assert response.status_code == 403
    assert dash.client.get("/policies").status_code == 303


def test_login_goes_back_only_to_a_page_of_this_site(dash: Dashboard) -> None:
    page = dash.client.get("/login")
    response = dash.client.post(
        "/login",
        data={
            "token": "admin-token-0123456789",
            "csrf_token": csrf_of(page.text),
            "next": "//evil.example/steal",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith("/policies")


def test_logout_ends_the_session(dash: Dashboard) -> None:
    dash.login()
    response = dash.post("/logout")
    assert response.status_code == 303
    assert dash.client.get("/policies").status_code == 303


def test_every_form_needs_the_session_csrf_token(dash: Dashboard) -> None:
    dash.login()
    response = dash.client.post("/policies/new", data=POLICY_FORM)
    assert response.status_code == 403
    assert "did not come from this dashboard" in response.text
    forged = dash.client.post("/policies/new", data={**POLICY_FORM, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    assert dash.store.list_policies() == []


# -- policies -----------------------------------------------------------------------------


def test_create_a_policy_and_see_its_next_run_in_its_zone(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    form = dash.client.get("/policies/new")
    assert form.status_code == 200
    assert 'name="crons"' in form.text and 'name="keep_daily"' in form.text
    policy_id = create_policy(dash)
    page = dash.client.get(f"/policies/{policy_id}")
    assert page.status_code == 200
    assert "policy nightly created" in page.text  # the flash message after the redirect
    listing = dash.client.get("/policies")
    assert "nightly" in listing.text
    # 2026-03-02 09:00 UTC now: the next 01:00 in Amsterdam is 2026-03-03 01:00 CET (00:00 UTC)
    assert "next 2026-03-03 01:00 CET" in listing.text
    assert "2026-03-03 00:00 UTC" in listing.text
    assert "daily 7, weekly 4" in listing.text
    assert "flash" not in dash.client.get("/policies").text.split("<main>")[1][:40]
    policy = dash.store.get_policy(policy_id)
    assert (policy.targets, policy.timezone, policy.window_minutes) == (
        ("web-1",),
        "Europe/Amsterdam",
        30,
    )
    assert policy.cloud is None  # the form left the cloud empty: the process's default


def test_the_new_policy_form_offers_the_default_cloud(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    form = dash.client.get("/policies/new")
    assert f'name="cloud" type="text" value="{dash.world.spec}"' in form.text
    policy_id = create_policy(dash, cloud=dash.world.spec)
    assert dash.store.get_policy(policy_id).cloud == dash.world.spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crons": "61 * * * *"}, "61"),
        ({"crons": ""}, "at least one cron"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"keep_daily": "-1"}, "keep-daily must be a whole number"),
        ({"keep_daily": "", "keep_weekly": ""}, "--keep-all"),
        ({"servers": "web-1", "selector": "backup=nightly"}, "not both"),
        ({"servers": "no-such-server"}, "no server 'no-such-server'"),
        ({"name": ""}, "a policy name must have 1 to 255 characters"),
    ],
)
def test_bad_input_shows_the_message_on_the_form_with_the_values_kept(
    dash: Dashboard, change: dict[str, str], message: str
) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    form = {**POLICY_FORM, "cloud": dash.world.spec, **change}
    response = dash.post("/policies/new", form, page="/policies/new")
    assert response.status_code == 400
    text = unescape(response.text)
    assert message in text, text
    assert 'name="window" type="text" value="30"' in response.text  # what was typed stays
    no_traceback(response.text)
    assert dash.store.list_policies() == []


def test_offline_skips_the_cloud_check_as_the_cli_does(dash: Dashboard) -> None:
    dash.login()
    create_policy(dash, servers="not-there-yet", offline="on")
    assert dash.store.get_policy("nightly").targets == ("not-there-yet",)


def test_edit_a_policy_form_is_filled_in_and_saves_every_field(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.sim.create_server("db-1", metadata={"backup": "nightly"})
    dash.login()
    policy_id = create_policy(dash)
    form = dash.client.get(f"/policies/{policy_id}/edit")
    assert form.status_code == 200
    assert (
        'value="Europe/Amsterdam"' in form.text
        and 'id="keep_daily" name="keep_daily" type="text" value="7"' in form.text
    )
    changed = {
        **POLICY_FORM,
        "name": "nightly-db",
        "servers": "",
        "selector": "backup=nightly",
        "crons": "30 2 * * *\n0 14 * * 6",
        "keep_daily": "",
        "keep_last": "3",
        "verify_cron": "0 3 1 * *",
    }
    response = dash.post(f"/policies/{policy_id}/edit", changed, page=f"/policies/{policy_id}/edit")
    assert response.status_code == 303, response.text
    policy = dash.store.get_policy(policy_id)
    assert policy.name == "nightly-db"
    assert policy.targets == () and str(policy.selector) == "backup=nightly"
    assert policy.schedules == ("30 2 * * *", "0 14 * * 6")
    assert policy.retention.to_dict() == {"last": 3, "weekly": 4}
    assert policy.verify is not None and policy.verify.cron == "0 3 1 * *"
    page = dash.client.get(f"/policies/{policy_id}")
    assert "policy nightly-db saved" in page.text


def test_edit_with_bad_input_changes_nothing(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    page = f"/policies/{policy_id}/edit"
    response = dash.post(page, {**POLICY_FORM, "window": "ten"}, page=page)
    assert response.status_code == 400
    assert "window must be a whole number" in response.text
    assert dash.store.get_policy(policy_id).window_minutes == 30


def test_enable_and_disable(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    assert dash.post(f"/policies/{policy_id}/disable").status_code == 303
    assert not dash.store.get_policy(policy_id).enabled
    page = dash.client.get(f"/policies/{policy_id}")
    assert "policy nightly disabled" in page.text and "no next run" in page.text
    assert dash.post(f"/policies/{policy_id}/enable").status_code == 303
    assert dash.store.get_policy(policy_id).enabled


def test_unknown_ids_get_a_404_page(dash: Dashboard) -> None:
    dash.login()
    for path in (
        "/policies/nope",
        "/policies/nope/edit",
        "/runs/0123456789abcdef",
        "/backups/0123456789abcdef",
        "/backups/0123456789abcdef/delete",
        "/backups/0123456789abcdef/restore",
        "/restores/0123456789abcdef",
    ):
        response = dash.client.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text
        no_traceback(response.text)
    assert dash.post("/policies/nope/run").status_code == 404
    assert dash.post("/backups/0123456789abcdef/protect").status_code == 404


def test_every_page_and_action_asks_the_authorizer(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    dash.authorizer.asked.clear()
    dash.client.get("/policies")
    dash.client.get(f"/policies/{policy_id}")
    dash.post(f"/policies/{policy_id}/disable")
    dash.client.get("/status")
    asked = {action for _, action, _ in dash.authorizer.asked}
    assert {
        Action.POLICY_LIST,
        Action.POLICY_SHOW,
        Action.POLICY_UPDATE,
        Action.STATUS_SHOW,
        Action.RUN_LIST,
    } <= asked


def test_a_reader_sees_pages_but_cannot_act(dash: Dashboard) -> None:
    dash.sim.create_server("web-1")
    dash.login()
    policy_id = create_policy(dash)
    dash.login(READER_TOKEN)
    listing = dash.client.get("/policies")
    assert listing.status_code == 200 and "nightly" in listing.text
    assert "Run now" not in listing.text and "New policy" not in listing.text
    assert dash.client.get("/policies/new").status_code == 403
    assert dash.client.get(f"/policies/{policy_id}/edit").status_code == 403
    for action in ("disable", "run"):
        response = dash.post(f"/policies/{policy_id}/{action}")
        assert response.status_code == 403, action
        assert "rita may not" in response.text
    assert dash.store.get_policy(policy_id).enabled
    assert dash.store.list_runs() == []


def test_an_oversized_form_is_refused(dash: Dashboard) -> None:
    dash.login()
    response = dash.post("/policies/new", {**POLICY_FORM, "servers": "x" * 70_000})
    assert response.status_code == 413
    assert "at most 65536 bytes" in response.text
    assert dash.store.list_policies() == []


def test_pages_cannot_be_framed_or_cached(dash: Dashboard) -> None:
    for response in (dash.client.get("/login"), dash.client.get("/policies")):
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
    assert dash.client.get("/static/style.css").headers["cache-control"] == "max-age=3600"


def test_an_error_page_keeps_the_header_of_a_logged_in_user(dash: Dashboard) -> None:
    dash.login()
    page = dash.client.get("/policies/nope")
    assert page.status_code == 404
    assert "alice" in page.text and "Log out" in page.text


def test_a_new_policy_s_kind_is_server_image_in_every_process() -> None:
    """The form's default kind is `policy create`'s, whatever the hash seed of the process
    (the kinds once came in a set's order: a random default, a flaky browser test)."""
    script = "from stackback.web.forms import blank_form; print(blank_form(None)['kind'])"
    kinds = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in range(4)
    }
    assert kinds == {"server-image"}
