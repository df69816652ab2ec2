"""Who is logged in and the forms' CSRF tokens.

The session cookie (HttpOnly, SameSite=Strict) holds the user's token sealed (Fernet, a
key derived from the dashboard's secret) together with the time the session ends: the
earlier of the token's expiry and the session lifetime. The token never travels in clear
after the login form, and a cookie past its end, altered, or sealed under another secret
proves nobody. CSRF tokens are an HMAC of the session cookie (or of a login nonce before
logging in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from urllib.parse import quote, unquote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

from stackback.errors import Forbidden, Unauthenticated
from stackback.sealing import SecretBox, SecretUnreadable
from stackback.services.access import Authenticator, Principal
from stackback.services.local_auth import WEB_SESSION_LIFETIME

SESSION_COOKIE = "stackback_session"
LOGIN_COOKIE = "stackback_login"
FLASH_COOKIE = "stackback_flash"
CSRF_FIELD = "csrf_token"
FLASH_MAX = 500
DEFAULT_SESSION_LIFETIME = WEB_SESSION_LIFETIME
SESSION_KEY_INFO = b"stackback dashboard session cookie"


def session_key(secret: bytes) -> bytes:
    """The Fernet key that seals session cookies, derived from the dashboard's secret (apart
    from the CSRF HMAC that uses the secret itself)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SESSION_KEY_INFO)
    return base64.urlsafe_b64encode(derived.derive(secret))


class Sessions:
    """Logs principals in and out, and signs and checks the forms they post.

    ``secret``: the dashboard's secret, or several (the first seals and signs; every one
    opens cookies, so a new secret put first rotates without logging everyone out).
    ``lifetime``: the longest a session lasts. ``now``: seconds since the epoch."""

    def __init__(
        self,
        authenticator: Authenticator,
        secret: bytes | Sequence[bytes] | None = None,
        *,
        lifetime: timedelta = DEFAULT_SESSION_LIFETIME,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.authenticator = authenticator
        given = [secret] if isinstance(secret, bytes) else list(secret or ())
        keys = [key for key in given if key] or [secrets.token_bytes(32)]
        self._secret = keys[0]
        self._box = SecretBox([session_key(key) for key in keys])
        self._lifetime = max(1, int(lifetime.total_seconds()))
        self._now = now

    def principal(self, request: Request) -> Principal:
        """The principal whose token the session cookie holds; ``Unauthenticated`` if none."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise Unauthenticated("log in to use the dashboard")
        return self.authenticator.authenticate(self._open(cookie))

    def log_in(self, request: Request, response: Response, token: str) -> Principal:
        """Check ``token`` and keep it, sealed, in the session cookie until the session ends
        (the token's expiry or the session lifetime, whichever comes first)."""
        principal = self.authenticator.authenticate(token)
        now = int(self._now())
        ends = now + self._lifetime
        if principal.expires_at is not None:
            ends = min(ends, int(principal.expires_at.timestamp()))
        sealed = self.seal(token, ends=ends, at=now)
        self._set(request, response, SESSION_COOKIE, sealed, max_age=max(0, ends - now))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return principal

    def seal(self, token: str, *, ends: int, at: int) -> str:
        """A session cookie's value: ``token`` sealed at ``at``, good until ``ends``."""
        payload = json.dumps({"token": token, "ends": ends}, separators=(",", ":"))
        return self._box.seal(payload, at=at)

    def _open(self, cookie: str) -> str:
        """The token sealed in ``cookie``; ``Unauthenticated`` if it is not one of this
        dashboard's, was altered, or its session has ended."""
        now = int(self._now())
        try:
            payload = json.loads(self._box.open(cookie, ttl=self._lifetime, at=now))
        except (SecretUnreadable, ValueError):
            raise Unauthenticated("the session has ended: log in again") from None
        if not isinstance(payload, dict):
            raise Unauthenticated("the session has ended: log in again")
        token, ends = payload.get("token"), payload.get("ends")
        if not isinstance(token, str) or not isinstance(ends, int) or ends <= now:
            raise Unauthenticated("the session has ended: log in again")
        return token

    @staticmethod
    def log_out(response: Response) -> None:
        """Clear the session cookie. A copy of it taken before stays good until its session
        ends: sealed cookies are not recorded anywhere, so they cannot be revoked."""
        response.delete_cookie(SESSION_COOKIE, path="/")

    # -- CSRF ------------------------------------------------------------------------------

    def csrf_token(self, request: Request) -> str:
        """The token every form of this session carries (empty before logging in)."""
        token = request.cookies.get(SESSION_COOKIE)
        return self._sign("session", token) if token else ""

    def check_csrf(self, request: Request, form: Mapping[str, object]) -> None:
        """``Forbidden`` unless the form carries this session's token."""
        if not self._matches(form.get(CSRF_FIELD), self.csrf_token(request)):
            raise Forbidden("the form did not come from this dashboard session: reload the page")

    def login_form(self, request: Request) -> tuple[str, str]:
        """(nonce, token) of a login form: the token is posted, the nonce kept in a cookie
        (:meth:`keep_login_nonce`), so that only a form this dashboard served can log in."""
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        return nonce, self._sign("login", nonce)

    def keep_login_nonce(self, request: Request, response: Response, nonce: str) -> None:
        self._set(request, response, LOGIN_COOKIE, nonce, max_age=3600)

    def check_login_csrf(self, request: Request, form: Mapping[str, object]) -> None:
        nonce = request.cookies.get(LOGIN_COOKIE)
        expected = self._sign("login", nonce) if nonce else ""
        if not self._matches(form.get(CSRF_FIELD), expected):
            raise Forbidden("the login form has expired: reload the page and log in again")

    # -- flash messages ----------------------------------------------------------------

    @staticmethod
    def flash(request: Request, response: Response, message: str) -> None:
        """A one-line message the next page shows (what an action did)."""
        Sessions._set(request, response, FLASH_COOKIE, quote(message[:FLASH_MAX]), max_age=60)

    @staticmethod
    def read_flash(request: Request) -> str | None:
        message = request.cookies.get(FLASH_COOKIE)
        return unquote(message) if message else None

    @staticmethod
    def clear_flash(response: Response) -> None:
        response.delete_cookie(FLASH_COOKIE, path="/")

    # -- internals ---------------------------------------------------------------------

    def _sign(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256)
        return digest.hexdigest()

    @staticmethod
    def _matches(given: object, expected: str) -> bool:
        return (
            bool(expected)
            and isinstance(given, str)
            and hmac.compare_digest(given.encode(), expected.encode())
        )

    @staticmethod
    def _set(
        request: Request, response: Response, name: str, value: str, *, max_age: int | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
