"""A credential follows what still needs it: a deleted policy's trust is retired while its
backups remain (they are still rotated, deleted and restored through it), revoked with the
last of them; ``stackback credential list | revoke`` shows and ends them.

On the simulator, in-process: ``credential:<id>`` opens the simulated cloud once the real
``CredentialClouds`` check has let it through; Keystone's trust calls are the recording
fakes of ``test_keystone_unit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from stackback.clock import VirtualClock
from stackback.cloud.openstack.identity import CredentialClouds
from stackback.cloud.simulator import SimulatedCloud
from stackback.engine.loop import Engine
from stackback.errors import CloudUnavailable, Conflict
from stackback.policy import BackupStatus, RunState
from stackback.ports import Cloud
from stackback.records import BackupFilter, CredentialKind, CredentialState, credential_id_of
from stackback.retention import RetentionPolicy
from stackback.sealing import SecretBox
from stackback.services.authz import PolicyAuthorizer
from stackback.services.backups import BackupService
from stackback.services.container import Services
from stackback.services.keystone import CredentialSweep, PolicyCredentials
from stackback.services.policies import PolicyService, PolicySpec
from stackback.services.servers import ServerDirectory
from stackback.store.sql import SqlStore
from stackback.web.gateway import Backends, Gateway
from tests.cli.conftest import CliRunner, cli, ok_json  # noqa: F401 - the cli fixture
from tests.keystone.test_keystone_cli import CLOUDS_YAML
from tests.keystone.test_keystone_unit import FakeKeystone, principal


@dataclass
class Tenant:
    """A store, the simulator, and the services of keystone mode over them."""

    store: SqlStore
    sim: SimulatedCloud
    clock: VirtualClock
    credentials: PolicyCredentials
    engine: Engine
    policies: PolicyService
    backups: BackupService

    def cloud(self, name: str | None) -> Cloud:
        credential_id = credential_id_of(name)
        if credential_id is not None:  # refused as for a real cloud: given up, or unknown
            CredentialClouds(FakeKeystone(), self.store, self.credentials.box).connection_factory(  # type: ignore[arg-type]
                credential_id
            )
        return self.sim

    def policy_with_backups(self, name: str, count: int) -> str:
        """A policy acting through a new trust, with ``count`` good backups of web-1."""
        ref = self.credentials.for_new_policy(principal())
        self.policies.create(
            PolicySpec(
                name=name,
                targets=("web-1",),
                schedules=("0 1 1 1 *",),  # never during a test: only run_now's runs
                retention=RetentionPolicy(last=10),
                cloud=ref,
            )
        )
        for _ in range(count):
            runs = self.policies.run_now(name)
            self.engine.drain(self.clock.now() + timedelta(minutes=30))
            assert [self.store.get_run(r.id).state for r in runs] == [RunState.SUCCEEDED]
        return ref

    def good_backups(self, ref: str) -> list[str]:
        backups = self.store.list_backups(BackupFilter(statuses=(BackupStatus.AVAILABLE,)))
        return [b.id for b in backups if b.cloud == ref]

    def state(self, ref: str) -> CredentialState:
        return self.store.get_credential(str(credential_id_of(ref))).state


def tenant_over(
    store: SqlStore, clock: VirtualClock, sim: SimulatedCloud, box: SecretBox
) -> Tenant:
    credentials = PolicyCredentials(FakeKeystone(), store, box, clock)  # type: ignore[arg-type]
    holder: list[Tenant] = []

    def clouds(name: str | None) -> Cloud:
        return holder[0].cloud(name)

    release = credentials.release
    tenant = Tenant(
        store,
        sim,
        clock,
        credentials,
        Engine(store, clouds, clock, worker_name="w-test", release_credential=release),
        PolicyService(store, clock, ServerDirectory(clouds), release_credential=release),
        BackupService(store, clouds, clock, release_credential=release),
    )
    holder.append(tenant)
    sim.create_server("web-1")
    return tenant


@pytest.fixture
def tenant(store: SqlStore, clock: VirtualClock, tmp_path: Path) -> Iterator[Tenant]:
    sim = SimulatedCloud(tmp_path / "sim.sqlite", clock, project="demo", seed=7)
    yield tenant_over(store, clock, sim, SecretBox([Fernet.generate_key()]))
    sim.close()


def test_a_deleted_policys_trust_is_retired_while_its_backups_remain_then_revoked(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.policy_with_backups("nightly", 2)
    first, second = tenant.good_backups(ref)
    tenant.policies.delete(["nightly"])
    assert no_keystone["delete"] == []  # kept for its two backups
    assert tenant.state(ref) is CredentialState.RETIRED
    assert tenant.store.get_credential(str(credential_id_of(ref))).retired_at == tenant.clock.now()

    deleted = tenant.backups.delete(first)  # through the retired trust
    assert deleted.status is BackupStatus.DELETED
    assert no_keystone["delete"] == [] and tenant.state(ref) is CredentialState.RETIRED

    tenant.backups.delete(second, force=True)  # the target's last good backup: forced
    assert no_keystone["delete"] == ["trust-9"]
    ended = tenant.store.get_credential(str(credential_id_of(ref)))
    assert ended.state is CredentialState.REVOKED and "deleted in Keystone" in str(ended.detail)


def test_the_engines_collector_revokes_it_with_the_last_backup(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.policy_with_backups("nightly", 1)
    tenant.policies.delete(["nightly"])
    (backup,) = tenant.good_backups(ref)
    tenant.sim.fail_next("delete_artifact", CloudUnavailable)  # the collector finishes it
    assert tenant.backups.delete(backup, force=True).status is BackupStatus.DELETING
    assert tenant.state(ref) is CredentialState.RETIRED and no_keystone["delete"] == []
    tenant.engine.drain(tenant.clock.now() + timedelta(minutes=10))
    assert tenant.store.get_backup(backup).status is BackupStatus.DELETED
    assert no_keystone["delete"] == ["trust-9"] and tenant.state(ref) is CredentialState.REVOKED


def test_a_policy_without_backups_gives_its_trust_up_at_once(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.policy_with_backups("nightly", 0)
    tenant.policies.delete(["nightly"])
    assert no_keystone["delete"] == ["trust-9"] and tenant.state(ref) is CredentialState.REVOKED


def test_a_policy_moved_to_another_cloud_gives_its_credential_up_the_same_way(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    kept = tenant.policy_with_backups("kept", 1)
    bare = tenant.policy_with_backups("bare", 0)
    for name in ("kept", "bare"):
        tenant.policies.update(name, PolicySpec(cloud="operators-cloud"), offline=True)
    assert (tenant.state(kept), tenant.state(bare)) == (
        CredentialState.RETIRED,
        CredentialState.REVOKED,
    )
    assert len(no_keystone["delete"]) == 1


def test_a_retired_credential_takes_no_new_policy_or_run(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.policy_with_backups("nightly", 1)
    tenant.policies.delete(["nightly"])
    spec = PolicySpec(
        name="again", targets=("web-1",), schedules=("0 1 * * *",), keep_all=True, cloud=ref
    )
    with pytest.raises(Conflict, match="retired: no new policy or run"):
        tenant.policies.create(spec)
    with pytest.raises(Conflict, match="retired"):
        tenant.store.create_manual_run(
            target="web-1", now=tenant.clock.now(), label=None, retention=None, cloud=ref
        )
    assert tenant.store.list_policies() == []


def test_a_run_still_going_keeps_the_credential(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.credentials.for_new_policy(principal())
    tenant.store.create_manual_run(
        target="web-1", now=tenant.clock.now(), label=None, retention=None, cloud=ref
    )
    released = tenant.credentials.release(ref)
    assert released is not None and released.state is CredentialState.RETIRED
    usage = tenant.store.credential_usage(released.id)
    assert (usage.runs, usage.describe()) == (1, "1 run in progress")
    assert no_keystone["delete"] == []


def test_revoke_refuses_while_backups_need_it_unless_forced(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.policy_with_backups("nightly", 2)
    credential_id = str(credential_id_of(ref))
    with pytest.raises(Conflict, match="policy nightly"):
        tenant.credentials.revoke(credential_id, force=True)  # a policy: never, even forced
    tenant.policies.delete(["nightly"])
    with pytest.raises(Conflict, match="2 backups"):
        tenant.credentials.revoke(credential_id)
    assert no_keystone["delete"] == [] and tenant.state(ref) is CredentialState.RETIRED
    revoked, unmanageable = tenant.credentials.revoke(credential_id, force=True)
    assert revoked.state is CredentialState.REVOKED and unmanageable == "2 backups"
    assert no_keystone["delete"] == ["trust-9"]


def test_the_store_never_begins_revoking_what_is_needed(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.policy_with_backups("nightly", 1)
    credential_id = str(credential_id_of(ref))
    now = tenant.clock.now()
    for force in (False, True):  # a policy names it: never
        assert tenant.store.begin_revocation(credential_id, now=now, force=force)[2] is False
    tenant.store.delete_policy("nightly", now=now)  # retired by nobody: still active
    credential, usage, begun = tenant.store.begin_revocation(credential_id, now=now)
    assert (begun, usage.backups, credential.state) == (False, 1, CredentialState.ACTIVE)
    credential, _usage, begun = tenant.store.begin_revocation(credential_id, now=now, force=True)
    assert begun and credential.state is CredentialState.REVOKED
    assert no_keystone["delete"] == []  # the store only records: Keystone is the service's


def test_the_sweep_revokes_retired_credentials_nothing_needs(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    needed = tenant.policy_with_backups("kept", 1)
    missed = tenant.credentials.for_new_policy(principal())
    now = tenant.clock.now()
    tenant.store.delete_policy("kept", now=now)  # deleted without its release (a crash, say)
    for ref in (needed, missed):
        tenant.store.retire_credential(str(credential_id_of(ref)), now=now, detail="retired")
    assert tenant.state(missed) is CredentialState.RETIRED
    CredentialSweep(tenant.credentials).run(now)
    assert tenant.state(missed) is CredentialState.REVOKED
    assert tenant.state(needed) is CredentialState.RETIRED and len(no_keystone["delete"]) == 1


def test_a_revocation_a_stopped_process_left_half_done_is_taken_up_again(
    tenant: Tenant, no_keystone: dict[str, list[Any]]
) -> None:
    ref = tenant.credentials.for_new_policy(principal())
    credential_id = str(credential_id_of(ref))
    # recorded revoked, then the process stopped before Keystone was told
    _, _, begun = tenant.store.begin_revocation(credential_id, now=tenant.clock.now())
    assert begun and tenant.store.get_credential(credential_id).interrupted
    assert no_keystone["delete"] == []
    CredentialSweep(tenant.credentials).run(tenant.clock.now())
    done = tenant.store.get_credential(credential_id)
    assert done.state is CredentialState.REVOKED and not done.interrupted, done
    assert len(no_keystone["delete"]) == 1  # the trust deleted in Keystone this time
    again, left = tenant.credentials.revoke(credential_id)  # nothing more to do
    assert again.detail == done.detail and left == "nothing"
    assert len(no_keystone["delete"]) == 1


def test_every_face_deletes_backups_with_the_release_hook(tenant: Tenant) -> None:
    def release(cloud: str | None) -> None:
        return None

    services = Services(tenant.store, tenant.cloud, tenant.clock, release_credential=release)
    assert services.backups.release_credential is release
    backends = Backends(tenant.store, tenant.cloud, tenant.clock, release_credential=release)
    gateway = Gateway(backends, PolicyAuthorizer(), principal())
    assert gateway._backups.release_credential is release
    assert services.runs.release_credential is release  # rotations of --wait runs


def test_the_openstack_plugin_releases_credentials_in_keystone_mode(
    cli_tenant: Tenant, _isolated_state_dir: Path
) -> None:
    from stackback.config import load_settings
    from stackback.osc.client import StackbackClient

    client = StackbackClient(load_settings)
    assert client.settings.keystone is not None
    assert client.services.backups.release_credential is not None
    assert client.services.policies.release_credential is not None


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_tenant(
    cli: CliRunner,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    _isolated_state_dir: Path,
    clock: VirtualClock,
) -> Iterator[Tenant]:
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(CLOUDS_YAML)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    monkeypatch.setenv("STACKBACK_KEYSTONE_CLOUD", "stackback-service")
    assert cli("db", "upgrade").code == 0
    store = SqlStore.from_url(f"sqlite:///{_isolated_state_dir / 'stackback.db'}")
    sim = SimulatedCloud(tmp_path / "sim.sqlite", clock, project="demo", seed=7)
    box = SecretBox.from_file(_isolated_state_dir / "secret.key")
    yield tenant_over(store, clock, sim, box)
    sim.close()
    store.dispose()


def test_credential_list_and_revoke_from_the_cli(
    cli: CliRunner,  # noqa: F811
    cli_tenant: Tenant,
    no_keystone: dict[str, list[Any]],
) -> None:
    tenant = cli_tenant
    ref = tenant.policy_with_backups("nightly", 2)
    credential_id = str(credential_id_of(ref))
    app_ref = tenant.credentials.for_new_policy(
        principal(),
        application_credential_id="app-1",
        application_credential_secret="the-app-secret",
    )
    tenant.policies.delete(["nightly"])

    listed = cli("credential", "list", "-f", "json")
    assert listed.code == 0, listed.err
    rows = {row["id"]: row for row in listed.json()}
    assert (rows[credential_id]["kind"], rows[credential_id]["status"]) == ("trust", "retired")
    assert (rows[credential_id]["backups"], rows[credential_id]["policies"]) == (2, [])
    app_row = rows[str(credential_id_of(app_ref))]
    assert app_row["kind"] == CredentialKind.APPLICATION_CREDENTIAL.value
    assert app_row["status"] == "active" and app_row["project"] == "p1"
    table = cli("credential", "list")
    sealed = tenant.store.get_credential(str(credential_id_of(app_ref))).sealed_secret
    for output in (listed.out, table.out):
        assert "the-app-secret" not in output and str(sealed) not in output
    assert "retired" in table.out

    refused = cli("credential", "revoke", credential_id)
    assert refused.code == 1 and refused.err.count("\n") == 1
    assert "2 backups" in refused.err and "--force" in refused.err
    assert no_keystone["delete"] == []

    forced = cli("credential", "revoke", credential_id, "--force", "-f", "json")
    assert forced.code == 0, forced.err
    assert (
        forced.json()["status"] == "revoked" and forced.json()["left_unmanageable"] == "2 backups"
    )
    assert "2 backups can no longer be rotated, deleted or restored" in forced.err
    assert no_keystone["delete"] == ["trust-9"]

    unknown = cli("credential", "revoke", "c0ffee00-0000-4000-8000-00000000ffff")
    assert unknown.code == 2 and unknown.err.count("\n") == 1


def test_revoke_needs_keystone_mode(cli: CliRunner) -> None:  # noqa: F811
    assert cli("db", "upgrade").code == 0
    assert ok_json(cli, "credential", "list") == []
    result = cli("credential", "revoke", "c0ffee00-0000-4000-8000-00000000ffff")
    assert result.code == 2 and "STACKBACK_KEYSTONE_CLOUD" in result.err
