"""Who is calling, which project's resources they see, and what they may do.

Every route depends on :func:`caller` (through :func:`allowed`): the token (``X-Auth-Token``
or ``Authorization: Bearer``) becomes a ``Principal``; ``scope`` is the project whose
resources the request sees (None: every project, for an admin asking ``?all_projects=1``,
or an unscoped admin such as ``local`` mode's). A resource outside the scope is not found
(404, never 403: whether it exists is not told).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from stackback.errors import NotFound
from stackback.services.access import Action, Authenticator, Authorizer, Principal
from stackback.services.container import Services

TOKEN_HEADER = APIKeyHeader(
    name="X-Auth-Token", auto_error=False, scheme_name="token", description="A token."
)
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="The same token.")


@dataclass(frozen=True)
class ApiState:
    """What the routes share: the services and the access model."""

    services: Services
    authenticator: Authenticator
    authorizer: Authorizer
    default_cloud: str | None = None


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.stackback
    return state


def principal(
    request: Request,
    token: str | None = Security(TOKEN_HEADER),
    bearer: HTTPAuthorizationCredentials | None = Security(BEARER),
) -> Principal:
    """The caller the request's token proves (``Unauthenticated``: 401)."""
    value = token if token else (bearer.credentials if bearer is not None else None)
    return api_state(request).authenticator.authenticate(value or None)


@dataclass(frozen=True)
class Caller:
    """One request's principal, the project it sees, and its services."""

    principal: Principal
    scope: str | None
    """The project whose resources the request sees (None: every project)."""
    state: ApiState

    @property
    def services(self) -> Services:
        return self.state.services

    def authorize(self, action: Action, project: str | None) -> None:
        self.state.authorizer.authorize(self.principal, action, project)

    def cloud(self, named: str | None) -> str | None:
        """The cloud a request names, or the API's default one. Naming another cloud is for
        those who act on every project (``stackback:all_projects``): a cloud's credentials
        reach beyond one project."""
        if named is None or named == self.state.default_cloud:
            return self.state.default_cloud
        self.authorize(Action.ALL_PROJECTS, None)
        return named

    def check(self, action: Action, project: str | None, what: str, ref: str) -> None:
        """Refuse ``action`` on a resource of ``project``: not found outside the scope (404),
        ``Forbidden`` (403) when the rules refuse it."""
        if self.scope is not None and project != self.scope:
            raise NotFound(f"no {what} {ref!r}")
        self.authorize(action, project)


def caller(
    request: Request,
    who: Principal = Depends(principal),
    all_projects: bool = Query(
        False, description="Every project's resources (admin only: stackback:all_projects)."
    ),
) -> Caller:
    state = api_state(request)
    if all_projects or who.project_id is None:
        state.authorizer.authorize(who, Action.ALL_PROJECTS, None)
        return Caller(who, None, state)
    return Caller(who, who.project_id, state)


def allowed(action: Action) -> Callable[..., Caller]:
    """A dependency: the caller, refused (403) at once when it may not take ``action`` in
    the project it sees (before its request body is even read)."""

    def dependency(who: Caller = Depends(caller)) -> Caller:
        who.authorize(action, who.scope if who.scope is not None else who.principal.project_id)
        return who

    return dependency
