"""Who is logged in (a token in an HttpOnly, SameSite=Strict cookie) and the forms' CSRF
tokens (an HMAC of that token, or of a login nonce before logging in)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import Response

from stackback.errors import Forbidden, Unauthenticated
from stackback.services.access import Authenticator, Principal

SESSION_COOKIE = "stackback_session"
LOGIN_COOKIE = "stackback_login"
FLASH_COOKIE = "stackback_flash"
CSRF_FIELD = "csrf_token"
FLASH_MAX = 500


class Sessions:
    """Logs principals in and out, and signs and checks the forms they post."""

    def __init__(self, authenticator: Authenticator, secret: bytes | None = None) -> None:
        self.authenticator = authenticator
        self._secret = secret or secrets.token_bytes(32)

    def principal(self, request: Request) -> Principal:
        """The principal whose token the session cookie holds; ``Unauthenticated`` if none."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise Unauthenticated("log in to use the dashboard")
        return self.authenticator.authenticate(token)

    def log_in(self, request: Request, response: Response, token: str) -> Principal:
        """Check ``token`` and keep it in the session cookie (until it expires)."""
        principal = self.authenticator.authenticate(token)
        max_age = None
        if principal.expires_at is not None:
            max_age = max(0, int((principal.expires_at - datetime.now(UTC)).total_seconds()))
        self._set(request, response, SESSION_COOKIE, token, max_age=max_age)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return principal

    @staticmethod
    def log_out(response: Response) -> None:
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
