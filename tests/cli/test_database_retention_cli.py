"""``retention preview POLICY`` for a database policy shows its chains (the parent column)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stackback.policy import Backup, BackupKind, BackupStatus
from stackback.store.database import create_db_engine
from stackback.store.sql import SqlStore
from tests.cli.conftest import CliRunner, Sim, ok_json


def test_preview_of_a_database_policy_shows_the_chain(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    ok_json(cli, "--os-cloud", sim.spec, "sim", "database", "create", "orders")
    ok_json(
        cli, "--os-cloud", sim.spec, "policy", "create", "orders", "--kind", "database-backup",
        "--server", "orders", "--cron", "0 1 * * *", "--keep-last", "1", "--full-every", "7",
    )  # fmt: skip
    store = SqlStore(create_db_engine(f"sqlite:///{tmp_path / 'state' / 'stackback.db'}"))
    try:
        policy = store.get_policy("orders")
        t0 = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
        ids: list[str] = []
        for day in range(3):  # F <- I1 <- I2
            backup = store.ensure_backup(
                Backup(
                    id=str(uuid.uuid4()),
                    target="orders-id",
                    kind=BackupKind.DATABASE_BACKUP,
                    status=BackupStatus.AVAILABLE,
                    created_at=t0 + timedelta(days=day),
                    policy_id=policy.id,
                    policy_name=policy.name,
                    parent_id=ids[-1] if ids else None,
                )
            )
            ids.append(backup.id)
    finally:
        store.dispose()
    rows = ok_json(cli, "retention", "preview", "orders")
    got = {r["backup"]: (r["action"], r["reasons"], r["parent_id"]) for r in rows}
    assert got == {
        ids[2]: ("keep", ["last"], ids[1]),
        ids[1]: ("keep", ["for the chain"], ids[0]),
        ids[0]: ("keep", ["for the chain"], None),
    }
    table = cli("retention", "preview", "orders")
    assert table.code == 0
    assert "parent" in table.out.lower() and "(full)" in table.out and "for the chain" in table.out
    for parent in ids[:2]:
        assert parent[:8] in table.out
