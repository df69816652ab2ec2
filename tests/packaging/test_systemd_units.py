"""The systemd units in packaging/systemd: what they promise, and ``systemd-analyze verify``."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from stackback.engine.settings import EngineSettings

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
NAMES = ("stackback-serve.service", "stackback-scheduler.service", "stackback-worker@.service")
INSTALLED_BINARY = "/opt/stackback/bin/stackback"


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def seconds(value: str) -> float:
    units = {"min": 60, "s": 1, "h": 3600, "": 1}
    total = 0.0
    for number, suffix in re.findall(r"(\d+)\s*(min|s|h|)", value):
        total += int(number) * units[suffix]
    return total


@pytest.mark.parametrize("name", NAMES)
def test_each_unit_is_a_hardened_notify_service_that_outlives_a_lease(name: str) -> None:
    service = unit(name)["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].startswith(f"{INSTALLED_BINARY} ")
    assert service["User"] == "stackback" and service["StateDirectory"] == "stackback"
    assert service["EnvironmentFile"] == "-/etc/stackback/stackback.env"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["Restart"] == "on-failure"
    stop = timedelta(seconds=seconds(service["TimeoutStopSec"]))
    assert stop > EngineSettings().lease


def test_the_worker_unit_is_a_template_naming_each_worker() -> None:
    exec_start = unit("stackback-worker@.service")["Service"]["ExecStart"]
    assert exec_start.split()[1:3] == ["worker", "--worker-name"] and "%i" in exec_start


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI (./dev installs the systemd package)")
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's binary exists: point it at this environment's stackback.
    binary = Path(sys.executable).parent / "stackback"
    assert binary.exists(), binary
    for name in NAMES:
        text = (UNITS / name).read_text().replace(INSTALLED_BINARY, str(binary))
        (tmp_path / name).write_text(text)
    targets = [*(f"./{n}" for n in NAMES), "./stackback-worker@1.service"]
    result = subprocess.run(
        [analyze, "verify", *targets],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.strip() == "", output  # unknown or unparsable keys are only warned about
