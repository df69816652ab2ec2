"""``stackback backup ...`` and ``reconcile`` against the simulated cloud."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stackback.policy import ArtifactKind
from stackback.ports import ArtifactRef
from tests.cli.conftest import CliRunner, Sim, assert_one_line_error, ok_json

RUN_KEYS = {
    "id",
    "policy",
    "policy_id",
    "target",
    "target_name",
    "trigger",
    "label",
    "state",
    "scheduled_for",
    "due_at",
    "started_at",
    "finished_at",
    "attempt",
    "backup_id",
    "error",
    "error_id",
    "next_try_at",
    "project",
}
BACKUP_KEYS = {
    "id",
    "target",
    "target_name",
    "policy",
    "policy_id",
    "label",
    "kind",
    "status",
    "protected",
    "created_at",
    "completed_at",
    "deleted_at",
    "reasons",
    "run_id",
    "error",
    "artifacts",
    "deletion_run_id",
    "deletion_guarded",
    "consistency",
    "consistency_detail",
    "verification",
    "orphaned",
    "source_last_seen_at",
    "source_gone_at",
    "parent_id",
    "project",
}


def backup_now(cli: CliRunner, sim: Sim, server: str, *extra: str) -> dict[str, object]:
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", server, "--wait", *extra)
    assert run["state"] == "succeeded", run
    return run


def live_images(sim: Sim) -> set[str]:
    return {i.id for i in sim.cloud.images()}


def test_backup_now_wait_list_and_show(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    run = backup_now(cli, sim, "web1")
    assert set(run) == RUN_KEYS
    assert (run["trigger"], run["label"], run["target"]) == ("manual", "manual", "web1")

    (listed,) = ok_json(cli, "backup", "list")
    assert set(listed) == BACKUP_KEYS
    assert listed["id"] == run["backup_id"]
    assert listed["status"] == "available"
    assert listed["protected"] is False
    (artifact,) = listed["artifacts"]
    assert artifact["kind"] == "image"
    assert artifact["status"] == "available"
    assert artifact["id"] in live_images(sim)

    shown = ok_json(cli, "backup", "show", listed["id"])
    assert shown == listed
    table = cli("backup", "show", listed["id"])
    assert table.code == 0 and artifact["id"] in table.out


def test_volume_backed_server_backup_has_snapshots(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("db1", volume_backed=True, volumes=1)
    run = backup_now(cli, sim, "db1")
    shown = ok_json(cli, "backup", "show", str(run["backup_id"]))
    kinds = sorted(a["kind"] for a in shown["artifacts"])
    assert kinds == ["image", "volume-snapshot", "volume-snapshot"]
    assert all(a["status"] == "available" for a in shown["artifacts"])


def test_failed_backup_now_wait_exits_non_zero(cli: CliRunner, sim: Sim) -> None:
    # Regression: a failed run was printed and the command exited 0, so
    # `stackback backup now X --wait && upgrade` went ahead without a backup.
    args = ("--os-cloud", sim.spec, "backup", "now", "ghost", "--wait")
    result = cli(*args, "--offline", "-f", "json")  # the run itself finds no server
    assert result.code == 1
    assert result.json()["state"] == "failed"
    assert "ghost" in result.err
    assert ok_json(cli, "backup", "list") == []


def test_protect_unprotect_and_delete_rules(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    first = backup_now(cli, sim, "web1")["backup_id"]
    second = backup_now(cli, sim, "web1")["backup_id"]
    assert isinstance(first, str) and isinstance(second, str)
    images_before = live_images(sim)
    assert len(images_before) == 2

    assert ok_json(cli, "backup", "protect", first)["protected"] is True
    refused = cli("--os-cloud", sim.spec, "backup", "delete", first)
    assert refused.code != 0
    assert_one_line_error(refused.err, "protected", "--force")
    assert ok_json(cli, "backup", "show", first)["status"] == "available"
    assert ok_json(cli, "backup", "unprotect", first)["protected"] is False

    deleted = ok_json(cli, "--os-cloud", sim.spec, "backup", "delete", first)
    assert deleted["status"] == "deleted"
    assert deleted["deleted_at"] is not None
    assert (deleted["deletion_run_id"], deleted["deletion_guarded"]) == (None, True)  # by hand
    gone = {a["id"] for a in ok_json(cli, "backup", "show", first, "-f", "json")["artifacts"]}
    assert live_images(sim) == images_before - gone

    # the last good backup of web1 is refused without --force
    last = cli("--os-cloud", sim.spec, "backup", "delete", second)
    assert last.code != 0
    assert_one_line_error(last.err, "last good backup", "--force")
    assert ok_json(cli, "backup", "show", second)["status"] == "available"
    assert len(live_images(sim)) == 1

    ok_json(cli, "backup", "protect", second)
    forced = ok_json(cli, "--os-cloud", sim.spec, "backup", "delete", second, "--force")
    assert forced["status"] == "deleted"
    assert forced["deletion_guarded"] is False  # --force may take the last good one
    assert live_images(sim) == set()

    assert ok_json(cli, "backup", "list") == []
    assert {b["id"] for b in ok_json(cli, "backup", "list", "--all")} == {first, second}


def test_backup_list_filters(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    sim.cloud.create_server("web2")
    one = backup_now(cli, sim, "web1")["backup_id"]
    two = backup_now(cli, sim, "web2")["backup_id"]
    assert [b["id"] for b in ok_json(cli, "backup", "list", "--server", "web1")] == [one]
    assert [b["id"] for b in ok_json(cli, "backup", "list", "--server", "web2")] == [two]
    assert [b["id"] for b in ok_json(cli, "backup", "list")] == [two, one]  # newest first
    ok_json(
        cli, "policy", "create", "p", "--server", "web1", "--cron", "0 1 * * *", "--keep-last", "7"
    )
    assert ok_json(cli, "backup", "list", "--policy", "p") == []
    unknown = cli("backup", "show", "nope")
    assert unknown.code == 2 and "nope" in unknown.err
    assert [b["id"] for b in ok_json(cli, "backup", "list", "--limit", "1")] == [two]


def test_an_empty_filter_or_a_pattern_for_an_id_matches_nothing(cli: CliRunner, sim: Sim) -> None:
    """Scripts pass variables: an empty one must not select every backup, or any run."""
    sim.cloud.create_server("web1")
    kept = [backup_now(cli, sim, "web1")["backup_id"] for _ in range(2)]
    for args in (
        ["backup", "list", "--server", ""],
        ["backup", "list", "--policy", " "],
        ["run", "list", "--target", ""],
        ["run", "list", "--policy", ""],
    ):
        result = cli(*args)
        assert result.code == 2, args
        assert_one_line_error(result.err, args[2], "empty")
    for args in (["backup", "delete", "%%%%%%"], ["run", "delete", ""], ["run", "show", "%"]):
        result = cli(*args)
        assert result.code == 2, args
        assert_one_line_error(result.err, "no ")
    assert sorted(b["id"] for b in ok_json(cli, "backup", "list")) == sorted(kept)
    assert len(ok_json(cli, "run", "list")) == 2


def test_backup_now_refuses_what_nova_or_the_database_cannot_hold(cli: CliRunner, sim: Sim) -> None:
    for args, words in (
        (["w" * 256], ["SERVER", "256", "255"]),
        (["web1", "--type", "t" * 65], ["--type", "64"]),
        ([" "], ["server"]),
    ):
        result = cli("--os-cloud", sim.spec, "backup", "now", *args)
        assert result.code == 2, args
        assert_one_line_error(result.err, *words)
    assert ok_json(cli, "run", "list") == []


def test_keep_last_rotates_only_its_label(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    manual = backup_now(cli, sim, "web1")["backup_id"]
    pre = [
        backup_now(cli, sim, "web1", "--type", "pre-upgrade", "--keep-last", "2")["backup_id"]
        for _ in range(3)
    ]
    live = {b["id"]: b for b in ok_json(cli, "backup", "list")}
    assert set(live) == {manual, pre[1], pre[2]}
    assert live[manual]["label"] == "manual"
    assert [live[i]["label"] for i in pre[1:]] == ["pre-upgrade", "pre-upgrade"]
    oldest = ok_json(cli, "backup", "show", str(pre[0]))
    assert oldest["status"] == "deleted"
    rotated_by = ok_json(cli, "backup", "show", str(pre[-1]))["run_id"]
    assert (oldest["deletion_run_id"], oldest["deletion_guarded"]) == (rotated_by, True)
    oldest_images = {a["id"] for a in oldest["artifacts"]}
    assert oldest_images.isdisjoint(live_images(sim))
    assert len(live_images(sim)) == 3


def test_reconcile_reports_then_reimports_after_losing_the_database(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    sim.cloud.create_server("web1")
    sim.cloud.create_server("db1", volume_backed=True)
    ids = {backup_now(cli, sim, s)["backup_id"] for s in ("web1", "db1")}
    report = ok_json(cli, "--os-cloud", sim.spec, "reconcile")
    assert set(report) == {
        "applied",
        "imported",
        "adopted_artifacts",
        "unrecorded",
        "missing",
        "marked_gone",
        "consistent",
        "skipped",
    }
    assert report["applied"] is False
    assert report["consistent"] == 2
    assert report["unrecorded"] == report["imported"] == report["missing"] == []
    before = {b["id"]: b for b in ok_json(cli, "backup", "list")}

    db = tmp_path / "state" / "stackback.db"
    for path in db.parent.glob("stackback.db*"):
        path.unlink()
    ok_json(cli, "db", "upgrade")
    assert ok_json(cli, "backup", "list") == []

    dry = ok_json(cli, "--os-cloud", sim.spec, "reconcile")
    assert (dry["applied"], set(dry["unrecorded"]), dry["imported"]) == (False, ids, [])
    assert ok_json(cli, "backup", "list") == []  # a report writes nothing

    applied = ok_json(cli, "--os-cloud", sim.spec, "reconcile", "--apply")
    assert applied["applied"] is True
    assert set(applied["imported"]) == ids
    after = {b["id"]: b for b in ok_json(cli, "backup", "list")}
    assert set(after) == ids
    for backup_id, backup in after.items():
        assert backup["status"] == "available"
        assert backup["target"] == before[backup_id]["target"]
        assert backup["target_name"] == before[backup_id]["target_name"]
        assert backup["label"] == "manual"
        assert {a["id"] for a in backup["artifacts"]} == {
            a["id"] for a in before[backup_id]["artifacts"]
        }
    again = ok_json(cli, "--os-cloud", sim.spec, "reconcile")
    assert (again["unrecorded"], again["consistent"]) == ([], 2)


def test_reconcile_never_imports_a_user_snapshot_with_inherited_markers(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    """Nova copies the base image's properties (stackback's markers) into a user's snapshot
    of a server booted from a stackback image: reconcile must not take it for stackback's."""
    sim.cloud.create_server("web1")
    kept, lost = (backup_now(cli, sim, "web1")["backup_id"] for _ in range(2))
    shown = {b: ok_json(cli, "backup", "show", str(b)) for b in (kept, lost)}
    images = {b: shown[b]["artifacts"][0]["id"] for b in (kept, lost)}
    mine = {}
    for backup_id, image_id in images.items():
        restored = sim.cloud.create_server(f"restored-from-{image_id}")  # booted from it
        [props] = [i.properties for i in sim.cloud.images() if i.id == image_id]
        inherited = {k: v for k, v in props.items() if k.startswith("stackback_")}
        mine[backup_id] = sim.cloud.start_server_image(restored.id, "mine", inherited).id
    sim.cloud.delete_artifact(ArtifactRef(ArtifactKind.IMAGE, images[lost]))

    db = tmp_path / "state" / "stackback.db"
    for path in db.parent.glob("stackback.db*"):
        path.unlink()
    ok_json(cli, "db", "upgrade")
    applied = ok_json(cli, "--os-cloud", sim.spec, "reconcile", "--apply")
    assert applied["imported"] == applied["unrecorded"] == [kept]
    assert {(s["id"], s["backup"]) for s in applied["skipped"]} == {
        (mine[kept], kept),
        (mine[lost], lost),
    }
    [backup] = ok_json(cli, "backup", "list")
    assert [a["id"] for a in backup["artifacts"]] == [images[kept]]


def test_reconcile_needs_a_cloud(cli: CliRunner) -> None:
    result = cli("reconcile")
    assert result.code == 2
    assert_one_line_error(result.err, "--os-cloud")


def test_protecting_a_backup_being_deleted_or_deleted_fails_with_one_line(
    cli: CliRunner, sim: Sim, tmp_path: Path
) -> None:
    from stackback.policy import BackupStatus
    from stackback.store.database import create_db_engine
    from stackback.store.sql import SqlStore

    sim.cloud.create_server("web1")
    gone, going = (backup_now(cli, sim, "web1")["backup_id"] for _ in range(2))
    assert isinstance(gone, str) and isinstance(going, str)
    assert ok_json(cli, "--os-cloud", sim.spec, "backup", "delete", gone)["status"] == "deleted"
    store = SqlStore(create_db_engine(f"sqlite:///{tmp_path / 'state' / 'stackback.db'}"))
    try:  # a rotation has forgotten it, the collector has not deleted it yet
        store.update_backup(going, status=BackupStatus.DELETING, reasons=("forget",))
    finally:
        store.dispose()

    for backup_id, words in ((gone, "was deleted"), (going, "is being deleted")):
        refused = cli("backup", "protect", backup_id)
        assert refused.code != 0
        assert_one_line_error(refused.err, backup_id, words, "cannot be protected")
        assert ok_json(cli, "backup", "show", backup_id)["protected"] is False
    assert ok_json(cli, "backup", "unprotect", going)["status"] == "deleting"


def test_an_empty_type_is_refused(cli: CliRunner, sim: Sim) -> None:
    sim.cloud.create_server("web1")
    result = cli("--os-cloud", sim.spec, "backup", "now", "web1", "--type", "")
    assert result.code == 2
    assert_one_line_error(result.err, "--type")
    assert ok_json(cli, "run", "list") == []


def test_backup_now_of_a_server_the_cloud_does_not_have_is_refused_at_once(
    cli: CliRunner, sim: Sim
) -> None:
    result = cli("--os-cloud", sim.spec, "backup", "now", "ghost")
    assert result.code == 2
    assert_one_line_error(result.err, "no server 'ghost'", "--offline")
    assert ok_json(cli, "run", "list") == []
    web = sim.cloud.create_server("web1")
    by_id = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", web.id)
    assert by_id["target"] == web.id


def test_backup_now_against_an_unreachable_cloud_fails_in_seconds(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  down:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n"
        "      username: u\n      password: p\n      project_name: p\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    started = time.monotonic()
    result = cli("--os-cloud", "down", "backup", "now", "web1", "--wait")
    assert time.monotonic() - started < 30
    assert result.code == 1
    assert_one_line_error(result.err, "cannot check server 'web1'", "cloud 'down'")
    assert ok_json(cli, "run", "list") == []
