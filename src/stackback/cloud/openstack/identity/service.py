"""stackback's own Keystone account: it validates users' tokens and is the trustee of trusts.

It is a clouds.yaml entry with password authentication (a user in the ``service``
project with the ``service`` role, which Keystone's default policy lets validate
tokens). Its password never leaves this object; nothing here logs a token.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import openstack
from keystoneauth1 import session as ksa_session
from keystoneauth1 import token_endpoint
from openstack import exceptions as sdk_exc
from openstack.config.loader import OpenStackConfig
from openstack.connection import Connection

from stackback.cloud.openstack.errors import cloud_errors
from stackback.errors import InvalidInput

PASSWORD_AUTH_TYPES = frozenset({"password", "v3password"})
#: What the service account's connections share with its clouds.yaml entry (besides auth).
CONNECTION_SETTINGS = ("region_name", "interface", "verify", "cacert", "cert", "key", "api_timeout")
DEFAULT_TIMEOUT_SECONDS = 10.0
USER_KEYS = ("username", "user_id", "user_domain_name", "user_domain_id", "password")


class KeystoneService:
    """The service account of one clouds.yaml entry, contacted on first use."""

    def __init__(
        self,
        cloud: str,
        *,
        config_files: list[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        # Files given are the whole configuration (no OS_CLIENT_CONFIG_FILE put before them).
        loader = (
            OpenStackConfig(config_files=config_files, load_envvars=False)
            if config_files
            else OpenStackConfig()
        )
        try:
            region = loader.get_one(cloud=cloud)
        except sdk_exc.ConfigException as error:
            raise InvalidInput(
                f"keystone service cloud {cloud!r} is not in clouds.yaml ({error})",
                field="keystone-cloud",
            ) from None
        auth_type = str(region.config.get("auth_type") or "password")
        if auth_type not in PASSWORD_AUTH_TYPES:
            raise InvalidInput(
                f"keystone service cloud {cloud!r} uses {auth_type!r} auth: the trustee of "
                "trusts authenticates with a password (auth_type password)",
                field="keystone-cloud",
            )
        self.cloud = cloud
        self.timeout = timeout
        self._auth: dict[str, Any] = dict(region.config.get("auth") or {})
        if not self._auth.get("auth_url"):
            raise InvalidInput(
                f"keystone service cloud {cloud!r} has no auth_url", field="keystone-cloud"
            )
        self._settings = {
            key: region.config[key]
            for key in CONNECTION_SETTINGS
            if region.config.get(key) is not None
        }
        self.interface = str(self._settings.get("interface") or "public")
        self._region = region
        self._session: ksa_session.Session | None = None
        self._user_id: str | None = None
        self._identity_url: str | None = None
        self._lock = threading.Lock()

    @property
    def auth_url(self) -> str:
        return str(self._auth["auth_url"]).rstrip("/")

    @property
    def session(self) -> ksa_session.Session:
        """The service account's own (project-scoped) session."""
        with self._lock:
            if self._session is None:
                session = self._region.get_session()
                session.timeout = session.timeout or self.timeout
                self._session = session
            return self._session

    @property
    def identity_url(self) -> str:
        """Keystone's v3 endpoint (``.../v3``), as the catalog and version discovery say
        (raises keystoneauth's errors: callers translate them)."""
        if self._identity_url is not None:
            return self._identity_url
        url = self.session.get_endpoint(
            service_type="identity",
            interface=self.interface,
            min_version="3",
            max_version="3.latest",
        )
        if not url:
            raise InvalidInput(
                f"cloud {self.cloud!r} has no identity v3 endpoint", field="keystone-cloud"
            )
        self._identity_url = str(url).rstrip("/")
        return self._identity_url

    @property
    def user_id(self) -> str:
        """The service user's id: the trustee of every trust stackback asks for."""
        if self._user_id is None:
            with cloud_errors(f"authenticating stackback's service account (cloud {self.cloud!r})"):
                self._user_id = str(self.session.get_user_id())
        return self._user_id

    def identity_request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> Any:
        """A request to Keystone v3 as the service account (raises keystoneauth errors)."""
        return self.session.request(
            f"{self.identity_url}{path}",
            method,
            headers=dict(headers or {}),
            timeout=self.timeout,
        )

    def user_session(self, token: str) -> ksa_session.Session:
        """A session that sends a user's token as is (no re-authentication, no catalog)."""
        verify, cert = self._region.get_requests_verify_args()
        return ksa_session.Session(
            auth=token_endpoint.Token(self.identity_url, token),
            verify=verify,
            cert=cert,
            timeout=self.timeout,
        )

    def trust_connection(self, trust_id: str) -> Connection:
        """An openstacksdk connection acting through a trust (the trustor, impersonated)."""
        user = {key: value for key, value in self._auth.items() if key in USER_KEYS}
        return self._connect(
            "v3password", {**user, "auth_url": self.auth_url, "trust_id": trust_id}
        )

    def application_credential_connection(self, credential_id: str, secret: str) -> Connection:
        """An openstacksdk connection authenticated by a tenant's application credential."""
        return self._connect(
            "v3applicationcredential",
            {
                "auth_url": self.auth_url,
                "application_credential_id": credential_id,
                "application_credential_secret": secret,
            },
        )

    def _connect(self, auth_type: str, auth: dict[str, Any]) -> Connection:
        settings = {"api_timeout": self.timeout, **self._settings}
        return openstack.connect(
            load_yaml_config=False,
            load_envvars=False,
            auth_type=auth_type,
            auth=auth,
            identity_api_version="3",
            **settings,
        )
