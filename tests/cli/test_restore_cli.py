"""``stackback restore``: dry run, --wait, list/show/cancel with -f json, and refusals."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackback.policy import ArtifactStatus, Backup, BackupKind, BackupStatus
from stackback.store.database import create_db_engine
from stackback.store.sql import SqlStore
from tests.cli.conftest import (
    CliRunner,
    Sim,
    assert_one_line_error,
    backup_of,
    ok_json,
    servers_and_volumes,
)

pytestmark = pytest.mark.usefixtures("fast_restores")


def test_dry_run_prints_the_plan_and_creates_nothing(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("db", volume_backed=True, volumes=1)
    backup = backup_of(cli, sim, "db")
    before = servers_and_volumes(sim)
    plan = ok_json(
        cli, "--os-cloud", sim.spec, "restore", backup, "--dry-run", "--flavor", "m1.tiny"
    )
    assert plan["dry_run"] is True
    assert plan["flavor"] == "m1.tiny"
    assert [v["device_name"] for v in plan["volumes"]] == ["/dev/vda", "/dev/vdb"]
    assert len(plan["creates"]) == 3
    assert servers_and_volumes(sim) == before
    assert ok_json(cli, "restore", "list") == []


def test_restore_wait_then_list_and_show(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web")
    backup = backup_of(cli, sim, "web")
    job = ok_json(cli, "--os-cloud", sim.spec, "restore", backup, "--as-new", "web2", "--wait")
    assert job["state"] == "succeeded"
    assert job["name"] == "web2"
    assert sim.cloud.get_server("web2").status == "ACTIVE"
    listed = ok_json(cli, "restore", "list")
    assert [j["id"] for j in listed] == [job["id"]]
    shown = ok_json(cli, "restore", "show", job["id"][:8])
    assert shown["server_id"] == job["server_id"]
    assert shown["steps"][0]["name"] == "start"
    table = cli("restore", "show", job["id"])
    assert table.code == 0 and "web2" in table.out


def test_cancel_of_a_pending_restore_cleans_up(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web")
    backup = backup_of(cli, sim, "web")
    before = servers_and_volumes(sim)
    job = ok_json(cli, "--os-cloud", sim.spec, "restore", backup)
    assert job["state"] == "pending"
    cancelled = ok_json(cli, "--os-cloud", sim.spec, "restore", "cancel", job["id"], "--wait")
    assert cancelled["state"] == "cancelled"
    assert servers_and_volumes(sim) == before
    again = cli("restore", "cancel", job["id"])
    assert again.code == 1
    assert_one_line_error(again.err, "already cancelled")


def test_a_backup_being_deleted_is_refused_with_exit_2(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web")
    backup_of(cli, sim, "web")
    backup = backup_of(cli, sim, "web")
    store_result = cli("--os-cloud", sim.spec, "backup", "delete", backup)
    assert store_result.code == 0, store_result.err
    before = servers_and_volumes(sim)
    result = cli("--os-cloud", sim.spec, "restore", backup)
    assert result.code == 2
    assert_one_line_error(result.err, "cannot be restored")
    assert servers_and_volumes(sim) == before
    assert ok_json(cli, "restore", "list") == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["restore", "0000000000"], "no backup"),
        (["restore", "list", "--state", "bogus"], "bogus"),
        (["restore", "show", "nope"], "no restore"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli: CliRunner, sim: Sim, args: list[str], words: str
) -> None:
    result = cli("--os-cloud", sim.spec, *args)
    assert result.code == 2, result.err
    assert_one_line_error(result.err, words)


def test_unknown_flavor_and_in_place_of_a_volume_backed_server(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("db", volume_backed=True)
    backup = backup_of(cli, sim, "db")
    before = servers_and_volumes(sim)
    flavor = cli("--os-cloud", sim.spec, "restore", backup, "--flavor", "m9.huge", "--wait")
    assert flavor.code == 2
    assert_one_line_error(flavor.err, "m9.huge")
    in_place = cli("--os-cloud", sim.spec, "restore", backup, "--in-place")
    assert in_place.code == 2
    assert_one_line_error(in_place.err, "--as-new")
    assert servers_and_volumes(sim) == before


def test_in_place_rebuilds_an_image_backed_server(cli: CliRunner, sim: Sim) -> None:
    server = sim.cloud.create_server("web")
    backup = backup_of(cli, sim, "web")
    before = servers_and_volumes(sim)
    job = ok_json(cli, "--os-cloud", sim.spec, "restore", backup, "--in-place", "--wait")
    assert (job["state"], job["mode"], job["server_id"]) == ("succeeded", "in-place", server.id)
    assert job["created"] == []
    assert servers_and_volumes(sim) == before


def test_a_name_nova_refuses_is_one_line_and_creates_nothing(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web")
    backup = backup_of(cli, sim, "web")
    before = servers_and_volumes(sim)
    result = cli("--os-cloud", sim.spec, "restore", backup, "--as-new", "x" * 256, "--wait")
    assert result.code == 2
    assert_one_line_error(result.err, "name")
    assert servers_and_volumes(sim) == before
    assert ok_json(cli, "restore", "list") == []


def test_a_volume_backup_restores_as_a_new_volume_from_the_cli(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    volume = sim.cloud.create_volume_standalone("data1", size_gb=2)
    policy = ok_json(
        cli, "policy", "create", "vols", "--kind", "volume-snapshot", "--volume", "data1",
        "--cron", "0 1 * * *", "--keep-last", "3",
    )  # fmt: skip
    # A backup as the policy's run leaves it: its Cinder snapshot, recorded.
    sim.cloud.configure(replace(sim.cloud.config(), volume_snapshot_seconds=0))
    snapshot = sim.cloud.snapshot_volume(volume.id, "snap", {})
    store = SqlStore(create_db_engine(f"sqlite:///{tmp_path / 'state' / 'stackback.db'}"))
    try:
        now = datetime.now(UTC)
        backup = store.ensure_backup(
            Backup(
                id=str(uuid.uuid4()),
                target=volume.id,
                target_name="data1",
                kind=BackupKind.VOLUME_SNAPSHOT,
                status=BackupStatus.AVAILABLE,
                created_at=now,
                policy_id=policy["id"],
                policy_name="vols",
            )
        )
        store.add_artifact(
            backup.id, snapshot.kind, snapshot.id, status=ArtifactStatus.AVAILABLE, now=now
        )
    finally:
        store.dispose()
    before = servers_and_volumes(sim)
    dry = ok_json(cli, "--os-cloud", sim.spec, "restore", backup.id, "--as-new", "x", "--dry-run")
    assert dry["dry_run"] is True and servers_and_volumes(sim) == before
    job = ok_json(
        cli, "--os-cloud", sim.spec, "restore", backup.id, "--as-new", "data1-copy", "--wait"
    )  # fmt: skip
    assert job["state"] == "succeeded", job
    assert servers_and_volumes(sim) == (before[0], before[1] + 1)
    assert sim.cloud.get_volume("data1-copy").status == "available"
    table = cli("--os-cloud", sim.spec, "restore", "show", job["id"])
    assert table.code == 0, table.err
    refused = cli("--os-cloud", sim.spec, "restore", backup.id, "--in-place")
    assert refused.code == 2
    assert_one_line_error(refused.err, "as a new volume only")
