"""The clouds of stored credentials: what ``credential:<id>`` in a policy's ``cloud`` opens."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openstack.connection import Connection

from stackback.cloud.openstack.adapter import OpenStackCloud
from stackback.cloud.openstack.identity.service import KeystoneService
from stackback.errors import CloudRejected, NotFound
from stackback.ports import Cloud, CredentialStore
from stackback.records import CredentialKind, credential_ref
from stackback.sealing import SecretBox


class CredentialClouds:
    """Opens the cloud a stored credential acts through (``CloudProvider``'s hook).

    A trust: the service user's password scoped to the trust (``v3password`` +
    ``trust_id``), acting as the impersonated trustor in the trustor's project. An
    application credential: ``v3applicationcredential`` with its secret, unsealed here.
    """

    def __init__(self, keystone: KeystoneService, store: CredentialStore, box: SecretBox) -> None:
        self.keystone = keystone
        self.store = store
        self.box = box

    def connection_factory(self, credential_id: str) -> Callable[[], Connection]:
        """How to connect through the credential (nothing is contacted yet)."""
        try:
            credential = self.store.get_credential(credential_id)
        except NotFound:
            raise CloudRejected(
                f"cloud {credential_ref(credential_id)!r}: no such credential"
            ) from None
        if not credential.state.opens:  # a retired one still serves what was made through it
            when = credential.revoked_at or credential.retired_at
            at = f" at {when:%Y-%m-%d %H:%M}Z" if when is not None else ""
            raise CloudRejected(
                f"cloud {credential.cloud_ref!r}: the credential was given up "
                f"({credential.state.value}{at})"
            )
        if credential.kind is CredentialKind.TRUST:
            trust_id = credential.keystone_id
            return lambda: self.keystone.trust_connection(trust_id)
        if credential.sealed_secret is None:
            raise CloudRejected(f"cloud {credential.cloud_ref!r}: the credential has no secret")
        secret = self.box.open(credential.sealed_secret)
        app_id = credential.keystone_id
        return lambda: self.keystone.application_credential_connection(app_id, secret)

    def __call__(self, credential_id: str) -> Cloud:
        factory = self.connection_factory(credential_id)
        return OpenStackCloud(factory, cloud_name=credential_ref(credential_id))


if TYPE_CHECKING:
    from stackback.cloud import CredentialOpener

    def _opens_credentials(clouds: CredentialClouds) -> CredentialOpener:
        return clouds
