"""Keystone mode against the plane's real Keystone: tokens become the right principals,
revoked and garbage tokens are refused, and policies act later through a trust or an
application credential after the user's token is gone.

Each module run creates its own projects (alpha-XXXX, beta-XXXX), users (reader, member,
admin) and stackback service user, and deletes them at the end.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v3
from openstack.connection import Connection

from stackback.clock import SystemClock, VirtualClock
from stackback.cloud import CloudProvider
from stackback.cloud.openstack import OpenStackCloud
from stackback.cloud.openstack.identity import KeystoneService
from stackback.engine.collector import Collector
from stackback.engine.runner import Runner
from stackback.engine.worker import Worker
from stackback.errors import InvalidInput, StackbackError, Unauthenticated
from stackback.policy import BackupStatus, RunState, Selector
from stackback.records import CredentialKind, CredentialState, credential_id_of
from stackback.retention import RetentionPolicy
from stackback.sealing import SecretBox
from stackback.services.access import Principal
from stackback.services.backups import BackupService
from stackback.services.keystone import (
    KeystoneAuthenticator,
    PolicyCredentials,
    credentials_for_new_policy,
)
from stackback.services.policies import PolicyService, PolicySpec
from stackback.services.servers import ServerDirectory
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import SqlStore
from tests.cloud.conftest import OpenStackPlane

pytestmark = pytest.mark.openstack

SERVICE_CLOUD = "stackback-service"


@dataclass
class User:
    name: str
    password: str
    project_id: str
    id: str

    def session(self, auth_url: str) -> ksa_session.Session:
        return ksa_session.Session(
            auth=v3.Password(
                auth_url=auth_url,
                username=self.name,
                password=self.password,
                user_domain_id="default",
                project_id=self.project_id,
            )
        )

    def token(self, auth_url: str) -> str:
        """A new token of this user, scoped to its project."""
        return str(self.session(auth_url).get_token())


@dataclass
class Identities:
    auth_url: str
    clouds_yaml: Path
    alpha: str
    beta: str
    users: dict[str, User]
    service_password: str

    def keystone(self) -> KeystoneService:
        return KeystoneService(SERVICE_CLOUD, config_files=[str(self.clouds_yaml)])


@pytest.fixture(scope="module")
def identities(
    openstack_plane: OpenStackPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Identities]:
    admin = openstack_plane.connection("admin")
    suffix = uuid.uuid4().hex[:8]
    roles = {name: admin.identity.find_role(name) for name in ("reader", "member", "admin")}
    service_role = admin.identity.find_role("service")
    made: list[Any] = []
    try:
        projects = {}
        for name in ("alpha", "beta"):
            project = admin.identity.create_project(name=f"{name}-{suffix}", domain_id="default")
            made.append(project)
            projects[name] = project
        users: dict[str, User] = {}
        wanted = {
            "alpha-reader": ("alpha", ["reader"]),
            "alpha-member": ("alpha", ["member"]),
            "alpha-admin": ("alpha", ["admin"]),
            "beta-member": ("beta", ["member"]),
        }
        for key, (project_key, role_names) in wanted.items():
            project = projects[project_key]
            password = uuid.uuid4().hex
            user = admin.identity.create_user(
                name=f"{key}-{suffix}", password=password, domain_id="default"
            )
            made.append(user)
            for role_name in role_names:
                admin.identity.assign_project_role_to_user(project, user, roles[role_name])
            users[key] = User(user.name, password, project.id, user.id)
        service_password = uuid.uuid4().hex
        service_project = admin.identity.find_project("service", domain_id="default")
        service_user = admin.identity.create_user(
            name=f"stackback-{suffix}", password=service_password, domain_id="default"
        )
        made.append(service_user)
        admin.identity.assign_project_role_to_user(service_project, service_user, service_role)
        auth_url = str(admin.config.config["auth"]["auth_url"]).rstrip("/")
        clouds_yaml = tmp_path_factory.mktemp("keystone") / "clouds.yaml"
        region = admin.config.region_name
        clouds_yaml.write_text(
            yaml.safe_dump(
                {
                    "clouds": {
                        SERVICE_CLOUD: {
                            "region_name": region,
                            "identity_api_version": 3,
                            "interface": "public",
                            "auth": {
                                "auth_url": auth_url,
                                "username": service_user.name,
                                "password": service_password,
                                "project_name": "service",
                                "user_domain_name": "Default",
                                "project_domain_name": "Default",
                            },
                        }
                    }
                }
            )
        )
        yield Identities(
            auth_url,
            clouds_yaml,
            projects["alpha"].id,
            projects["beta"].id,
            users,
            service_password,
        )
    finally:
        for resource in reversed(made):
            with contextlib.suppress(Exception):
                if resource.__class__.__name__ == "User":
                    admin.identity.delete_user(resource)
                else:
                    admin.identity.delete_project(resource)


@pytest.fixture
def sql_store(tmp_path: Path) -> Iterator[SqlStore]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'stackback.db'}")
    upgrade(engine)
    store = SqlStore(engine)
    try:
        yield store
    finally:
        store.dispose()


@pytest.fixture
def secrets_stay_out_of_logs(
    caplog: pytest.LogCaptureFixture, identities: Identities
) -> Iterator[list[str]]:
    """Every log line of the test's call, at DEBUG: none may hold a password, or a token or
    secret the test puts in the list (fixtures that make secrets log them themselves)."""
    caplog.set_level(logging.DEBUG)
    secrets = [identities.service_password, *(u.password for u in identities.users.values())]
    yield secrets
    records = caplog.get_records("call")
    assert records  # the test's log lines are there to be searched
    text = "\n".join(f"{record.getMessage()} {record.args!r}" for record in records)
    for secret in secrets:
        assert secret not in text


def revoke(identities: Identities, token: str) -> None:
    """``DELETE /v3/auth/tokens``, as the token's own user."""
    session = ksa_session.Session()
    session.delete(
        f"{identities.auth_url}/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
    )


def authenticator(identities: Identities, **kwargs: Any) -> KeystoneAuthenticator:
    return KeystoneAuthenticator(
        identities.keystone(), kwargs.pop("clock", SystemClock()), **kwargs
    )


def test_tokens_prove_their_user_project_and_roles(
    identities: Identities, secrets_stay_out_of_logs: list[str]
) -> None:
    auth = authenticator(identities)
    expected = {
        "alpha-reader": (identities.alpha, {"reader"}),
        "alpha-member": (identities.alpha, {"member", "reader"}),  # member implies reader
        "alpha-admin": (identities.alpha, {"admin", "manager", "member", "reader"}),
        "beta-member": (identities.beta, {"member", "reader"}),
    }
    for key, (project, roles) in expected.items():
        user = identities.users[key]
        token = user.token(identities.auth_url)
        secrets_stay_out_of_logs.append(token)
        principal = auth.authenticate(token)
        assert (principal.user_id, principal.user_name, principal.project_id) == (
            user.id,
            user.name,
            project,
        )
        assert principal.roles == roles
        assert principal.expires_at is not None and principal.token == token
        assert token not in repr(principal)


def test_garbage_and_revoked_tokens_are_refused(
    identities: Identities, secrets_stay_out_of_logs: list[str]
) -> None:
    auth = authenticator(identities, max_age=timedelta(0))
    with pytest.raises(Unauthenticated):
        auth.authenticate("gAAAAAB-not-a-token")
    token = identities.users["alpha-member"].token(identities.auth_url)
    secrets_stay_out_of_logs.append(token)
    assert auth.authenticate(token).project_id == identities.alpha
    revoke(identities, token)
    with pytest.raises(Unauthenticated, match="not valid"):
        auth.authenticate(token)


def test_a_revoked_token_works_only_until_its_cache_entry_ends(
    identities: Identities, secrets_stay_out_of_logs: list[str]
) -> None:
    clock = VirtualClock(SystemClock().now())
    auth = authenticator(identities, clock=clock, max_age=timedelta(seconds=60))
    token = identities.users["beta-member"].token(identities.auth_url)
    secrets_stay_out_of_logs.append(token)
    assert auth.authenticate(token).project_id == identities.beta
    revoke(identities, token)
    clock.advance(59)
    assert auth.authenticate(token).project_id == identities.beta  # cached
    clock.advance(1)
    with pytest.raises(Unauthenticated):
        auth.authenticate(token)


def test_a_service_account_keystone_refuses_is_not_the_callers_fault(
    identities: Identities, tmp_path: Path
) -> None:
    clouds = yaml.safe_load(identities.clouds_yaml.read_text())
    clouds["clouds"][SERVICE_CLOUD]["auth"]["password"] = "wrong"
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    auth = KeystoneAuthenticator(
        KeystoneService(SERVICE_CLOUD, config_files=[str(path)]), SystemClock()
    )
    token = identities.users["alpha-member"].token(identities.auth_url)
    with pytest.raises(StackbackError) as error:
        auth.authenticate(token)
    assert not isinstance(error.value, Unauthenticated)
    assert error.value.code in ("cloud-unavailable", "cloud-unreachable")
    assert token not in str(error.value)


def policy_credentials(
    identities: Identities, store: SqlStore, tmp_path: Path
) -> PolicyCredentials:
    return PolicyCredentials(
        identities.keystone(), store, SecretBox.from_file(tmp_path / "secret.key"), SystemClock()
    )


def provider(credentials: PolicyCredentials, tmp_path: Path) -> CloudProvider:
    return CloudProvider(None, SystemClock(), tmp_path, credentials=credentials.clouds())


def private_image(user: User, identities: Identities) -> tuple[Connection, str]:
    conn = Connection(
        session=user.session(identities.auth_url), region_name="RegionOne", interface="public"
    )
    image = conn.image.create_image(
        name=f"private-{uuid.uuid4().hex[:8]}",
        disk_format="raw",
        container_format="bare",
        visibility="private",
        allow_duplicates=True,
    )
    return conn, str(image.id)


def acts_in(cloud: OpenStackCloud, project: str, image_id: str) -> None:
    """The cloud acts in ``project``: it sees the project's private image and lists servers."""
    assert cloud.conn.current_project_id == project
    assert image_id in {image.id for image in cloud.conn.image.images()}
    assert cloud.find_servers(Selector("backup", "nightly")) == []
    assert list(cloud.conn.compute.servers()) == []


def test_a_policy_acts_through_its_trust_after_the_users_token_is_revoked(
    identities: Identities,
    sql_store: SqlStore,
    tmp_path: Path,
    secrets_stay_out_of_logs: list[str],
) -> None:
    member = identities.users["alpha-member"]
    conn, image_id = private_image(member, identities)
    try:
        auth = authenticator(identities)
        token = member.token(identities.auth_url)
        secrets_stay_out_of_logs.append(token)
        credentials = policy_credentials(identities, sql_store, tmp_path)
        reader_token = identities.users["alpha-reader"].token(identities.auth_url)
        secrets_stay_out_of_logs.append(reader_token)
        with pytest.raises(StackbackError, match="member"):
            credentials_for_new_policy(auth.authenticate(reader_token), credentials)

        ref = credentials_for_new_policy(auth.authenticate(token), credentials)
        stored = sql_store.get_credential(str(credential_id_of(ref)))
        assert stored.kind is CredentialKind.TRUST and stored.project_id == identities.alpha
        revoke(identities, token)
        with pytest.raises(Unauthenticated):
            KeystoneAuthenticator(identities.keystone(), SystemClock()).authenticate(token)

        cloud = provider(credentials, tmp_path)(ref)
        assert isinstance(cloud, OpenStackCloud)
        acts_in(cloud, identities.alpha, image_id)
        assert cloud.conn.current_user_id == member.id  # impersonation: the user's own calls

        ended = credentials.release(ref)
        assert ended is not None and ended.state is CredentialState.REVOKED, ended
        with pytest.raises(Exception):  # noqa: B017 - the trust is gone: no token through it
            identities.keystone().trust_connection(stored.keystone_id).authorize()
    finally:
        conn.image.delete_image(image_id, ignore_missing=True)


@pytest.fixture
def application_credential(identities: Identities) -> Iterator[tuple[Connection, Any, str]]:
    """An application credential alpha's member made (member role), and a private image of
    alpha's; made outside the test's call (creating the credential logs its secret)."""
    member = identities.users["alpha-member"]
    conn, image_id = private_image(member, identities)
    app = conn.identity.create_application_credential(
        user=member.id, name=f"stackback-{uuid.uuid4().hex[:8]}", roles=[{"name": "member"}]
    )
    try:
        yield conn, app, image_id
    finally:
        conn.identity.delete_application_credential(member.id, app.id, ignore_missing=True)
        conn.image.delete_image(image_id, ignore_missing=True)


def test_a_policy_acts_through_the_application_credential_its_tenant_names(
    identities: Identities,
    sql_store: SqlStore,
    tmp_path: Path,
    application_credential: tuple[Connection, Any, str],
    secrets_stay_out_of_logs: list[str],
) -> None:
    conn, app, image_id = application_credential
    member = identities.users["alpha-member"]
    secrets_stay_out_of_logs.append(app.secret)
    auth = authenticator(identities)
    credentials = policy_credentials(identities, sql_store, tmp_path)
    beta_token = identities.users["beta-member"].token(identities.auth_url)
    secrets_stay_out_of_logs.append(beta_token)
    with pytest.raises(InvalidInput, match="another project"):
        credentials.for_new_policy(
            auth.authenticate(beta_token),
            application_credential_id=app.id,
            application_credential_secret=app.secret,
        )
    token = member.token(identities.auth_url)
    secrets_stay_out_of_logs.append(token)
    alpha_member: Principal = auth.authenticate(token)
    with pytest.raises(InvalidInput, match="refused"):
        credentials.for_new_policy(
            alpha_member,
            application_credential_id=app.id,
            application_credential_secret="not-the-secret",
        )
    ref = credentials_for_new_policy(
        alpha_member,
        credentials,
        application_credential_id=app.id,
        application_credential_secret=app.secret,
    )
    with sql_store.engine.connect() as db:
        rows = db.exec_driver_sql("SELECT * FROM credentials").fetchall()
    assert len(rows) == 1 and app.secret not in repr(rows)

    revoke(identities, token)
    cloud = provider(credentials, tmp_path)(ref)
    assert isinstance(cloud, OpenStackCloud)
    acts_in(cloud, identities.alpha, image_id)

    ended = credentials.release(ref)
    assert ended is not None and ended.state is CredentialState.REVOKED
    assert ended.sealed_secret is None
    assert conn.identity.get_application_credential(member.id, app.id) is not None


def test_a_policys_backup_runs_through_its_trust_once_the_users_token_is_gone(
    identities: Identities,
    sql_store: SqlStore,
    tmp_path: Path,
    secrets_stay_out_of_logs: list[str],
) -> None:
    member = identities.users["alpha-member"]
    conn = Connection(
        session=member.session(identities.auth_url), region_name="RegionOne", interface="public"
    )
    server = conn.compute.create_server(
        name=f"trusted-{uuid.uuid4().hex[:8]}",
        image_id=conn.image.find_image("stackback-tiny", ignore_missing=False).id,
        flavor_id=conn.compute.find_flavor("m1.tiny", ignore_missing=False).id,
        networks="none",
    )
    try:
        conn.compute.wait_for_server(server, interval=1, wait=180)
        token = member.token(identities.auth_url)
        secrets_stay_out_of_logs.append(token)
        credentials = policy_credentials(identities, sql_store, tmp_path)
        ref = credentials_for_new_policy(authenticator(identities).authenticate(token), credentials)
        revoke(identities, token)

        clock = SystemClock()
        clouds = provider(credentials, tmp_path)
        policies = PolicyService(
            sql_store, clock, ServerDirectory(clouds), release_credential=credentials.release
        )
        policy = policies.create(  # the server is looked up through the trust
            PolicySpec(
                name=f"trusted-{uuid.uuid4().hex[:8]}",
                targets=(server.id,),
                schedules=("0 1 * * *",),
                timezone="UTC",
                window_minutes=0,
                retention=RetentionPolicy(last=1),
                cloud=ref,
            )
        )
        run = sql_store.create_manual_run(
            target=server.id,
            now=clock.now(),
            label=None,
            retention=None,
            cloud=policy.cloud,
            policy=policy,
        )
        worker = Worker(sql_store, Runner(sql_store, clouds, clock), clock)
        deadline = time.monotonic() + 180
        while not sql_store.get_run(run.id).state.is_terminal:
            assert time.monotonic() < deadline, sql_store.get_run(run.id)
            worker.work_once()
            time.sleep(0.5)
        done = sql_store.get_run(run.id)
        assert done.state is RunState.SUCCEEDED, done.error
        backup = sql_store.get_backup(str(done.backup_id))
        image = conn.image.get_image(backup.artifacts[0].cloud_id)
        assert image.owner == identities.alpha and image.status == "active"

        policies.delete([policy.id])  # its backup still needs the trust: retired, kept
        kept = sql_store.get_credential(str(credential_id_of(ref)))
        assert kept.state is CredentialState.RETIRED, kept
        backups = BackupService(sql_store, clouds, clock, release_credential=credentials.release)
        backups.delete(backup.id, force=True)  # through the trust; the last one revokes it
        collector = Collector(sql_store, clouds, clock, release_credential=credentials.release)
        deadline = time.monotonic() + 60
        while sql_store.get_credential(kept.id).state is not CredentialState.REVOKED:
            assert time.monotonic() < deadline, sql_store.get_credential(kept.id)
            collector.collect_pending()
            time.sleep(0.5)
        assert sql_store.get_backup(backup.id).status is BackupStatus.DELETED
    finally:
        for image in conn.image.images(owner=identities.alpha):
            conn.image.delete_image(image, ignore_missing=True)
        conn.compute.delete_server(server, ignore_missing=True)
