"""What every page shares: templates, the logged-in gateway, redirects, and error pages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import Depends
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from stackback.errors import (
    CloudError,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    NotMigrated,
    StackbackError,
    Unauthenticated,
)
from stackback.services.access import Action, Authorizer
from stackback.web.gateway import Backends, Gateway
from stackback.web.session import CSRF_FIELD, Sessions

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
"""The largest form a page accepts (a policy form is a few hundred bytes)."""

PAGE_HEADERS = {
    # no other site may frame the pages (clickjacking their buttons) or post their forms
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Sent with every page and redirect, unless the route set its own (the stylesheet's caching)."""
STATUS_OF: tuple[tuple[type[StackbackError], int], ...] = (
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (CloudError, 502),
    (NotMigrated, 503),
    (DatabaseUnavailable, 503),
)
TITLE_OF = {
    400: "Bad input",
    401: "Not logged in",
    403: "Not allowed",
    404: "Not found",
    409: "Refused",
    413: "Too large",
    502: "The cloud did not answer as expected",
    503: "Unavailable",
}


async def read_posted_form(request: Request) -> FormData:
    """The posted form (no files), refused above ``MAX_FORM_BYTES``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise HTTPException(413, f"a form of at most {MAX_FORM_BYTES} bytes is accepted")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, f"a form of at most {MAX_FORM_BYTES} bytes is accepted")
    return await request.form(max_files=0, max_fields=200)


PostedForm = Annotated[FormData, Depends(read_posted_form)]


def when(value: datetime | None) -> str:
    """A time in its own zone, e.g. ``2026-03-01 02:00 CET``; UTC times say UTC."""
    if value is None:
        return "—"
    zone = value.tzname() or "UTC"
    return f"{value:%Y-%m-%d %H:%M} {zone}"


def span(value: timedelta | None) -> str:
    """A duration for people: ``3d 4h``, ``2h 5m``, ``40s``."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    if minutes:
        return f"{sign}{minutes}m {seconds}s"
    return f"{sign}{seconds}s"


def short(value: str | None) -> str:
    return (value or "")[:8]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stackback.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, span=span, short=short)
    return env


@dataclass
class Web:
    """The dashboard's shared parts, built once by ``make_router``."""

    backends: Backends
    authorizer: Authorizer
    sessions: Sessions
    default_cloud: str | None

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(env=_environment())

    def gateway(self, request: Request) -> Gateway:
        """The services on behalf of the logged-in principal (``Unauthenticated`` if none)."""
        return Gateway(self.backends, self.authorizer, self.sessions.principal(request))

    def posting(self, request: Request, form: FormData) -> Gateway:
        """As :meth:`gateway`, for a form post: it must carry the session's CSRF token."""
        gateway = self.gateway(request)
        self.sessions.check_csrf(request, form)
        return gateway

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        gateway: Gateway | None = None,
        status: int = 200,
    ) -> Response:
        """A page; the layout shows who is logged in and the last action's message."""
        flash = self.sessions.read_flash(request)
        page = {
            "principal": gateway.principal if gateway else None,
            "may": gateway.may if gateway else (lambda *_: False),
            "Action": Action,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.sessions.csrf_token(request) if gateway else "",
            "flash": flash,
            **context,
        }
        response = self.templates.TemplateResponse(request, template, page, status_code=status)
        if flash is not None:
            self.sessions.clear_flash(response)
        return response

    def redirect(
        self, request: Request, route: str, *, flash: str | None = None, **params: str
    ) -> Response:
        """Post-redirect-get: 303 to the page ``route`` names, with a one-line message."""
        response = RedirectResponse(str(request.url_for(route, **params)), status_code=303)
        if flash:
            self.sessions.flash(request, response, flash)
        return response

    def _quietly(self, request: Request, status: int) -> Gateway | None:
        """The logged-in gateway for an error page's header, if there is one."""
        if status == 401:
            return None
        try:
            return self.gateway(request)
        except StackbackError:
            return None

    def error_page(self, request: Request, error: Exception) -> Response:
        """An error as a page: its message and error id, never a traceback."""
        if isinstance(error, HTTPException):
            status, message, error_id = error.status_code, str(error.detail), None
        elif isinstance(error, StackbackError):
            status = next((code for kind, code in STATUS_OF if isinstance(error, kind)), 500)
            message, error_id = error.message, error.error_id
            if status >= 500:
                log.warning(
                    "dashboard %s %s: %s (error id %s)",
                    request.method,
                    request.url.path,
                    message,
                    error_id,
                )
        else:
            wrapped = StackbackError("internal error: the dashboard could not show this page")
            log.exception(
                "dashboard %s %s failed (error id %s)",
                request.method,
                request.url.path,
                wrapped.error_id,
            )
            status, message, error_id = 500, wrapped.message, wrapped.error_id
        if status == 401 and request.method == "GET":
            query = urlencode({"next": request.url.path})
            return RedirectResponse(f"{request.url_for('web_login')}?{query}", status_code=303)
        context = {
            "title": TITLE_OF.get(status, "Error"),
            "message": message,
            "error_id": error_id,
            "status": status,
        }
        response = self.render(
            request, "error.html", context, status=status, gateway=self._quietly(request, status)
        )
        if status == 401:
            self.sessions.log_out(response)
        return response


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def page_route_class(web: Web) -> type[APIRoute]:
    """Routes whose every error becomes a page (the API's JSON errors are not for people)."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Endpoint:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    response = await handler(request)
                except Exception as error:
                    response = await run_in_threadpool(web.error_page, request, error)
                for name, value in PAGE_HEADERS.items():
                    response.headers.setdefault(name, value)
                return response

            return guarded

    return PageRoute
