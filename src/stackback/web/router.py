"""The dashboard as a FastAPI router: ``make_router(...)``, included by the API app at ``/``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import Response

from stackback.ports import Clock, CloudResolver, Store
from stackback.services.access import Authenticator, Authorizer
from stackback.services.container import NewCredential
from stackback.web import backup_pages, login, policy_pages, run_pages
from stackback.web.gateway import Backends
from stackback.web.pages import Web, page_route_class
from stackback.web.session import DEFAULT_SESSION_LIFETIME, Sessions

STYLESHEET = files("stackback.web").joinpath("static", "style.css")


def make_router(
    *,
    store: Store,
    clouds: CloudResolver,
    clock: Clock,
    authenticator: Authenticator,
    authorizer: Authorizer,
    default_cloud: str | None = None,
    secret: bytes | Sequence[bytes] | None = None,
    new_credential: NewCredential | None = None,
    release_credential: Callable[[str | None], object] | None = None,
    session_lifetime: timedelta = DEFAULT_SESSION_LIFETIME,
) -> APIRouter:
    """The dashboard's pages over the services built on ``store``, ``clouds`` and ``clock``.

    A login page takes a token that ``authenticator`` checks (kept sealed in an HttpOnly,
    SameSite=Strict cookie for at most ``session_lifetime``); every page and action asks
    ``authorizer``. New policies use ``default_cloud`` unless the form names another.
    ``secret`` seals the session cookies and signs the forms' CSRF tokens (several: the
    first is used, all open cookies; default: random per process, so replicas behind one
    address need one).
    The routes are left out of the OpenAPI document. ``new_credential`` (keystone mode):
    what a policy created here acts through; ``release_credential`` gives it up.
    """
    sessions = Sessions(authenticator, secret, lifetime=session_lifetime)
    web = Web(
        Backends(store, clouds, clock, new_credential, release_credential, default_cloud),
        authorizer,
        sessions,
        default_cloud,
    )
    router = APIRouter(route_class=page_route_class(web), include_in_schema=False)

    @router.get("/static/style.css", name="web_stylesheet")
    def stylesheet() -> Response:
        return Response(
            STYLESHEET.read_text(encoding="utf-8"),
            media_type="text/css",
            headers={"Cache-Control": "max-age=3600"},
        )

    for pages in (login, policy_pages, run_pages, backup_pages):
        pages.add_routes(router, web)
    return router
