"""The pure core stays pure, and the adapters satisfy the ports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import stackback

CORE = [
    "stackback.retention",
    "stackback.schedule",
    "stackback.policy",
    "stackback.records",
    "stackback.retry",
]
FORBIDDEN = ("sqlalchemy", "alembic", "openstack", "keystoneauth1", "requests", "httpx", "click")


def test_core_modules_import_no_database_cloud_http_or_cli() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in [*CORE, "stackback.ports"])
        + "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    leaked = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert leaked == []


def test_core_modules_never_read_the_clock() -> None:
    root = Path(stackback.__file__).parent
    for module in CORE:
        source = (root / (module.split(".", 1)[1] + ".py")).read_text()
        assert not re.search(r"\.now\(|\.utcnow\(|time\.time\(|\btoday\(", source), module


def test_the_adapters_implement_the_ports(tmp_path: Path) -> None:
    from stackback.clock import SystemClock, VirtualClock
    from stackback.cloud.openstack import OpenStackCloud
    from stackback.cloud.simulator import SimulatedCloud
    from stackback.ports import Clock, Cloud, Store
    from stackback.store.sql import SqlStore

    assert all(hasattr(SqlStore, name) for name in dir(Store) if not name.startswith("_"))
    assert all(hasattr(OpenStackCloud, name) for name in dir(Cloud) if not name.startswith("_"))
    assert isinstance(SimulatedCloud(tmp_path / "c.sqlite", SystemClock()), Cloud)
    assert isinstance(SystemClock(), Clock)
    assert isinstance(VirtualClock(SystemClock().now()), Clock)
