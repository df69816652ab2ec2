"""packaging/stackback.env.example documents every setting there is, with its true default."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import pytest

from stackback.cli import cli, main
from stackback.cli.serve import COMMANDS as ENGINE_COMMANDS
from stackback.config import Settings
from stackback.engine.settings import EngineSettings
from stackback.notify.config import load_alerts

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
SAMPLE = (PACKAGING / "stackback.env.example").read_text()
SOURCES = Path(__file__).resolve().parents[2] / "src" / "stackback"


def options(command: click.Command) -> Iterator[click.Option]:
    yield from (p for p in command.params if isinstance(p, click.Option))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from options(sub)


def envvars(option: click.Option) -> list[str]:
    given = option.envvar
    if given is None:
        return []
    return [given] if isinstance(given, str) else list(given)


def missing(names: list[str]) -> list[str]:
    return [name for name in names if not re.search(rf"(?<![\w-]){re.escape(name)}\b", SAMPLE)]


def test_every_field_of_the_settings_is_documented() -> None:
    names = [f"Settings.{f.name}" for f in dataclasses.fields(Settings)]
    names += [f"EngineSettings.{f.name}" for f in dataclasses.fields(EngineSettings)]
    assert missing(names) == []


def test_every_environment_variable_of_any_option_is_documented() -> None:
    assert missing(sorted({v for o in options(cli) for v in envvars(o)})) == []


def test_every_option_of_the_engine_commands_and_the_group_is_documented() -> None:
    params = [o for o in cli.params if isinstance(o, click.Option)]
    params += [o for command in ENGINE_COMMANDS for o in options(command)]
    names = {max(o.opts, key=len) for o in params if not o.hidden} - {"--help", "--version"}
    assert missing(sorted(names)) == []


def test_every_variable_the_code_reads_is_documented() -> None:
    read = {
        name
        for path in SOURCES.rglob("*.py")
        for name in re.findall(r"\b(?:STACKBACK|OS)_[A-Z_]+\b", path.read_text())
    }
    assert read and missing(sorted(read)) == []


@pytest.mark.parametrize(
    ("variable", "default"),
    [
        ("STACKBACK_POLL_INTERVAL", EngineSettings().poll_interval),
        ("STACKBACK_LEASE", EngineSettings().lease),
        ("STACKBACK_GRACE", EngineSettings().grace),
        ("STACKBACK_RETRY_WINDOW", EngineSettings().retry_window),
    ],
)
def test_the_defaults_shown_are_the_code_s(variable: str, default: timedelta) -> None:
    shown = re.findall(rf"^#{variable}=(\S+)$", SAMPLE, re.MULTILINE)
    assert shown == [f"{default.total_seconds():g}"]


def test_the_sample_alerts_file_is_valid() -> None:
    secrets = {"STACKBACK_WEBHOOK_SECRET": "s", "STACKBACK_SMTP_PASSWORD": "p"}
    settings = load_alerts(PACKAGING / "alerts.yaml.example", env=secrets)
    assert [c.route.channel for c in settings.channels] == ["ops-webhook", "ops-mail"]
    assert all(f"#{name}=" in SAMPLE for name in secrets)


@pytest.mark.parametrize("variable", ["STACKBACK_LEASE", "STACKBACK_POLL_INTERVAL"])
def test_the_engine_reads_its_timing_from_the_environment(
    variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, "-5")
    assert main(["--os-cloud", "sim", "worker", "--once"]) == 2
    option = "--" + variable.removeprefix("STACKBACK_").lower().replace("_", "-")
    assert f"{option} must be positive" in capsys.readouterr().err
