"""``keystone`` mode for the faces: who a token proves (cached), and the credentials a
policy created by a project's user acts through later.

:class:`KeystoneAuthenticator` is the :class:`~stackback.services.access.Authenticator`
of ``keystone`` mode. :class:`PolicyCredentials` turns the caller of a policy creation
into a stored credential (a trust from the caller to stackback's service user, or an
application credential the tenant names) and returns the reference the policy's
``cloud`` holds (``credential:<id>``); deleting the policy gives it up.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stackback.cloud.openstack.identity import (
    CredentialClouds,
    KeystoneService,
    check_application_credential,
    create_trust,
    delete_trust,
    validate_token,
)
from stackback.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    StackbackError,
    Unauthenticated,
)
from stackback.ports import Clock, CredentialStore
from stackback.records import (
    Credential,
    CredentialKind,
    CredentialState,
    credential_id_of,
)
from stackback.sealing import SecretBox
from stackback.services.access import Principal

DEFAULT_MAX_AGE = timedelta(seconds=60)
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_TRUST_ROLES = ("member",)
#: Keystone's tokens are printable ASCII without spaces (Fernet: about 200 characters).
TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{1,8192}")


def token_key(token: str) -> str:
    """The cache key of a token: its SHA-256, so that the cache never holds a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """Validated principals by token hash, bounded (the least recently used goes first).

    An entry lasts until the token expires or ``max_age`` has passed, whichever is
    sooner; principals are kept without their token.
    """

    def __init__(
        self,
        now: Callable[[], datetime],
        *,
        max_age: timedelta = DEFAULT_MAX_AGE,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._now = now
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[datetime, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> Principal | None:
        """The principal the token proved while its entry is fresh (the token put back in)."""
        key = token_key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            until, principal = entry
            if self._now() >= until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        return replace(principal, token=token)

    def put(self, token: str, principal: Principal) -> None:
        now = self._now()
        until = now + self.max_age
        if principal.expires_at is not None:
            until = min(until, principal.expires_at)
        if until <= now or self.max_entries <= 0:
            return
        key = token_key(token)
        with self._lock:
            self._entries[key] = (until, replace(principal, token=None))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class KeystoneAuthenticator:
    """An :class:`~stackback.services.access.Authenticator` asking Keystone, with a cache."""

    def __init__(
        self,
        keystone: KeystoneService,
        clock: Clock,
        *,
        max_age: timedelta = DEFAULT_MAX_AGE,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.keystone = keystone
        self.clock = clock
        self.cache = TokenCache(clock.now, max_age=max_age, max_entries=max_entries)

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a valid token; ``Unauthenticated`` for a missing, malformed,
        unknown, revoked or expired one; ``CloudUnavailable`` when Keystone cannot say
        (503 at the edge)."""
        if not token:
            raise Unauthenticated("no token given (X-Auth-Token)")
        if not TOKEN_SHAPE.fullmatch(token):
            raise Unauthenticated("the token is not a Keystone token")
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        info = validate_token(self.keystone, token)
        if info.expires_at is not None and info.expires_at <= self.clock.now():
            raise Unauthenticated("the token has expired")
        principal = Principal(
            user_id=info.user_id,
            project_id=info.project_id,
            roles=info.roles,
            user_name=info.user_name,
            expires_at=info.expires_at,
            token=token,
        )
        self.cache.put(token, principal)
        return principal


class PolicyCredentials:
    """Creates and gives up the credentials through which policies act later.

    Secrets are sealed with ``box`` before they reach the store; nothing here logs or
    returns a token or a secret.
    """

    def __init__(
        self,
        keystone: KeystoneService,
        store: CredentialStore,
        box: SecretBox,
        clock: Clock,
        *,
        trust_roles: Iterable[str] = DEFAULT_TRUST_ROLES,
    ) -> None:
        self.keystone = keystone
        self.store = store
        self.box = box
        self.clock = clock
        self.trust_roles = tuple(trust_roles)

    def clouds(self) -> CredentialClouds:
        """The ``CloudProvider`` hook that opens ``credential:<id>`` clouds."""
        return CredentialClouds(self.keystone, self.store, self.box)

    def for_new_policy(
        self,
        principal: Principal,
        *,
        application_credential_id: str | None = None,
        application_credential_secret: str | None = None,
    ) -> str:
        """Store what a new policy of ``principal`` will act through; its cloud reference.

        With an application credential (id and secret): checked with Keystone, which must
        place it in the principal's project. Without: a trust from the principal (its
        token, used once) to stackback's service user, in the principal's project, with
        the trust roles (the principal must hold each), impersonating the principal.
        """
        project_id = principal.project_id
        if project_id is None:
            raise Forbidden("acting later for a project needs a token scoped to that project")
        if (application_credential_id is None) != (application_credential_secret is None):
            raise InvalidInput(
                "an application credential needs both its id and its secret",
                field="application_credential",
            )
        if application_credential_id is not None and application_credential_secret is not None:
            owner = check_application_credential(
                self.keystone,
                application_credential_id,
                application_credential_secret,
                project_id=project_id,
            )
            credential = Credential(
                id=str(uuid.uuid4()),
                kind=CredentialKind.APPLICATION_CREDENTIAL,
                project_id=project_id,
                user_id=owner,
                keystone_id=application_credential_id,
                created_at=self.clock.now(),
                sealed_secret=self.box.seal(application_credential_secret),
            )
        else:
            credential = self._trust(principal, project_id)
        return self.store.add_credential(credential).cloud_ref

    def _trust(self, principal: Principal, project_id: str) -> Credential:
        if not principal.token:
            raise Unauthenticated("creating a trust needs the caller's token")
        missing = sorted(set(self.trust_roles) - principal.roles)
        if missing:
            raise Forbidden(
                f"acting later for project {project_id} needs the role(s) {', '.join(missing)}"
            )
        trust_id = create_trust(
            self.keystone,
            principal.token,
            trustor_user_id=principal.user_id,
            project_id=project_id,
            roles=self.trust_roles,
        )
        return Credential(
            id=str(uuid.uuid4()),
            kind=CredentialKind.TRUST,
            project_id=project_id,
            user_id=principal.user_id,
            keystone_id=trust_id,
            created_at=self.clock.now(),
        )

    def release(self, cloud: str | None) -> Credential | None:
        """Give up the credential ``cloud`` names once nothing needs it (recorded).

        Called when a policy naming it is deleted and when a backup made through it is
        gone. While a policy names it: unchanged. While only backups not yet deleted (or
        unfinished runs, or restores in progress) name it: ``retired``, still opening its
        cloud so they can be rotated, deleted or restored. Once nothing does: revoked (see
        :meth:`revoke`). None when ``cloud`` names no stored credential.
        """
        credential_id = credential_id_of(cloud)
        if credential_id is None:
            return None
        try:
            credential, usage = self.store.retire_credential(
                credential_id,
                now=self.clock.now(),
                detail="retired: no policy acts through it; kept for what was made through it",
            )
        except NotFound:
            return None
        if not credential.state.opens or usage.policies:
            return credential
        return self._revoke(credential_id, force=False) or self.store.get_credential(credential_id)

    def revoke(self, credential_id: str, *, force: bool = False) -> tuple[Credential, str]:
        """The operator's revocation: ``Conflict`` while a policy names the credential, or
        (without ``force``) while backups, runs or restores need it. Returns the credential
        as recorded and what was left unmanageable by it ("nothing" unless forced)."""
        credential = self.store.get_credential(credential_id)
        if credential.state is CredentialState.REVOKED and not credential.interrupted:
            return credential, "nothing"
        usage = self.store.credential_usage(credential_id)
        if usage.policies:
            names = ", ".join(usage.policies)
            raise Conflict(
                f"credential {credential_id} is used by policy {names}: delete or change "
                "the policy instead"
            )
        if usage.needed and not force:
            raise Conflict(
                f"credential {credential_id} is still needed by {usage.describe()}: they "
                "could no longer be rotated, deleted or restored through it (use --force)"
            )
        revoked = self._revoke(credential_id, force=force)
        if revoked is None:  # something came to need it meanwhile
            raise Conflict(f"credential {credential_id} is needed again: not revoked")
        return revoked, usage.describe()

    def _revoke(self, credential_id: str, *, force: bool) -> Credential | None:
        """Record the credential revoked (if nothing needs it, or ``force``), then tell
        Keystone: a trust is deleted there (``revoke-failed`` with the reason when it
        cannot be); an application credential is the tenant's: only its sealed secret is
        erased. None when the store refused (still needed, or already revoked)."""
        now = self.clock.now()
        credential, _usage, begun = self.store.begin_revocation(credential_id, now=now, force=force)
        if not begun:
            return None
        if credential.kind is CredentialKind.APPLICATION_CREDENTIAL:
            detail = "its secret erased (the application credential itself is the tenant's)"
            return self.store.end_credential(
                credential_id, state=CredentialState.REVOKED, now=now, detail=detail
            )
        try:
            deleted = delete_trust(self.keystone, credential.keystone_id)
        except StackbackError as error:
            return self.store.end_credential(
                credential_id,
                state=CredentialState.REVOKE_FAILED,
                now=now,
                detail=f"trust {credential.keystone_id} could not be deleted: {error.message}",
            )
        return self.store.end_credential(
            credential_id,
            state=CredentialState.REVOKED,
            now=now,
            detail=f"trust {credential.keystone_id} "
            + ("deleted in Keystone" if deleted else "already unusable (deleted in Keystone)"),
        )


class CredentialSweep:
    """The engine's periodic task that revokes retired credentials nothing needs any more
    (those a deletion's release missed: a process stopped between the two, say), and takes
    up revocations Keystone refused or a stopped process left half done."""

    name = "credentials"

    def __init__(
        self, credentials: PolicyCredentials, *, interval: timedelta = timedelta(hours=1)
    ) -> None:
        self.credentials = credentials
        self.interval = interval

    def run(self, now: datetime) -> None:
        for credential, usage in self.credentials.store.list_credentials():
            if credential.state is CredentialState.RETIRED and not usage.needed:
                self.credentials.release(credential.cloud_ref)
            elif credential.interrupted or credential.state is CredentialState.REVOKE_FAILED:
                with contextlib.suppress(StackbackError):  # recorded; tried again next time
                    self.credentials.revoke(credential.id)


def credentials_for_new_policy(
    principal: Principal,
    credentials: PolicyCredentials,
    *,
    application_credential_id: str | None = None,
    application_credential_secret: str | None = None,
) -> str:
    """The ``cloud`` a policy created by ``principal`` gets: ``credential:<id>`` of a new
    trust, or of the application credential named (see :meth:`PolicyCredentials.for_new_policy`)."""
    return credentials.for_new_policy(
        principal,
        application_credential_id=application_credential_id,
        application_credential_secret=application_credential_secret,
    )


if TYPE_CHECKING:  # the type checker proves the authenticator honours the faces' contract
    from stackback.engine.loop import Periodic
    from stackback.services.access import Authenticator

    def _sweeps(sweep: CredentialSweep) -> Periodic:
        return sweep

    def _authenticates(authenticator: KeystoneAuthenticator) -> Authenticator:
        return authenticator
