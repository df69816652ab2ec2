"""``backup now --self`` (its id from a metadata service on 127.0.0.1 or a config drive) and
``--min-interval``, against the simulator; the shipped apt hook around it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from stackback.clock import VirtualClock
from stackback.services.backups import BackupService
from stackback.store.sql import SqlStore
from tests.cli.conftest import STACKBACK, CliRunner, Sim, assert_one_line_error, ok_json
from tests.support.metadata_service import PATH, MetadataService, metadata_service

__all__ = ["metadata_service"]  # the fixture

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "contrib" / "apt" / "stackback-pre-upgrade"
APT_SNIPPET = ROOT / "contrib" / "apt" / "99stackback"


def now_self(cli: CliRunner, sim: Sim, *extra: str) -> dict[str, object]:
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "--self", "--wait", *extra)
    return dict(run)


def test_self_is_the_server_the_metadata_service_names(
    cli: CliRunner, sim: Sim, metadata_service: MetadataService
) -> None:
    sim.cloud.create_server("other")
    web = sim.cloud.create_server("web1")
    metadata_service.document = {"uuid": web.id, "name": "web1"}

    run = now_self(cli, sim, "--metadata-url", metadata_service.url, "--type", "pre-upgrade")

    assert (run["state"], run["target"], run["label"]) == ("succeeded", web.id, "pre-upgrade")
    assert metadata_service.requests == [PATH]
    (backup,) = ok_json(cli, "backup", "list")
    assert backup["target"] == web.id


def test_the_metadata_url_may_come_from_the_environment(
    cli: CliRunner, sim: Sim, metadata_service: MetadataService, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = sim.cloud.create_server("web1")
    metadata_service.document = {"uuid": web.id}
    monkeypatch.setenv("STACKBACK_METADATA_URL", metadata_service.url)

    assert now_self(cli, sim)["target"] == web.id
    assert metadata_service.requests == [PATH]


def test_the_environment_does_not_get_in_the_way_of_backing_up_another_server(
    cli: CliRunner, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.cloud.create_server("web1")
    monkeypatch.setenv("STACKBACK_METADATA_URL", "http://127.0.0.1:9" + PATH)
    monkeypatch.setenv("STACKBACK_CONFIG_DRIVE", "/nowhere")
    run = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", "web1", "--wait")
    assert run["state"] == "succeeded"


def test_self_from_a_config_drive(cli: CliRunner, sim: Sim, tmp_path: Path) -> None:
    web = sim.cloud.create_server("web1")
    drive = tmp_path / "config-2"
    (drive / "openstack" / "latest").mkdir(parents=True)
    (drive / "openstack" / "latest" / "meta_data.json").write_text(json.dumps({"uuid": web.id}))

    assert now_self(cli, sim, "--config-drive", str(drive))["target"] == web.id


def test_min_interval_skips_while_a_good_backup_of_that_type_is_recent(
    cli: CliRunner, sim: Sim, metadata_service: MetadataService
) -> None:
    web = sim.cloud.create_server("web1")
    metadata_service.document = {"uuid": web.id}
    args = ("--metadata-url", metadata_service.url, "--type", "pre-upgrade", "--keep-last", "2")
    first = now_self(cli, sim, *args, "--min-interval", "1h")
    assert first["state"] == "succeeded"

    for _ in range(2):  # apt run twice more within the hour
        skipped = now_self(cli, sim, *args, "--min-interval", "1h")
        assert skipped["skipped"] is True
        assert skipped["backup"]["id"] == first["backup_id"]  # type: ignore[index]
        assert "1h" in str(skipped["reason"])
    table = cli("--os-cloud", sim.spec, "backup", "now", "--self", *args, "--min-interval", "1h")
    assert table.code == 0
    assert table.out.startswith("skipped: ") and str(first["backup_id"]) in table.out

    other_type = now_self(cli, sim, "--metadata-url", metadata_service.url, "--min-interval", "1h")
    assert other_type["state"] == "succeeded"  # a manual backup is not a pre-upgrade one
    assert len(ok_json(cli, "run", "list")) == 2
    assert len([i for i in sim.cloud.images() if i.properties.get("instance_uuid") == web.id]) == 2


def test_min_interval_counts_only_good_backups_newer_than_the_interval(
    cli: CliRunner, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = sim.cloud.create_server("web1")
    db = sim.cloud.create_server("db1")
    taken = ok_json(cli, "--os-cloud", sim.spec, "backup", "now", web.id, "--wait")
    store = SqlStore.from_url(f"sqlite:///{os.environ['STACKBACK_STATE_DIR']}/stackback.db")
    try:
        backup = store.get_backup(str(taken["backup_id"]))
        at = VirtualClock(backup.created_at + timedelta(minutes=59))
        service = BackupService(store, lambda _: sim.cloud, at)
        hour = timedelta(hours=1)
        assert service.recent_good_backup(web.id, label=None, within=hour) == backup
        assert service.recent_good_backup("web1", label=None, within=hour) == backup
        assert service.recent_good_backup(web.id, label="pre-upgrade", within=hour) is None
        assert service.recent_good_backup(db.id, label=None, within=hour) is None
        at.advance(120)
        assert service.recent_good_backup(web.id, label=None, within=hour) is None
        store.update_backup(backup.id, status=backup.status.FAILED, error="broken")
        at = VirtualClock(backup.created_at)
        service = BackupService(store, lambda _: sim.cloud, at)
        assert service.recent_good_backup(web.id, label=None, within=hour) is None
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("web1", "--self"), "not both"),
        ((), "missing server"),
        (("web1", "--metadata-url", "http://127.0.0.1:9/x"), "only with --self"),
        (("web1", "--min-interval", "30m"), "'min' for minutes"),
        (("web1", "--min-interval", "0"), "more than 0"),
        (("web1", "--min-interval", "1 h"), "not a duration"),
        (("--self", "--metadata-url", "ftp://127.0.0.1/x"), "not an http(s) url"),
        (("--self", "--config-drive", ""), "--config-drive"),
    ],
)
def test_bad_self_options_are_one_line_and_exit_2(
    cli: CliRunner, sim: Sim, args: tuple[str, ...], words: str
) -> None:
    sim.cloud.create_server("web1")
    result = cli("--os-cloud", sim.spec, "backup", "now", *args)
    assert result.code == 2, result.err
    assert_one_line_error(result.err, words)
    assert ok_json(cli, "run", "list") == []


def test_no_metadata_service_and_no_config_drive_fails_in_one_line(
    cli: CliRunner, sim: Sim, metadata_service: MetadataService, tmp_path: Path
) -> None:
    metadata_service.status = 404
    for args in (
        ("--metadata-url", metadata_service.url),
        ("--metadata-url", "http://127.0.0.1:9" + PATH),
        ("--config-drive", str(tmp_path)),
    ):
        result = cli("--os-cloud", sim.spec, "backup", "now", "--self", *args, "--wait")
        assert result.code == 1, result.err
        assert_one_line_error(result.err, "error id")
    metadata_service.status, metadata_service.document = 200, {"uuid": "not-a-server-here"}
    result = cli("--os-cloud", sim.spec, "backup", "now", "--self", "--metadata-url",
                 metadata_service.url)  # fmt: skip
    assert result.code == 2
    assert_one_line_error(result.err, "not-a-server-here")
    assert ok_json(cli, "run", "list") == []


# -- the apt hook ---------------------------------------------------------------------------


def fake_stackback(tmp_path: Path, code: int) -> Path:
    """A ``stackback`` that records its arguments and exits with ``code``."""
    script = tmp_path / f"stackback-{code}"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls"\nexit {code}\n')
    script.chmod(0o755)
    return script


def hook(
    tmp_path: Path, stackback: Path | str, config: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    settings = tmp_path / "stackback-pre-upgrade.conf"
    settings.write_text(config)
    return subprocess.run(
        ["sh", str(HOOK)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("STACKBACK_HOOK")},
            "STACKBACK": str(stackback),
            "STACKBACK_HOOK_CONFIG": str(settings),
            **env,
        },
    )


def test_the_hook_stops_apt_when_the_backup_fails_unless_told_to_continue(
    tmp_path: Path,
) -> None:
    ok, failing = fake_stackback(tmp_path, 0), fake_stackback(tmp_path, 1)

    assert hook(tmp_path, ok).returncode == 0
    calls = (tmp_path / "calls").read_text().split()
    assert calls[:3] == ["backup", "now", "--self"]
    assert {"--wait", "--min-interval", "1h", "pre-upgrade"} <= set(calls)

    stopped = hook(tmp_path, failing)
    assert stopped.returncode == 1
    assert "apt stops" in stopped.stderr
    went_on = hook(tmp_path, failing, STACKBACK_HOOK_ON_FAILURE="continue")
    assert went_on.returncode == 0
    assert "going on without it" in went_on.stderr
    from_file = hook(tmp_path, failing, "STACKBACK_HOOK_ON_FAILURE=continue\n")
    assert from_file.returncode == 0
    overridden = hook(
        tmp_path, failing, "STACKBACK_HOOK_ON_FAILURE=continue\n", STACKBACK_HOOK_ON_FAILURE="stop"
    )
    assert overridden.returncode == 1
    typo = hook(tmp_path, ok, "STACKBACK_HOOK_ON_FAILURE=contine\n")
    assert typo.returncode == 2
    assert "stop or continue" in typo.stderr


@pytest.mark.skipif(shutil.which("apt-config") is None, reason="apt-config is not installed")
def test_the_apt_snippet_runs_the_hook_before_dpkg() -> None:
    done = subprocess.run(
        ["apt-config", "-c", str(APT_SNIPPET), "dump", "DPkg::Pre-Invoke"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"/usr/local/sbin/stackback-pre-upgrade"' in done.stdout


@pytest.mark.slow
def test_the_hook_with_stackback_takes_one_backup_for_three_apt_runs(
    sim: Sim, metadata_service: MetadataService, tmp_path: Path
) -> None:
    web = sim.cloud.create_server("web1")
    metadata_service.document = {"uuid": web.id}
    env = {"OS_CLOUD": sim.spec, "STACKBACK_METADATA_URL": metadata_service.url}
    subprocess.run([str(STACKBACK), "db", "upgrade"], check=True, capture_output=True)

    runs = [hook(tmp_path, STACKBACK, **env) for _ in range(3)]

    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert "skipped" in runs[1].stdout and "skipped" in runs[2].stdout
    images = [i for i in sim.cloud.images() if i.properties.get("instance_uuid") == web.id]
    assert len(images) == 1
