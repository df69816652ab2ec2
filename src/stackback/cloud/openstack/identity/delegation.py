"""Acting later for a user: a Keystone trust to stackback's service user, or the tenant's
application credential, checked before it is kept.

The user's token is used once, to create the trust, and never kept; a trust is created
with impersonation (workers' calls are the user's own, in the user's project) and only
the roles asked for.
"""

from __future__ import annotations

from collections.abc import Iterable

from keystoneauth1 import exceptions as ksa_exc

from stackback.cloud.openstack.errors import cloud_errors
from stackback.cloud.openstack.identity.service import KeystoneService
from stackback.errors import CloudError, CloudNotFound, InvalidInput


def create_trust(
    keystone: KeystoneService,
    token: str,
    *,
    trustor_user_id: str,
    project_id: str,
    roles: Iterable[str],
) -> str:
    """Create a trust from the token's user to stackback's service user; its id.

    ``CloudRejected`` when Keystone refuses (e.g. a role the user does not hold).
    """
    with cloud_errors(f"creating a trust for project {project_id} in Keystone"):
        body = {
            "trust": {
                "trustor_user_id": trustor_user_id,
                "trustee_user_id": keystone.user_id,
                "project_id": project_id,
                "impersonation": True,
                "allow_redelegation": False,
                "roles": [{"name": role} for role in sorted(set(roles))],
            }
        }
        session = keystone.user_session(token)
        response = session.post(f"{keystone.identity_url}/OS-TRUST/trusts", json=body)
    return str(response.json()["trust"]["id"])


def delete_trust(keystone: KeystoneService, trust_id: str) -> bool:
    """Delete a trust, acting through the trust itself (its impersonated trustor may).

    True when it was deleted now; False when it could no longer be used (deleted, or its
    trustor deleted or disabled, which Keystone refuses the same way).
    """
    try:
        with cloud_errors(f"deleting trust {trust_id} in Keystone"):
            connection = keystone.trust_connection(trust_id)
            connection.session.delete(
                f"{keystone.identity_url}/OS-TRUST/trusts/{trust_id}", timeout=keystone.timeout
            )
    except CloudNotFound:
        return False
    except CloudError as error:
        if _trust_gone(error):
            return False
        raise
    return True


def _trust_gone(error: CloudError) -> bool:
    """Authenticating through a deleted trust is refused (401 or 404)."""
    cause = error.__cause__
    return isinstance(cause, ksa_exc.Unauthorized | ksa_exc.NotFound)


def check_application_credential(
    keystone: KeystoneService, credential_id: str, secret: str, *, project_id: str
) -> str:
    """Authenticate with an application credential; the id of the user it belongs to.

    Refused (``InvalidInput``) unless Keystone accepts it and it acts in ``project_id``:
    a project never hands stackback another project's credential.
    """
    connection = keystone.application_credential_connection(credential_id, secret)
    try:
        with cloud_errors("authenticating with the application credential"):
            acting_project = connection.session.get_project_id()
            user_id = connection.session.get_user_id()
    except CloudError as error:
        if isinstance(error.__cause__, ksa_exc.Unauthorized | ksa_exc.NotFound):
            raise InvalidInput(
                "Keystone refused the application credential (unknown id or wrong secret)",
                field="application_credential",
            ) from None
        raise
    if acting_project != project_id:
        raise InvalidInput(
            "the application credential acts in another project than the caller's",
            field="application_credential",
        )
    return str(user_id)
