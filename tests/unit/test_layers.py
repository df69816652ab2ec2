"""The layers hold (import-linter's contracts in pyproject.toml), and the core reads no clock.

That each adapter satisfies its port is the type checker's job: every adapter module ends
with a ``TYPE_CHECKING`` function that returns it as its Protocol, which mypy verifies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import stackback

CORE = [
    "stackback.retention",
    "stackback.safety",
    "stackback.schedule",
    "stackback.policy",
    "stackback.records",
    "stackback.rpo",
    "stackback.restoreplan",
    "stackback.retry",
    "stackback.consistency",
    "stackback.alerts",
    "stackback.verification",
    "stackback.chains",
    "stackback.databases",
]
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(stackback.__file__).resolve().parent


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """Run the contracts in pyproject.toml over the stackback package in ``package_parent``."""
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(linter), "--no-cache", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=package_parent,
        env={**os.environ, "PYTHONPATH": str(package_parent)},
    )


def test_the_import_contracts_hold() -> None:
    done = lint_imports(PACKAGE.parent)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("module", "bad_import"),
    [
        ("retention.py", "import stackback.store"),  # the core reaching up
        ("engine/runner.py", "import stackback.cloud.openstack"),  # engine beside adapters
        ("ports.py", "import sqlalchemy"),  # a port on a database library
        ("cli/runs.py", "from stackback.store.sql import SqlStore"),  # a face on the store
    ],
)
def test_the_import_contracts_catch_a_violation(
    tmp_path: Path, module: str, bad_import: str
) -> None:
    copy = tmp_path / "stackback"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{bad_import}  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout


def test_core_modules_never_read_the_clock() -> None:
    root = Path(stackback.__file__).parent
    for module in CORE:
        source = (root / (module.split(".", 1)[1] + ".py")).read_text()
        assert not re.search(r"\.now\(|\.utcnow\(|time\.time\(|\btoday\(", source), module
