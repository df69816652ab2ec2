"""``/v1/servers/{server}``: the per-server shortcuts of ``stackback server``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from stackback.api.access import Caller, allowed
from stackback.api.models import PolicyOut, ServerDisabled, ServerEnable, ServerOut
from stackback.errors import NotFound
from stackback.services.access import Action
from stackback.services.policies import PolicyService
from stackback.views import covering_policies, policy_detail

router = APIRouter(prefix="/servers", tags=["servers"])


def _check_shortcut(who: Caller, server: str, action: Action, project: str | None) -> None:
    """The server's shortcut policy in ``project`` (every project's: None), if there is
    one, must be the caller's to change."""
    try:
        existing = who.services.policies.get(PolicyService.shortcut_name(server), project=project)
    except NotFound:
        return
    who.check(action, existing.project, "backup schedule of server", server)


@router.get("/{server}", response_model=ServerOut, summary="Which policies cover a server")
def show_server(
    server: str,
    cloud: str | None = Query(None, max_length=255, description="The cloud to ask."),
    who: Caller = Depends(allowed(Action.POLICY_LIST)),
) -> dict[str, Any]:
    service = who.services.policies
    covered = service.server_coverage(server, who.cloud(cloud), project=who.scope)
    found = covered.server
    rows = covering_policies(covered, service.view_of)
    return {
        "server": server,
        "server_exists": (found is not None) if covered.checked else None,
        "server_id": found.id if found else None,
        "policies": rows,
    }


@router.post("/{server}/enable", response_model=PolicyOut, summary="Back a server up daily")
def enable_server(
    server: str,
    body: ServerEnable | None = None,
    who: Caller = Depends(allowed(Action.POLICY_CREATE)),
) -> dict[str, Any]:
    """A daily policy for the server keeping N backups; enabling again changes it. The
    policy is the caller's project's (other projects have their own for their servers)."""
    body = body or ServerEnable()
    _check_shortcut(who, server, Action.POLICY_UPDATE, who.principal.project_id)
    service = who.services.policies
    policy = service.enable_server(
        server,
        retention=body.retention,
        cron=body.cron,
        timezone=body.timezone,
        cloud=who.cloud(body.cloud),
        project=who.principal.project_id,
    )
    return policy_detail(service.view_of(policy))


@router.post("/{server}/disable", response_model=ServerDisabled, summary="Stop backing a server up")
def disable_server(
    server: str, who: Caller = Depends(allowed(Action.POLICY_UPDATE))
) -> dict[str, Any]:
    """Its backups stay; ``still_backed_up_by`` names the caller's other enabled policies
    covering it."""
    _check_shortcut(who, server, Action.POLICY_UPDATE, who.scope)
    service = who.services.policies
    policy = service.disable_server(server, project=who.scope)
    covered = service.server_coverage(server, policy.cloud, project=who.scope)
    still = [
        p.name for p in (*covered.explicit, *covered.by_selector) if p.enabled and p.id != policy.id
    ]
    return {"policy": policy_detail(service.view_of(policy)), "still_backed_up_by": still}
