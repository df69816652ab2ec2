"""The session cookie carries the token sealed, never in clear, and only for a while."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stackback.errors import Unauthenticated
from stackback.services.access import Authenticator, Principal
from stackback.services.local_auth import LocalAuthenticator
from stackback.web.router import make_router
from stackback.web.session import SESSION_COOKIE, Sessions
from tests.web.conftest import RecordingAuthorizer, World, csrf_of

SECRET = b"the-dashboard-secret"
LOCAL_TOKEN = "Zq3xL0cal-T0ken_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
KEYSTONE_TOKEN = (
    "gAAAAABnKeyst0neF3rnetT0ken-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    "0123456789_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
)
LIFETIME = timedelta(hours=8)


class FakeKeystone:
    """One Keystone-like token for a member of alpha, expiring at a given time."""

    def __init__(self, expires_at: datetime) -> None:
        self.expires_at = expires_at

    def authenticate(self, token: str | None) -> Principal:
        if token != KEYSTONE_TOKEN:
            raise Unauthenticated("the token is not valid")
        return Principal(
            "u-kim", "p-alpha", frozenset({"member"}), user_name="kim", expires_at=self.expires_at
        )


def client_for(
    world: World,
    authenticator: Authenticator,
    *,
    secret: bytes | list[bytes] = SECRET,
    lifetime: timedelta = LIFETIME,
) -> TestClient:
    app = FastAPI()
    app.include_router(
        make_router(
            store=world.store,
            clouds=world.clouds,
            clock=world.clock,
            authenticator=authenticator,
            authorizer=RecordingAuthorizer(),
            default_cloud=world.spec,
            secret=secret,
            session_lifetime=lifetime,
        )
    )
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def local(world: World) -> Iterator[TestClient]:
    with client_for(world, LocalAuthenticator(LOCAL_TOKEN)) as client:
        yield client


def log_in(client: TestClient, token: str) -> str:
    """Log in (as a fresh browser); the Set-Cookie header of the session cookie."""
    client.cookies.clear()
    page = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf_token": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    return next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")
    )


def pieces(token: str, size: int = 8) -> set[str]:
    return {token[i : i + size] for i in range(len(token) - size + 1)}


def max_age(set_cookie: str) -> int:
    attributes = dict(
        part.strip().partition("=")[::2] for part in set_cookie.split(";")[1:] if "=" in part
    )
    return int(attributes["Max-Age"])


def refused(client: TestClient, cookie: str) -> bool:
    """Whether a page sent with ``cookie`` as the session goes to the login page."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    response = client.get("/policies")
    if response.status_code == 200:
        return False
    assert response.status_code == 303
    assert "/login" in response.headers["location"]
    return True


def sealed(token: str, *, at: float, ends: float, secret: bytes = SECRET) -> str:
    """A session cookie as a dashboard with ``secret`` would have made it at ``at``."""
    sessions = Sessions(LocalAuthenticator(LOCAL_TOKEN), secret)
    return sessions.seal(token, ends=int(ends), at=int(at))


def test_a_local_login_s_cookie_holds_no_piece_of_the_token(local: TestClient) -> None:
    set_cookie = log_in(local, LOCAL_TOKEN)
    assert not any(piece in set_cookie for piece in pieces(LOCAL_TOKEN))
    assert max_age(set_cookie) == int(LIFETIME.total_seconds())
    assert local.get("/policies").status_code == 200


def test_a_keystone_login_s_cookie_holds_no_piece_of_the_token_and_ends_with_it(
    world: World,
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    with client_for(world, FakeKeystone(expires)) as client:
        set_cookie = log_in(client, KEYSTONE_TOKEN)
        assert not any(piece in set_cookie for piece in pieces(KEYSTONE_TOKEN))
        assert 3500 < max_age(set_cookie) <= 3600
        assert client.get("/policies").status_code == 200


def test_a_login_lasts_no_longer_than_the_setting(world: World) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    with client_for(world, FakeKeystone(expires), lifetime=timedelta(hours=2)) as client:
        assert max_age(log_in(client, KEYSTONE_TOKEN)) == 7200


def test_the_token_in_clear_is_no_session(local: TestClient) -> None:
    assert refused(local, LOCAL_TOKEN)


def test_a_tampered_cookie_is_refused(local: TestClient) -> None:
    log_in(local, LOCAL_TOKEN)
    cookie = local.cookies[SESSION_COOKIE]
    assert not refused(local, cookie)
    middle = len(cookie) // 2
    flipped = "A" if cookie[middle] != "A" else "B"
    assert refused(local, cookie[:middle] + flipped + cookie[middle + 1 :])
    assert refused(local, cookie[:-4])
    assert refused(local, "gAAAAA.not-a-fernet-token")


def test_a_cookie_sealed_under_another_secret_is_refused(local: TestClient) -> None:
    now = time.time()
    assert not refused(local, sealed(LOCAL_TOKEN, at=now, ends=now + 60))
    assert refused(local, sealed(LOCAL_TOKEN, at=now, ends=now + 60, secret=b"another"))


def test_a_cookie_whose_session_has_ended_is_refused(local: TestClient) -> None:
    now = time.time()
    assert refused(local, sealed(LOCAL_TOKEN, at=now - 120, ends=now - 1))


def test_a_cookie_older_than_the_lifetime_is_refused(world: World) -> None:
    """Even one sealed when sessions lasted longer (the setting was lowered since)."""
    now = time.time()
    old = sealed(LOCAL_TOKEN, at=now - 7200, ends=now + 3600 * 6)
    with client_for(world, LocalAuthenticator(LOCAL_TOKEN), lifetime=timedelta(hours=3)) as c:
        assert not refused(c, old)
    with client_for(world, LocalAuthenticator(LOCAL_TOKEN), lifetime=timedelta(hours=1)) as c:
        assert refused(c, old)


def test_a_new_secret_put_first_keeps_the_sessions_of_the_old_one(world: World) -> None:
    now = time.time()
    old = sealed(LOCAL_TOKEN, at=now, ends=now + 60)
    authenticator = LocalAuthenticator(LOCAL_TOKEN)
    with client_for(world, authenticator, secret=[b"new-secret", SECRET]) as client:
        assert not refused(client, old)
        set_cookie = log_in(client, LOCAL_TOKEN)
        fresh = client.cookies[SESSION_COOKIE]
        assert fresh in set_cookie
    with client_for(world, authenticator, secret=[SECRET]) as client:
        assert refused(client, fresh)


def test_logout_clears_the_cookie(local: TestClient) -> None:
    log_in(local, LOCAL_TOKEN)
    page = local.get("/policies")
    response = local.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    cleared = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")
    )
    assert max_age(cleared) == 0
    assert local.get("/policies").status_code == 303
