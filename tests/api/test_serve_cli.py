"""``stackback api`` and ``stackback serve`` serving the API (real processes, real sockets)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import STACKBACK, CliRunner, Sim, assert_one_line_error, cli  # noqa: F401

TOKEN_LINE = re.compile(r"API token \(local mode; shown once, kept in (\S+)\): (\S+)")
API_LINE = re.compile(r"API on (http://[\d.]+:\d+)/v1")


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``stackback ARGS``; its stderr lines up to the one that says where the API is."""
    process = subprocess.Popen(
        [str(STACKBACK), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 1)
        if ready:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line.strip())
            if API_LINE.search(line):
                return process, lines
    process.kill()
    raise AssertionError("the API did not start:\n" + "\n".join(lines))


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def _url(lines: list[str]) -> str:
    found = next(m for m in map(API_LINE.search, lines) if m)
    return found.group(1)


@pytest.mark.slow  # a real `stackback` process
def test_serve_runs_api_scheduler_and_workers_with_metrics_on_the_api(
    sim: Sim, tmp_path: Path
) -> None:
    process, lines = _start("--os-cloud", sim.spec, "serve", "--port", "0")
    try:
        (token_path, token), *_ = [m.groups() for m in map(TOKEN_LINE.search, lines) if m]
        assert Path(token_path).read_text().strip() == token
        assert oct(Path(token_path).stat().st_mode & 0o777) == "0o600"
        assert any("scheduler and worker" in line for line in lines)
        url = _url(lines)
        headers = {"X-Auth-Token": token}
        sim.cloud.create_server("web-1")
        body = {
            "name": "nightly",
            "targets": ["web-1"],
            "schedules": ["0 1 * * *"],
            "retention": {"last": 2},
        }
        created = httpx.post(f"{url}/v1/policies", json=body, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        assert created.json()["project"] is None  # local mode: the operator's, as the CLI's
        runs = httpx.post(f"{url}/v1/policies/nightly/run", headers=headers, timeout=30).json()
        deadline = time.monotonic() + 60  # the workers of the same process take it
        while time.monotonic() < deadline:
            run = httpx.get(f"{url}/v1/runs/{runs[0]['id']}", headers=headers, timeout=30)
            if run.json()["state"] == "succeeded":
                break
            time.sleep(0.5)
        assert run.json()["state"] == "succeeded", run.text
        metrics = httpx.get(f"{url}/metrics", timeout=30)
        assert metrics.status_code == 200
        assert "stackback_" in metrics.text
        assert httpx.get(f"{url}/v1/runs", timeout=30).status_code == 401
    finally:
        assert _stop(process) == 0

    again, lines = _start("--os-cloud", sim.spec, "serve", "--api-only", "--port", "0")
    try:
        assert not any(TOKEN_LINE.search(line) for line in lines)  # printed once only
        assert not any("scheduler and worker" in line for line in lines)
        listed = httpx.get(f"{_url(lines)}/v1/policies", headers=headers, timeout=30)
        assert [p["name"] for p in listed.json()["items"]] == ["nightly"]
    finally:
        assert _stop(again) == 0


@pytest.mark.slow  # a real `stackback` process
def test_api_alone_with_the_dashboard_at_the_root(sim: Sim) -> None:
    process, lines = _start("--os-cloud", sim.spec, "api", "--port", "0")
    try:
        (path, token), *_ = [m.groups() for m in map(TOKEN_LINE.search, lines) if m]
        response = httpx.get(
            f"{_url(lines)}/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert response.status_code == 200 and response.json() == []
        login = httpx.get(f"{_url(lines)}/login", timeout=30)
        assert login.status_code == 200 and "text/html" in login.headers["content-type"]
        secret = Path(path).parent / "web-secret"  # replicas sharing the file share the secret
        assert oct(secret.stat().st_mode & 0o777) == "0o600" and secret.read_text().strip()
    finally:
        assert _stop(process) == 0


def _log_in(url: str, token: str) -> tuple[str, str]:
    """Log in to the dashboard at ``url``: (the Set-Cookie header, the session cookie)."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        form = browser.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        response = browser.post("/login", data={"token": token, "csrf_token": csrf.group(1)})
        assert response.status_code == 303, response.text
        header = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("stackback_session")
        )
        return header, browser.cookies["stackback_session"]


@pytest.mark.slow  # a real `stackback` process
def test_the_dashboard_s_cookie_is_sealed_with_the_secret_file_s_keys(sim: Sim) -> None:
    args = ("--os-cloud", sim.spec, "api", "--port", "0", "--web-session-lifetime", "600")
    process, lines = _start(*args)
    try:
        (path, token), *_ = [m.groups() for m in map(TOKEN_LINE.search, lines) if m]
        header, cookie = _log_in(_url(lines), token)
        assert token not in header and token[:12] not in header and token[-12:] not in header
        assert "Max-Age=600;" in header
    finally:
        assert _stop(process) == 0
    secret = Path(path).parent / "web-secret"
    secret.write_text("a-new-secret-put-first\n" + secret.read_text())
    process, lines = _start(*args)
    try:
        url = _url(lines)
        kept = httpx.get(f"{url}/policies", cookies={"stackback_session": cookie}, timeout=30)
        assert kept.status_code == 200  # the old secret still opens the old session
        _, fresh = _log_in(url, token)
    finally:
        assert _stop(process) == 0
    secret.write_text("another-secret\n")
    process, lines = _start(*args)
    try:
        for old in (cookie, fresh):
            gone = httpx.get(f"{_url(lines)}/policies", cookies={"stackback_session": old})
            assert gone.status_code == 303 and "/login" in gone.headers["location"]
    finally:
        assert _stop(process) == 0


def test_keystone_mode_without_its_service_cloud_is_one_line(
    cli: CliRunner,  # noqa: F811
    sim: Sim,
) -> None:
    result = cli("--os-cloud", sim.spec, "api", "--port", "0", "--auth", "keystone")
    assert result.code == 2
    assert_one_line_error(result.err, "STACKBACK_KEYSTONE_CLOUD")


def test_serve_options_refused_in_one_line(
    cli: CliRunner,  # noqa: F811
    sim: Sim,
) -> None:
    result = cli("--os-cloud", sim.spec, "serve", "--no-api", "--api-only")
    assert result.code == 2
    assert_one_line_error(result.err, "exclude each other")
    assert cli("--os-cloud", sim.spec, "serve", "--no-api", "--once").code == 0


def test_a_taken_port_is_one_line(
    cli: CliRunner,  # noqa: F811
    sim: Sim,
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        result = cli("--os-cloud", sim.spec, "api", "--port", port)
    assert result.code == 2
    assert_one_line_error(result.err, "cannot listen")


def test_a_missing_policy_file_is_one_line(cli: CliRunner, sim: Sim, tmp_path: Path) -> None:  # noqa: F811
    missing = tmp_path / "nope.yaml"
    result = cli("--os-cloud", sim.spec, "api", "--port", "0", "--policy-file", str(missing))
    assert result.code == 2
    assert_one_line_error(result.err, "policy file")
