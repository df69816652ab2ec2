"""Keystone mode without Keystone: the token cache, sealing, the stored credentials and the
``credential:<id>`` clouds (Keystone calls replaced by recording fakes)."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from stackback.clock import VirtualClock
from stackback.cloud import CloudProvider
from stackback.cloud.openstack import OpenStackCloud
from stackback.cloud.openstack.identity import CredentialClouds, KeystoneService, TokenInfo
from stackback.config import (
    keystone_authenticator,
    load_keystone_settings,
    load_settings,
    policy_credentials,
)
from stackback.errors import (
    CloudRejected,
    CloudUnreachable,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from stackback.records import (
    Credential,
    CredentialKind,
    CredentialState,
    credential_id_of,
    credential_ref,
)
from stackback.retention import RetentionPolicy
from stackback.sealing import SecretBox, SecretUnreadable
from stackback.services import keystone as keystone_service
from stackback.services.access import Principal
from stackback.services.keystone import (
    KeystoneAuthenticator,
    PolicyCredentials,
    TokenCache,
    token_key,
)
from stackback.services.policies import PolicyService, PolicySpec
from stackback.store.sql import SqlStore

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TOKEN = "gAAAAABtoken-" + "x" * 180


def principal(**changes: Any) -> Principal:
    values: dict[str, Any] = {
        "user_id": "u1",
        "project_id": "p1",
        "roles": frozenset({"member", "reader"}),
        "user_name": "alice",
        "expires_at": T0 + timedelta(hours=1),
        "token": TOKEN,
    }
    values.update(changes)
    return Principal(**values)


# --------------------------------------------------------------------------- the token cache


def test_cache_returns_the_principal_with_its_token_until_max_age() -> None:
    clock = VirtualClock(T0)
    cache = TokenCache(clock.now, max_age=timedelta(seconds=60))
    cache.put(TOKEN, principal())
    assert cache.get(TOKEN) == principal()
    assert cache.get(TOKEN).token == TOKEN  # type: ignore[union-attr]
    clock.advance(59)
    assert cache.get(TOKEN) is not None
    clock.advance(1)
    assert cache.get(TOKEN) is None
    assert len(cache) == 0


def test_cache_ends_at_the_tokens_expiry_when_that_is_sooner() -> None:
    clock = VirtualClock(T0)
    cache = TokenCache(clock.now, max_age=timedelta(seconds=60))
    cache.put(TOKEN, principal(expires_at=T0 + timedelta(seconds=10)))
    clock.advance(9)
    assert cache.get(TOKEN) is not None
    clock.advance(1)
    assert cache.get(TOKEN) is None


def test_cache_keeps_neither_expired_tokens_nor_tokens_themselves() -> None:
    clock = VirtualClock(T0)
    cache = TokenCache(clock.now)
    cache.put(TOKEN, principal(expires_at=T0))
    assert len(cache) == 0
    cache.put(TOKEN, principal())
    assert TOKEN not in repr(cache._entries)
    assert list(cache._entries) == [token_key(TOKEN)]
    assert all(p.token is None for _, p in cache._entries.values())


def test_cache_is_bounded_least_recently_used_out_first() -> None:
    cache = TokenCache(VirtualClock(T0).now, max_entries=2)
    cache.put("a" * 10, principal(user_id="a"))
    cache.put("b" * 10, principal(user_id="b"))
    assert cache.get("a" * 10) is not None  # a is now the most recently used
    cache.put("c" * 10, principal(user_id="c"))
    assert len(cache) == 2
    assert cache.get("b" * 10) is None
    assert cache.get("a" * 10) is not None and cache.get("c" * 10) is not None


def test_cache_with_zero_max_age_keeps_nothing() -> None:
    cache = TokenCache(VirtualClock(T0).now, max_age=timedelta(0))
    cache.put(TOKEN, principal())
    assert cache.get(TOKEN) is None


@dataclass
class CountingValidation:
    info: TokenInfo
    tokens: list[str] = field(default_factory=list)

    def __call__(self, keystone: object, token: str) -> TokenInfo:
        self.tokens.append(token)
        return self.info


@pytest.fixture
def validation(monkeypatch: pytest.MonkeyPatch) -> CountingValidation:
    fake = CountingValidation(
        TokenInfo("u1", "alice", "p1", frozenset({"member"}), T0 + timedelta(hours=1))
    )
    monkeypatch.setattr(keystone_service, "validate_token", fake)
    return fake


def test_authenticator_asks_keystone_once_per_max_age(validation: CountingValidation) -> None:
    clock = VirtualClock(T0)
    authenticator = KeystoneAuthenticator(object(), clock, max_age=timedelta(seconds=60))  # type: ignore[arg-type]
    first = authenticator.authenticate(TOKEN)
    assert (first.user_id, first.project_id, first.roles) == ("u1", "p1", frozenset({"member"}))
    assert first.token == TOKEN and first.expires_at == T0 + timedelta(hours=1)
    assert authenticator.authenticate(TOKEN) == first
    assert len(validation.tokens) == 1
    clock.advance(60)
    authenticator.authenticate(TOKEN)
    assert len(validation.tokens) == 2


def test_authenticator_refuses_missing_malformed_and_expired_tokens(
    validation: CountingValidation,
) -> None:
    clock = VirtualClock(T0)
    authenticator = KeystoneAuthenticator(object(), clock)  # type: ignore[arg-type]
    for bad in (None, "", "two words", "tab\there", "x" * 8193, "new\nline"):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(bad)
    assert validation.tokens == []  # never sent to Keystone
    validation.info = TokenInfo("u1", None, "p1", frozenset(), T0)
    with pytest.raises(Unauthenticated, match="expired"):
        authenticator.authenticate(TOKEN)
    assert len(authenticator.cache) == 0


# --------------------------------------------------------------------------- sealing


def test_sealed_secrets_open_only_with_their_key(tmp_path: Path) -> None:
    box = SecretBox.from_file(tmp_path / "state" / "secret.key")
    sealed = box.seal("s3cr3t-value")
    assert "s3cr3t-value" not in sealed
    assert box.open(sealed) == "s3cr3t-value"
    assert stat.S_IMODE((tmp_path / "state" / "secret.key").stat().st_mode) == 0o600
    assert SecretBox.from_file(tmp_path / "state" / "secret.key").open(sealed) == "s3cr3t-value"
    with pytest.raises(SecretUnreadable) as error:
        SecretBox([Fernet.generate_key()]).open(sealed)
    assert "s3cr3t" not in str(error.value)


def test_a_new_first_key_seals_and_old_keys_still_open(tmp_path: Path) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed_by_old = SecretBox([old]).seal("kept")
    rotated = SecretBox([new, old])
    assert rotated.open(sealed_by_old) == "kept"
    assert SecretBox([new]).open(rotated.seal("fresh")) == "fresh"


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(Fernet.generate_key())
    path.chmod(0o640)
    with pytest.raises(InvalidInput, match="chmod 600"):
        SecretBox.from_file(path)
    path.write_text("not a key\n")
    path.chmod(0o600)
    with pytest.raises(InvalidInput, match="not a Fernet key"):
        SecretBox.from_file(path)


# --------------------------------------------------------------------------- the store


def test_credentials_are_stored_and_given_up_without_their_secret(store: SqlStore) -> None:
    box = SecretBox([Fernet.generate_key()])
    credential = Credential(
        id="c0ffee00-0000-4000-8000-000000000001",
        kind=CredentialKind.APPLICATION_CREDENTIAL,
        project_id="p1",
        user_id="u1",
        keystone_id="app-1",
        created_at=T0,
        sealed_secret=box.seal("app-secret"),
    )
    store.add_credential(credential)
    assert store.get_credential(credential.id) == credential
    assert "app-secret" not in repr(credential)
    ended = store.end_credential(
        credential.id, state=CredentialState.REVOKED, now=T0 + timedelta(days=1), detail="gone"
    )
    assert (ended.state, ended.revoked_at, ended.detail) == (
        CredentialState.REVOKED,
        T0 + timedelta(days=1),
        "gone",
    )
    assert ended.sealed_secret is None
    assert store.get_credential(credential.id).sealed_secret is None
    with pytest.raises(NotFound):
        store.get_credential("c0ffee00-0000-4000-8000-000000000002")


# --------------------------------------------------------------------------- the resolver


def test_references_name_credentials_and_nothing_else() -> None:
    assert credential_id_of(credential_ref("abc")) == "abc"
    for cloud in (None, "prod", "sim", "credential:", "xcredential:abc"):
        assert credential_id_of(cloud) is None


def test_the_provider_opens_credential_clouds_through_its_hook(tmp_path: Path) -> None:
    opened: list[str] = []

    def opener(credential_id: str) -> Any:
        opened.append(credential_id)
        return f"cloud of {credential_id}"

    clouds = CloudProvider("sim", VirtualClock(T0), tmp_path, credentials=opener)
    assert clouds("credential:abc") == "cloud of abc"
    assert clouds("credential:abc") == "cloud of abc"
    assert opened == ["abc"]  # cached like any cloud
    assert not isinstance(clouds("sim"), str)
    with pytest.raises(InvalidInput, match="STACKBACK_KEYSTONE_CLOUD"):
        CloudProvider("sim", VirtualClock(T0), tmp_path)("credential:abc")


@dataclass
class FakeKeystone:
    """Records which connections would be made, and how."""

    made: list[tuple[str, ...]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    fail_delete: bool = False

    def trust_connection(self, trust_id: str) -> str:
        self.made.append(("trust", trust_id))
        return "trust connection"

    def application_credential_connection(self, credential_id: str, secret: str) -> str:
        self.made.append(("application-credential", credential_id, secret))
        return "app connection"


def add(store: SqlStore, kind: CredentialKind, keystone_id: str, sealed: str | None) -> Credential:
    return store.add_credential(
        Credential(
            id=f"c0ffee00-0000-4000-8000-{len(keystone_id):012d}",
            kind=kind,
            project_id="p1",
            user_id="u1",
            keystone_id=keystone_id,
            created_at=T0,
            sealed_secret=sealed,
        )
    )


def test_credential_clouds_connect_through_the_trust_or_the_unsealed_secret(
    store: SqlStore,
) -> None:
    box = SecretBox([Fernet.generate_key()])
    keystone = FakeKeystone()
    clouds = CredentialClouds(keystone, store, box)  # type: ignore[arg-type]
    trust = add(store, CredentialKind.TRUST, "trust-1", None)
    app = add(store, CredentialKind.APPLICATION_CREDENTIAL, "app-22", box.seal("the-secret"))

    cloud = clouds(trust.id)
    assert isinstance(cloud, OpenStackCloud) and cloud.cloud_name == trust.cloud_ref
    assert keystone.made == []  # nothing contacted until first use
    assert clouds.connection_factory(trust.id)() == "trust connection"
    assert clouds.connection_factory(app.id)() == "app connection"
    assert keystone.made == [
        ("trust", "trust-1"),
        ("application-credential", "app-22", "the-secret"),
    ]

    store.end_credential(trust.id, state=CredentialState.REVOKED, now=T0, detail="deleted")
    with pytest.raises(CloudRejected, match="given up"):
        clouds(trust.id)
    with pytest.raises(CloudRejected, match="no such credential"):
        clouds("c0ffee00-0000-4000-8000-00000000ffff")


# --------------------------------------------------------------------------- policy credentials


@pytest.fixture
def no_keystone(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Trust creation, deletion and app-credential checks replaced by recorders."""
    calls: dict[str, list[Any]] = {"create": [], "delete": [], "check": []}

    def create(keystone: object, token: str, **kwargs: Any) -> str:
        calls["create"].append((token, kwargs))
        return "trust-9"

    def delete(keystone: object, trust_id: str) -> bool:
        calls["delete"].append(trust_id)
        if trust_id == "trust-broken":
            raise CloudRejected("Keystone said no")
        return trust_id != "trust-gone"

    def check(keystone: object, credential_id: str, secret: str, *, project_id: str) -> str:
        calls["check"].append((credential_id, project_id))
        return "owner-1"

    monkeypatch.setattr(keystone_service, "create_trust", create)
    monkeypatch.setattr(keystone_service, "delete_trust", delete)
    monkeypatch.setattr(keystone_service, "check_application_credential", check)
    return calls


def credentials(store: SqlStore, clock: VirtualClock) -> PolicyCredentials:
    return PolicyCredentials(
        FakeKeystone(),  # type: ignore[arg-type]
        store,
        SecretBox([Fernet.generate_key()]),
        clock,
    )


def test_a_trust_needs_a_project_token_and_the_trust_roles(
    store: SqlStore, clock: VirtualClock, no_keystone: dict[str, list[Any]]
) -> None:
    made = credentials(store, clock)
    with pytest.raises(Forbidden, match="scoped"):
        made.for_new_policy(principal(project_id=None))
    with pytest.raises(Forbidden, match="member"):
        made.for_new_policy(principal(roles=frozenset({"reader"})))
    with pytest.raises(Unauthenticated):
        made.for_new_policy(principal(token=None))
    assert no_keystone["create"] == []
    ref = made.for_new_policy(principal())
    assert no_keystone["create"] == [
        (TOKEN, {"trustor_user_id": "u1", "project_id": "p1", "roles": ("member",)})
    ]
    stored = store.get_credential(str(credential_id_of(ref)))
    assert (stored.kind, stored.keystone_id, stored.project_id, stored.user_id) == (
        CredentialKind.TRUST,
        "trust-9",
        "p1",
        "u1",
    )
    assert stored.sealed_secret is None


def test_an_application_credential_is_kept_sealed(
    store: SqlStore, clock: VirtualClock, no_keystone: dict[str, list[Any]]
) -> None:
    made = credentials(store, clock)
    with pytest.raises(InvalidInput, match="both"):
        made.for_new_policy(principal(), application_credential_id="app-1")
    ref = made.for_new_policy(
        principal(), application_credential_id="app-1", application_credential_secret="sekret"
    )
    assert no_keystone["check"] == [("app-1", "p1")] and no_keystone["create"] == []
    stored = store.get_credential(str(credential_id_of(ref)))
    assert stored.user_id == "owner-1" and stored.sealed_secret
    assert "sekret" not in stored.sealed_secret
    assert made.box.open(stored.sealed_secret) == "sekret"
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT * FROM credentials").fetchall()
    assert "sekret" not in repr(rows)


def test_deleting_a_policy_gives_up_its_credential_once_unused(
    store: SqlStore, clock: VirtualClock, no_keystone: dict[str, list[Any]]
) -> None:
    made = credentials(store, clock)
    shared = made.for_new_policy(principal())
    service = PolicyService(store, clock, release_credential=made.release)
    for name in ("one", "two"):
        service.create(
            PolicySpec(
                name=name,
                targets=("web-1",),
                schedules=("0 1 * * *",),
                timezone="UTC",
                window_minutes=0,
                retention=RetentionPolicy(last=1),
                cloud=shared,
            ),
            offline=True,
        )
    service.delete(["one"])
    assert no_keystone["delete"] == []  # "two" still acts through it
    service.delete(["two"])
    assert no_keystone["delete"] == ["trust-9"]
    ended = store.get_credential(str(credential_id_of(shared)))
    assert ended.state is CredentialState.REVOKED and "deleted in Keystone" in str(ended.detail)
    assert made.release(shared) == ended  # given up once
    assert no_keystone["delete"] == ["trust-9"]


def test_a_trust_keystone_will_not_delete_is_recorded(
    store: SqlStore, clock: VirtualClock, no_keystone: dict[str, list[Any]]
) -> None:
    made = credentials(store, clock)
    trust = add(store, CredentialKind.TRUST, "trust-broken", None)
    ended = made.release(trust.cloud_ref)
    assert ended is not None and ended.state is CredentialState.REVOKE_FAILED
    assert "Keystone said no" in str(ended.detail)
    assert made.release("prod") is None and made.release(None) is None
    gone = made.release(add(store, CredentialKind.TRUST, "trust-gone", None).cloud_ref)
    assert gone is not None and gone.state is CredentialState.REVOKED
    assert "already unusable" in str(gone.detail)


def test_an_application_credential_is_never_deleted_only_forgotten(
    store: SqlStore, clock: VirtualClock, no_keystone: dict[str, list[Any]]
) -> None:
    made = credentials(store, clock)
    app = add(store, CredentialKind.APPLICATION_CREDENTIAL, "app-1", made.box.seal("x"))
    ended = made.release(app.cloud_ref)
    assert ended is not None and ended.state is CredentialState.REVOKED
    assert ended.sealed_secret is None and no_keystone["delete"] == []


# --------------------------------------------------------------------------- settings


def test_keystone_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_keystone_settings(tmp_path) is None
    monkeypatch.setenv("STACKBACK_KEYSTONE_CLOUD", "stackback-service")
    settings = load_keystone_settings(tmp_path)
    assert settings is not None
    assert (settings.cloud, settings.secret_key_file, settings.cache_seconds) == (
        "stackback-service",
        tmp_path / "secret.key",
        60.0,
    )
    assert settings.trust_roles == ("member",)
    monkeypatch.setenv("STACKBACK_KEYSTONE_TRUST_ROLES", "member, reader")
    monkeypatch.setenv("STACKBACK_KEYSTONE_CACHE_SECONDS", "0")
    settings = load_keystone_settings(tmp_path)
    assert settings is not None
    assert settings.trust_roles == ("member", "reader") and settings.cache_seconds == 0
    monkeypatch.setenv("STACKBACK_KEYSTONE_CACHE_SECONDS", "soon")
    with pytest.raises(InvalidInput, match="not a number"):
        load_keystone_settings(tmp_path)


def test_keystone_unreachable_is_a_cloud_error_not_an_unauthenticated_caller(
    tmp_path: Path,
) -> None:
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(
        "clouds:\n  svc:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n"
        "      username: u\n      password: p\n      project_name: service\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
    )
    keystone = KeystoneService("svc", config_files=[str(clouds_yaml)], timeout=2)
    with pytest.raises(CloudUnreachable) as error:
        KeystoneAuthenticator(keystone, VirtualClock(T0)).authenticate(TOKEN)
    assert TOKEN not in str(error.value)
    with pytest.raises(InvalidInput, match=r"not in clouds\.yaml"):
        KeystoneService("nope", config_files=[str(clouds_yaml)])


def test_the_faces_build_keystone_mode_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match="STACKBACK_KEYSTONE_CLOUD"):
        keystone_authenticator(load_settings(), VirtualClock(T0))
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(
        "clouds:\n  svc:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n"
        "      username: u\n      password: p\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    monkeypatch.setenv("STACKBACK_KEYSTONE_CLOUD", "svc")
    monkeypatch.setenv("STACKBACK_KEYSTONE_CACHE_SECONDS", "5")
    monkeypatch.setenv("STACKBACK_SECRET_KEY_FILE", str(tmp_path / "keys" / "k"))
    settings = load_settings()
    authenticator = keystone_authenticator(settings, VirtualClock(T0))
    assert authenticator.cache.max_age == timedelta(seconds=5)
    made = policy_credentials(
        settings,
        SqlStore.from_url("sqlite://", check_schema=False),
        VirtualClock(T0),
        keystone=authenticator.keystone,
    )
    assert made.keystone is authenticator.keystone
    assert stat.S_IMODE((tmp_path / "keys" / "k").stat().st_mode) == 0o600
