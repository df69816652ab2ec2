"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against the app served by uvicorn on 127.0.0.1, on the simulator.

Screenshots of the key pages go to the test's tmp path, and also to ``$STACKBACK_SCREENSHOTS``
when it is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stackback.clock import SystemClock
from stackback.policy import RunState
from tests.web.conftest import ADMIN_TOKEN, RecordingAuthorizer, World, build_app, drive, make_world

pytestmark = pytest.mark.browser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium() -> str:
    """Debian's chromium; a CI run without it fails rather than skipping silently."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


@dataclass
class Served:
    world: World
    url: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The dashboard app served by uvicorn in a thread, on a free port of 127.0.0.1."""
    import uvicorn

    world = make_world(tmp_path, SystemClock())
    app = build_app(world, RecordingAuthorizer())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(world, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        world.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Screenshots:
    def __init__(self, directory: Path) -> None:
        self.directories = [directory]
        extra = os.environ.get("STACKBACK_SCREENSHOTS")
        if extra:
            self.directories.append(Path(extra))
        for d in self.directories:
            d.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page: Any, name: str) -> None:
        image = page.screenshot(full_page=True)
        for directory in self.directories:
            path = directory / f"{name}.png"
            path.write_bytes(image)
            self.taken.append(path)


def test_create_a_policy_run_it_and_protect_its_backup_in_chromium(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    world = served.world
    world.sim.create_server("web-1")
    shots = Screenshots(tmp_path / "screenshots")
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)

    # Log in: a stranger is sent to the login page, and back where it wanted to go.
    page.goto(f"{served.url}/policies")
    assert page.url.startswith(f"{served.url}/login")
    shots.take(page, "login")
    page.fill("#token", "wrong")
    page.click("button:has-text('Log in')")
    assert "the token is not valid" in page.inner_text("[role=alert]")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{served.url}/policies")
    session = next(c for c in context.cookies() if c["name"] == "stackback_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert ADMIN_TOKEN[:8] not in session["value"] and ADMIN_TOKEN[-8:] not in session["value"]

    # Create a policy: a bad cron first (the message on the form), then a good one.
    page.click("#new-policy")
    page.fill("#name", "browser-nightly")
    page.fill("#servers", "web-1")
    page.fill("#crons", "0 25 * * *")
    page.fill("#timezone", "Europe/Amsterdam")
    page.fill("#keep_daily", "7")
    page.fill("#keep_weekly", "4")
    page.click("#save-policy")
    assert "25" in page.inner_text("[role=alert]")
    assert page.input_value("#name") == "browser-nightly"
    shots.take(page, "policy-form-error")
    page.fill("#crons", "0 1 * * *")
    page.click("#save-policy")
    page.wait_for_selector(".flash")
    assert "policy browser-nightly created" in page.inner_text(".flash")
    policy_url = page.url

    page.goto(f"{served.url}/policies")
    row = page.locator("tr.policy[data-name='browser-nightly']")
    assert row.count() == 1
    next_run = row.locator(".next-run").inner_text()
    assert next_run.startswith("next ") and next_run.endswith(("CET", "CEST")), next_run
    assert "daily 7, weekly 4" in row.inner_text()
    shots.take(page, "policies")

    # Run it now; a worker cycle from the test finishes the run on the simulator.
    page.goto(policy_url)
    page.click("button:has-text('Run now')")
    page.wait_for_selector(".flash")
    assert "1 run(s) of browser-nightly queued: web-1" in page.inner_text(".flash")
    (run,) = world.store.list_runs()
    assert drive(world, run.id).state is RunState.SUCCEEDED
    page.goto(f"{served.url}/runs")
    succeeded = page.locator("tr.run[data-state='succeeded']")
    assert succeeded.count() == 1
    assert "browser-nightly" in succeeded.inner_text()
    shots.take(page, "runs")
    succeeded.locator("a").first.click()
    assert page.locator("#steps tr.step").count() >= 2
    shots.take(page, "run")

    # Protect its backup from the backups page.
    page.goto(f"{served.url}/backups")
    assert page.locator(".timeline .mark").count() == 1
    backup_row = page.locator("tr.backup")
    assert "daily, weekly" in backup_row.locator(".reasons").inner_text()
    backup_row.locator("button:has-text('Protect')").click()
    page.wait_for_selector(".flash")
    assert "is protected" in page.inner_text(".flash")
    assert page.inner_text("#protected") == "protected"
    (backup,) = world.store.list_backups()
    assert backup.protected
    page.goto(f"{served.url}/backups")
    assert page.locator(".timeline .mark.protected").count() == 1
    assert page.locator("tr.backup .badge.protected").count() == 1
    shots.take(page, "backups")

    page.goto(f"{served.url}/status")
    assert page.locator("#status tr.target").count() == 1
    assert page.inner_text("#status .verdict") == "ok"
    shots.take(page, "status")

    # The policy's retention preview, the (empty) restores page, then delete the policy
    # from its page after the confirmation page.
    page.goto(policy_url)
    page.click("a:has-text('Retention preview')")
    kept = page.locator("#preview tr.preview-row[data-action='keep']")
    assert kept.count() == 1 and kept.locator(".reasons").inner_text() == "protected"
    shots.take(page, "retention-preview")
    page.click("nav a:has-text('Restores')")
    assert "No restores yet." in page.inner_text("main")
    page.goto(policy_url)
    page.click("a.danger:has-text('Delete')")
    assert world.store.list_policies() != []
    shots.take(page, "policy-delete")
    page.click("#confirm-delete")
    page.wait_for_selector(".flash")
    assert "policy browser-nightly deleted" in page.inner_text(".flash")
    assert world.store.list_policies() == []

    # An unknown id: a 404 page, not a traceback.
    response = page.goto(f"{served.url}/backups/0123456789abcdef")
    assert response is not None and response.status == 404
    assert "Not found" in page.inner_text("h1")
    context.close()

    names = {path.stem for path in shots.taken}
    assert names == {
        "login",
        "policy-form-error",
        "policies",
        "runs",
        "run",
        "backups",
        "status",
        "retention-preview",
        "policy-delete",
    }
    for path in shots.taken:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, path
