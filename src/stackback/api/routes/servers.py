"""``/v1/servers/{server}``: the per-server shortcuts of ``stackback server``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from stackback.api.access import Caller, allowed
from stackback.api.models import PolicyOut, ServerDisabled, ServerEnable, ServerOut
from stackback.errors import NotFound
from stackback.policy import Policy
from stackback.services.access import Action
from stackback.services.policies import PolicyService
from stackback.views import covering_policies, policy_detail

router = APIRouter(prefix="/servers", tags=["servers"])


def _check_shortcut(who: Caller, server: str, action: Action, project: str | None) -> Policy | None:
    """The server's shortcut policy in ``project`` (every project's: None), if there is
    one; it must be the caller's to change."""
    try:
        existing = who.services.policies.get(PolicyService.shortcut_name(server), project=project)
    except NotFound:
        return None
    who.check(action, existing.project, "backup schedule of server", server)
    return existing


def _shortcut_cloud(
    who: Caller, existing: Policy | None, named: str | None
) -> tuple[str | None, str | None]:
    """The cloud the shortcut policy acts through, and the credential made for it (keystone
    mode, on the API's cloud: a new policy gets a trust from the caller, through which the
    server is looked up; an existing one keeps its own)."""
    cloud = who.cloud(named)
    if who.services.new_credential is None or cloud != who.state.default_cloud:
        return cloud, None
    if existing is not None:
        return existing.cloud, None
    credential = who.services.new_credential(who.principal, None, None)
    return credential, credential


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
    existing = _check_shortcut(who, server, Action.POLICY_UPDATE, who.principal.project_id)
    cloud, credential = _shortcut_cloud(who, existing, body.cloud)
    service = who.services.policies
    try:
        policy = service.enable_server(
            server,
            retention=body.retention,
            cron=body.cron,
            timezone=body.timezone,
            cloud=cloud,
            project=who.principal.project_id,
        )
    except Exception:
        if credential is not None and who.services.release_credential is not None:
            who.services.release_credential(credential)
        raise
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
