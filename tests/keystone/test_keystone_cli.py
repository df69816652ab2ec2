"""The CLI in keystone mode: a policy acting through a stored credential is deleted, and
its credential given up (an application credential: nothing asks Keystone)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stackback.clock import SystemClock
from stackback.records import Credential, CredentialKind, CredentialState
from stackback.sealing import SecretBox
from stackback.store.sql import SqlStore
from tests.cli.conftest import CliRunner, cli, ok_json  # noqa: F401 - the cli fixture

CLOUDS_YAML = """clouds:
  stackback-service:
    auth:
      auth_url: http://127.0.0.1:1/v3
      username: stackback
      password: unused
      project_name: service
      user_domain_name: Default
      project_domain_name: Default
"""


def test_policy_delete_gives_up_the_policys_credential(
    cli: CliRunner,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    _isolated_state_dir: Path,
) -> None:
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(CLOUDS_YAML)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    monkeypatch.setenv("STACKBACK_KEYSTONE_CLOUD", "stackback-service")
    assert cli("db", "upgrade").code == 0
    store = SqlStore.from_url(f"sqlite:///{_isolated_state_dir / 'stackback.db'}")
    key_file = _isolated_state_dir / "secret.key"
    credential = store.add_credential(
        Credential(
            id="c0ffee00-0000-4000-8000-000000000001",
            kind=CredentialKind.APPLICATION_CREDENTIAL,
            project_id="p1",
            user_id="u1",
            keystone_id="app-1",
            created_at=SystemClock().now(),
            sealed_secret=SecretBox.from_file(key_file).seal("the-secret"),
        )
    )
    policy = ok_json(
        cli,
        "--os-cloud",
        credential.cloud_ref,
        "policy",
        "create",
        "tenant",
        "--server",
        "web-1",
        "--cron",
        "0 1 * * *",
        "--keep-last",
        "1",
        "--offline",
    )
    assert policy["cloud"] == credential.cloud_ref
    ok_json(cli, "policy", "delete", "tenant")
    ended = store.get_credential(credential.id)
    assert ended.state is CredentialState.REVOKED and ended.sealed_secret is None
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    store.dispose()
