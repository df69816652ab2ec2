"""What Keystone says of a user's token: ``GET /v3/auth/tokens`` with ``X-Subject-Token``.

Asked as stackback's service account. Nothing here logs or keeps the token; errors
never quote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keystoneauth1 import access
from keystoneauth1 import exceptions as ksa_exc

from stackback.cloud.openstack.errors import translate
from stackback.cloud.openstack.identity.service import KeystoneService
from stackback.errors import CloudUnavailable, StackbackError, Unauthenticated


@dataclass(frozen=True)
class TokenInfo:
    """Who a valid token proves: its user, project scope, roles (implied ones included)."""

    user_id: str
    user_name: str | None
    project_id: str | None
    roles: frozenset[str]
    expires_at: datetime | None


def validate_token(keystone: KeystoneService, token: str) -> TokenInfo:
    """Ask Keystone who ``token`` proves.

    ``Unauthenticated`` when Keystone does not know it (unknown, revoked, expired);
    ``CloudUnavailable`` (``CloudUnreachable``) when Keystone cannot be asked, answers an
    error or refuses stackback's own service account: none of those is the caller's fault.
    """
    what = f"validating a token with Keystone (service cloud {keystone.cloud!r})"
    try:
        response = keystone.identity_request(
            "GET", "/auth/tokens?nocatalog", headers={"X-Subject-Token": token}
        )
        info = access.create(body=response.json(), auth_token=token)
    except ksa_exc.NotFound:
        raise Unauthenticated("the token is not valid (unknown, revoked or expired)") from None
    except (ksa_exc.Unauthorized, ksa_exc.Forbidden) as error:
        raise CloudUnavailable(
            f"{what}: Keystone refused stackback's service account (HTTP {error.http_status}; "
            f"it needs the service role): {error.message}"
        ) from None
    except (ksa_exc.ClientException, ConnectionError, TimeoutError, ValueError) as error:
        translated: StackbackError = (
            translate(error, what)
            if not isinstance(error, ValueError)
            else CloudUnavailable(f"{what}: Keystone's answer is not a token")
        )
        if isinstance(translated, CloudUnavailable):
            raise translated from None
        raise CloudUnavailable(translated.message) from None
    return TokenInfo(
        user_id=str(info.user_id),
        user_name=str(info.username) if info.username else None,
        project_id=str(info.project_id) if info.project_id else None,
        roles=frozenset(str(name) for name in info.role_names or ()),
        expires_at=info.expires,
    )
