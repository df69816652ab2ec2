"""Keystone for the service face: stackback's service account, token validation, trusts and
application credentials, and the clouds stored credentials open.

``service`` holds :class:`KeystoneService` (the account, from a clouds.yaml entry);
``tokens`` validates users' tokens; ``delegation`` creates and deletes trusts and checks
application credentials; ``clouds`` opens ``credential:<id>`` for the ``CloudProvider``.
"""

from stackback.cloud.openstack.identity.clouds import CredentialClouds
from stackback.cloud.openstack.identity.delegation import (
    check_application_credential,
    create_trust,
    delete_trust,
)
from stackback.cloud.openstack.identity.service import KeystoneService
from stackback.cloud.openstack.identity.tokens import TokenInfo, validate_token

__all__ = [
    "CredentialClouds",
    "KeystoneService",
    "TokenInfo",
    "check_application_credential",
    "create_trust",
    "delete_trust",
    "validate_token",
]
