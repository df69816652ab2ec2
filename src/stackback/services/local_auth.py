"""``local`` mode: one operator on one machine, with a token kept in the state directory."""

from __future__ import annotations

import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path

from stackback.errors import Unauthenticated
from stackback.services.access import Principal

TOKEN_FILE = "api-token"
LOCAL_USER = "local-operator"


WEB_SECRET_FILE = "web-secret"
WEB_SESSION_LIFETIME = timedelta(hours=8)
"""The longest a dashboard login lasts unless the operator says otherwise."""


def ensure_local_token(state_dir: Path) -> tuple[str, bool]:
    """The local token (created, 0600, if there is none yet); True when it was just created."""
    return ensure_secret_file(state_dir / TOKEN_FILE)


def ensure_secret_file(path: Path) -> tuple[str, bool]:
    """The random secret kept in ``path`` (created, 0600, with its directory, if there is
    none yet: processes sharing the file share the secret); True when it was just created."""
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use that one
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token, True


class LocalAuthenticator:
    """An ``Authenticator`` that knows one token and proves an admin with no project."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the local token must not be empty")
        self._token = token

    def authenticate(self, token: str | None) -> Principal:
        if token is None:
            raise Unauthenticated("no token: send X-Auth-Token (stackback's local token)")
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise Unauthenticated("the token is not this stackback's local token")
        return Principal(user_id=LOCAL_USER, project_id=None, roles=frozenset({"admin"}))
