"""Who is asking and what they may do: the one access model that every face (API, web) uses.

A face turns a request's credentials into a :class:`Principal` with an
:class:`Authenticator` (``local`` mode: the token in the state directory; ``keystone``
mode: the token validated by Keystone), then asks an :class:`Authorizer` before each
action. Services scope what they read and write by ``Principal.project_id`` unless the
principal may act on every project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from stackback.records import credential_id_of


class Action(StrEnum):
    """Every action a face can ask for; the names of the authorization rules."""

    POLICY_LIST = "stackback:policy:list"
    POLICY_SHOW = "stackback:policy:show"
    POLICY_CREATE = "stackback:policy:create"
    POLICY_UPDATE = "stackback:policy:update"
    POLICY_DELETE = "stackback:policy:delete"
    POLICY_RUN = "stackback:policy:run"
    RUN_LIST = "stackback:run:list"
    RUN_SHOW = "stackback:run:show"
    RUN_DELETE = "stackback:run:delete"
    BACKUP_LIST = "stackback:backup:list"
    BACKUP_SHOW = "stackback:backup:show"
    BACKUP_PROTECT = "stackback:backup:protect"
    BACKUP_DELETE = "stackback:backup:delete"
    BACKUP_RESTORE = "stackback:backup:restore"
    BACKUP_VERIFY = "stackback:backup:verify"
    RESTORE_LIST = "stackback:restore:list"
    RESTORE_SHOW = "stackback:restore:show"
    STATUS_SHOW = "stackback:status:show"
    ALL_PROJECTS = "stackback:all_projects"


@dataclass(frozen=True)
class Principal:
    """The caller of one request, as its credentials prove."""

    user_id: str
    project_id: str | None
    """The project the credentials are scoped to (None: unscoped, e.g. local mode)."""
    roles: frozenset[str] = frozenset()
    user_name: str | None = None
    expires_at: datetime | None = None
    token: str | None = field(default=None, repr=False, compare=False)
    """The caller's token, kept only for the request (to create a trust); never stored."""


class Authenticator(Protocol):
    """Turns a request's token into a :class:`Principal`."""

    def authenticate(self, token: str | None) -> Principal:
        """The principal the token proves; ``Unauthenticated`` when it is missing, wrong
        or expired."""
        ...


class Authorizer(Protocol):
    """Decides whether a principal may take an action on a project's resources."""

    def authorize(self, principal: Principal, action: Action, project_id: str | None) -> None:
        """Return when allowed; raise ``Forbidden`` otherwise. ``project_id`` is the owner
        of the resource acted on (None: a listing scoped to the principal's own project)."""
        ...


def acts_as_its_project(cloud: str | None, default_cloud: str | None) -> bool:
    """Whether acting through ``cloud`` (a backup's or a policy's) acts as its own project:
    the faces' default cloud or a stored credential of the project's user. Another cloud's
    credentials (an operator's, e.g. ``backup now --os-cloud admin``) reach beyond one
    project, so acting through them is for every-project principals only."""
    return cloud is None or cloud == default_cloud or credential_id_of(cloud) is not None
