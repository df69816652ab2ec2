"""``stackback policy export | apply``: policies kept as files."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli.conftest import CliRunner, assert_one_line_error, ok_json


def create_two(cli: CliRunner) -> None:
    for args in (
        (
            "nightly",
            "--selector",
            "backup=nightly",
            "--cron",
            "0 1 * * *",
            "--timezone",
            "Europe/Amsterdam",
            "--window",
            "60",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
        ),
        ("web", "--server", "web-1", "--cron", "0 */6 * * *", "--keep-last", "4", "--label", "six"),
    ):
        assert cli("policy", "create", *args).code == 0


def export(cli: CliRunner, tmp_path: Path) -> Path:
    result = cli("policy", "export")
    assert result.code == 0, result.err
    path = tmp_path / "policies.yaml"
    path.write_text(result.out)
    return path


def test_export_then_apply_to_an_empty_database_recreates_the_same_policies(
    cli: CliRunner, tmp_path: Path
) -> None:
    create_two(cli)
    before = ok_json(cli, "policy", "list")
    path = export(cli, tmp_path)
    for db in (tmp_path / "state").glob("stackback.db*"):
        db.unlink()
    applied = ok_json(cli, "policy", "apply", str(path))
    assert [(c["action"], c["name"]) for c in applied] == [("create", "nightly"), ("create", "web")]
    after = ok_json(cli, "policy", "list")
    keys = (
        "id",
        "name",
        "targets",
        "selector",
        "schedules",
        "timezone",
        "window_minutes",
        "retention",
        "enabled",
        "label",
    )
    assert [{k: p[k] for k in keys} for p in after] == [{k: p[k] for k in keys} for p in before]
    again = ok_json(cli, "policy", "apply", str(path))
    assert {c["action"] for c in again} == {"unchanged"}


def test_dry_run_shows_the_diff_and_changes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    create_two(cli)
    path = export(cli, tmp_path)
    document = yaml.safe_load(path.read_text())
    document["policies"][0]["retention"] = {"daily": 14}
    document["policies"][1]["label"] = None
    path.write_text(yaml.safe_dump(document))
    plan = ok_json(cli, "policy", "apply", str(path), "--dry-run")
    assert plan[0]["changes"] == {
        "retention": {"from": {"daily": 7, "weekly": 4}, "to": {"daily": 14}}
    }
    assert plan[1]["changes"] == {"label": {"from": "six", "to": None}}
    assert ok_json(cli, "policy", "show", "nightly")["retention"] == {"daily": 7, "weekly": 4}
    ok_json(cli, "policy", "apply", str(path))
    assert ok_json(cli, "policy", "show", "nightly")["retention"] == {"daily": 14}
    assert ok_json(cli, "policy", "show", "web")["label"] is None


def test_prune_deletes_only_with_the_flag(cli: CliRunner, tmp_path: Path) -> None:
    create_two(cli)
    path = tmp_path / "one.yaml"
    path.write_text(
        "policies:\n- name: web\n  targets: [web-1]\n  schedules: ['0 */6 * * *']\n"
        "  retention: {last: 4}\n  label: six\n"
    )
    assert [c["action"] for c in ok_json(cli, "policy", "apply", str(path))] == ["unchanged"]
    assert len(ok_json(cli, "policy", "list")) == 2
    pruned = ok_json(cli, "policy", "apply", str(path), "--prune")
    assert [(c["action"], c["name"]) for c in pruned] == [
        ("unchanged", "web"),
        ("delete", "nightly"),
    ]
    assert [p["name"] for p in ok_json(cli, "policy", "list")] == ["web"]


def test_a_bad_file_is_one_line_and_changes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    create_two(cli)
    path = tmp_path / "bad.yaml"
    cases = {
        "policies: [\n": "not valid YAML",
        "policies:\n- name: x\n": "schedules missing",
        "policies:\n- name: x\n  schedules: ['0 1 * * *']\n  colour: red\n": "colour",
        "policies:\n- name: x\n  schedules: ['61 1 * * *']\n"
        "- name: web\n  schedules: ['0 2 * * *']\n": "cron",
        "version: 7\npolicies: []\n": "version",
        "policies:\n- {name: x, schedules: ['0 1 * * *'], id: nope}\n": "UUID",
    }
    for text, word in cases.items():
        path.write_text(text)
        result = cli("policy", "apply", str(path), "--prune")
        assert result.code == 2, (text, result.err)
        assert_one_line_error(result.err, word)
    assert [p["name"] for p in ok_json(cli, "policy", "list")] == ["nightly", "web"]
    missing = cli("policy", "apply", str(tmp_path / "nope.yaml"))
    assert missing.code == 2
    assert_one_line_error(missing.err, "cannot read")
