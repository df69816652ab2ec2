"""The API application: ``create_app`` wires the services and the access model into FastAPI.

Everything is under ``/v1`` (and ``/openapi.json``, ``/docs``); the dashboard's pages are at
``/`` (the same services, authenticator and authorizer; left out of the OpenAPI document).
``/metrics`` (Prometheus) is served when a registry is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stackback.api.access import ApiState
from stackback.api.errors import DEFAULT_MAX_BODY_BYTES, BodyLimit, install_error_handlers
from stackback.api.models import ErrorBody
from stackback.api.routes import backups, policies, restores, runs, servers, status
from stackback.services.access import Authenticator, Authorizer
from stackback.services.container import Services
from stackback.web.router import make_router
from stackback.web.session import DEFAULT_SESSION_LIFETIME

API_PREFIX = "/v1"
ERRORS: dict[int | str, dict[str, object]] = {
    status_code: {"model": ErrorBody, "description": description}
    for status_code, description in (
        (400, "Bad input (malformed JSON, a value stackback cannot accept)"),
        (401, "No token, or a token that proves nobody"),
        (403, "The caller's role does not allow it"),
        (404, "No such resource in the caller's project"),
        (409, "In conflict with the current state"),
        (413, "The request body is too large"),
        (422, "The request does not match its schema"),
    )
}


def create_app(
    services: Services,
    authenticator: Authenticator,
    authorizer: Authorizer,
    *,
    default_cloud: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics_registry: CollectorRegistry | None = None,
    dashboard: bool = True,
    web_secret: bytes | Sequence[bytes] | None = None,
    web_session_lifetime: timedelta = DEFAULT_SESSION_LIFETIME,
) -> FastAPI:
    """The API over ``services``; each request's token is proven by ``authenticator`` and
    each action decided by ``authorizer``. ``default_cloud``: the cloud a policy or server
    shortcut gets when its request names none. ``dashboard``: serve the pages at ``/`` too,
    their session cookies sealed and forms' CSRF tokens signed with ``web_secret`` (shared
    by replicas; several: the first is used, all open cookies; default: random per process),
    a session lasting at most ``web_session_lifetime``."""
    app = FastAPI(
        title="stackback",
        version="1",
        description="Scheduled, consistent, rotated and verified backups for OpenStack.",
        responses=ERRORS,
    )
    app.state.stackback = ApiState(services, authenticator, authorizer, default_cloud)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    v1 = APIRouter(prefix=API_PREFIX)
    for module in (policies, servers, runs, backups, restores, status):
        v1.include_router(module.router)
    app.include_router(v1)
    if dashboard:
        app.include_router(
            make_router(
                store=services.store,
                clouds=services.clouds,
                clock=services.clock,
                authenticator=authenticator,
                authorizer=authorizer,
                default_cloud=default_cloud,
                secret=web_secret,
                new_credential=services.new_credential,
                release_credential=services.release_credential,
                session_lifetime=web_session_lifetime,
            )
        )
    if metrics_registry is not None:
        registry = metrics_registry

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
