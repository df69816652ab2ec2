"""Operations: JSON log lines with run and error ids, no secret in any log line, the alerts
file and the metrics options of ``serve``."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

import pytest

from stackback.cli import logs
from stackback.engine.runner import _current_run
from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, start_process
from tests.support.receivers import webhook_receiver

PLANE_PASSWORD = "Pl4ne-passw0rd-xyzzy"
HOOK_SECRET = "hook-shared-secret-4242"
SMTP_PASSWORD = "smtp-passw0rd-plugh"


def test_json_lines_carry_time_level_logger_message_run_and_error_ids() -> None:
    logs.install_record_factory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("stackback.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    token = _current_run.set("run-1234")
    try:
        logger.warning("deleting backup b1: boom (error id 0123456789ab)")
    finally:
        _current_run.reset(token)
        logger.removeHandler(handler)
    logger.info("outside any run")
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "run_id", "error_id"}
    assert entry["level"] == "WARNING" and entry["logger"] == "stackback.test.json"
    assert (entry["run_id"], entry["error_id"]) == ("run-1234", "0123456789ab")


def test_secrets_are_masked_in_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logs.install_record_factory()
    logs.register_secret("registered-s3cret")
    logger = logging.getLogger("stackback.test.secrets")
    with caplog.at_level(logging.INFO):
        logger.info("auth with %s", {"password": "hunter22", "user": "admin"})
        logger.info("token=abcdef123456 and registered-s3cret")
        try:
            raise RuntimeError("connect with registered-s3cret failed")
        except RuntimeError:
            logger.exception("failed")
    text = "\n".join(caplog.text.splitlines())
    assert "hunter22" not in text and "abcdef123456" not in text
    assert "registered-s3cret" not in text and "***" in text
    assert "admin" in text  # only the secrets go


def _clouds_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n  plane:\n    auth:\n      auth_url: http://127.0.0.1:1/identity\n"
        f"      username: admin\n      password: {PLANE_PASSWORD}\n      project_name: demo\n"
    )
    return path


@pytest.mark.slow  # real processes
def test_no_secret_in_any_log_line_of_a_backup_and_of_serve(
    cli: CliRunner, sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup on the simulator and a serve cycle that alerts, with every logger at DEBUG,
    a clouds.yaml, a webhook secret and an SMTP password configured: none appears in a
    log line, JSON (a real process) or captured (in-process)."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(_clouds_yaml(tmp_path)))
    monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("STACKBACK_STATE_DIR", str(tmp_path / "state"))
    sim.cloud.create_server("web1")
    process = start_process(
        "-vv", "--log-format", "json", "--os-cloud", sim.spec, "backup", "now", "web1", "--wait"
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    json_lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(entry.get("run_id") for entry in json_lines), err
    assert "finished" in " ".join(e["message"] for e in json_lines)

    with webhook_receiver() as hook:
        hook.answers = [500] * 10
        alerts = tmp_path / "alerts.yaml"
        alerts.write_text(
            "interval: 1\nchannels:\n"
            f"  - {{name: hook, type: webhook, url: '{hook.url}', secret_env: HOOK_SECRET,"
            " attempts: 2, backoff: 0}\n"
            "  - {name: mail, type: email, host: 127.0.0.1, port: 1, from: a@b.test,"
            " to: [c@d.test], username: u, password_env: SMTP_PASSWORD, attempts: 1}\n"
        )
        cli("--os-cloud", sim.spec, "policy", "create", "ghosts", "--server", "ghost",
            "--cron", "* * * * *", "--keep-last", "1", "--offline")  # fmt: skip
        with caplog_everything() as records:
            origin = str(int(time.time()) - 2)  # at 5,400x, hours pass: runs due and failed
            for _ in range(3):
                fast = ("--time-scale", "5400", "--time-origin", origin)
                result = cli(
                    "-vv", "--os-cloud", sim.spec, "serve", "--once", "--alerts", str(alerts), *fast
                )
                assert result.code == 0, result.err
        assert len(hook.requests) >= 1, "\n".join(records)  # an alert was really attempted
    lines = [*err.splitlines(), *out.splitlines(), *records]
    for secret in (PLANE_PASSWORD, HOOK_SECRET, SMTP_PASSWORD):
        assert not [line for line in lines if secret in line], secret


class caplog_everything:
    """Every record of every logger at DEBUG, formatted with its traceback."""

    def __enter__(self) -> list[str]:
        self.lines: list[str] = []
        self.handler = _ListHandler(self.lines)
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(logging.DEBUG)
        return self.lines

    def __exit__(self, *_exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines())


def test_serve_refuses_a_bad_alerts_file_in_one_line(cli: CliRunner, tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text("channels:\n  - {name: hook, type: webhook, url: 'ftp://x', secret: s}\n")
    result = cli("--os-cloud", "sim", "serve", "--once", "--alerts", str(alerts))
    assert result.code == 2
    assert_one_line_error(result.err, "url must be http")
    os.environ.pop("NO_SUCH_VARIABLE", None)
    alerts.write_text(
        "channels:\n  - {name: hook, type: webhook, url: 'http://x',"
        " secret_env: NO_SUCH_VARIABLE}\n"
    )
    result = cli("--os-cloud", "sim", "serve", "--once", "--alerts", str(alerts))
    assert result.code == 2
    assert_one_line_error(result.err, "NO_SUCH_VARIABLE is not set")


DELIVERY_KEYS = {
    "channel", "event", "condition", "policy", "target", "target_name", "status", "attempts",
    "detail", "at", "summary",
}  # fmt: skip


def test_alert_check_test_and_list(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKBACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
    missing = cli("alert", "check")
    assert missing.code == 2
    assert_one_line_error(missing.err, "no alerts file")
    with webhook_receiver() as hook:
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "alerts.yaml").write_text(
            "channels:\n"
            f"  - {{name: hook, type: webhook, url: '{hook.url}', secret_env: HOOK_SECRET,"
            " policies: [nightly], events: [run_failed]}\n"
        )
        checked = cli("alert", "check", "-f", "json")
        assert checked.code == 0, checked.err
        assert checked.json() == [
            {
                "channel": "hook",
                "type": "webhook",
                "policies": ["nightly"],
                "events": ["run_failed"],
            }
        ]
        sent = cli("alert", "test", "-f", "json")
        assert sent.code == 0, sent.err
        assert [b["event"] for b in hook.bodies()] == ["test"]  # whatever the routes
        hook.answers = [404]
        refused = cli("alert", "test", "--channel", "hook")
        assert refused.code == 1
    unknown = cli("alert", "test", "--channel", "nope")
    assert unknown.code == 2
    assert_one_line_error(unknown.err, "no alert channel 'nope'")
    listed = cli("alert", "list", "-f", "json")
    assert listed.code == 0, listed.err
    rows = listed.json()
    assert [r["status"] for r in rows] == ["failed", "delivered"]
    assert all(set(r) == DELIVERY_KEYS for r in rows)
