"""``/v1/policies``: create, list, show, change, delete, enable/disable, run now, preview."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from stackback.api.access import Caller, allowed
from stackback.api.models import (
    Page,
    PolicyCreate,
    PolicyFields,
    PolicyOut,
    PolicyUpdate,
    PreviewOut,
    RunOut,
)
from stackback.api.routes.common import Limit, Marker, page
from stackback.errors import InvalidInput
from stackback.policy import Policy
from stackback.retention import RetentionPolicy
from stackback.services.access import Action
from stackback.services.policies import PolicySpec
from stackback.views import policy_detail, policy_summary, preview_view, run_summary

router = APIRouter(prefix="/policies", tags=["policies"])


def visible_policy(who: Caller, action: Action, ref: str) -> Policy:
    """The policy ``ref`` (id or name) if the caller sees it and may take ``action`` on it."""
    policy = who.services.policies.get(ref, project=who.scope)
    who.check(action, policy.project, "policy", ref)
    return policy


def _spec(body: PolicyFields, **extra: Any) -> PolicySpec:
    given = body.model_fields_set
    retention = None
    if body.retention is not None:
        retention = RetentionPolicy.from_dict(body.retention.model_dump(exclude_none=True))
    verify: dict[str, str | None] = {}
    if "verify" in given:
        settings = body.verify
        verify = {
            "verify_cron": settings.cron if settings else "",
            "verify_flavor": (settings.flavor or "") if settings else None,
            "verify_network": (settings.network or "") if settings else None,
            "verify_pick": settings.pick if settings else None,
        }
    return PolicySpec(
        targets=tuple(body.targets) if body.targets is not None else None,
        selector=body.selector,
        kind=body.kind,
        schedules=tuple(body.schedules) if body.schedules is not None else None,
        timezone=body.timezone,
        window_minutes=body.window_minutes,
        retention=retention,
        keep_all=body.keep_all,
        enabled=body.enabled,
        cloud=body.cloud,
        label=body.label,
        consistency=body.consistency,
        fallback=body.fallback,
        max_pause_seconds=body.max_pause_seconds,
        orphans=body.orphans,
        volumes=tuple(body.volumes) if body.volumes is not None else None,
        volume_selector=body.volume_selector,
        full_every=body.full_every,
        full_cron=body.full_cron,
        verify_cron=verify.get("verify_cron"),
        verify_flavor=verify.get("verify_flavor"),
        verify_network=verify.get("verify_network"),
        verify_pick=verify.get("verify_pick"),
        **extra,
    )


@router.get("", response_model=Page[PolicyOut], summary="List policies (by name)")
def list_policies(
    limit: Limit = 50, marker: Marker = None, who: Caller = Depends(allowed(Action.POLICY_LIST))
) -> dict[str, Any]:
    service = who.services.policies
    views = service.views(project=who.scope, limit=limit + 1, marker=marker)
    return page(views, limit, policy_summary)


@router.post("", response_model=PolicyOut, status_code=201, summary="Create a policy")
def create_policy(
    body: PolicyCreate, who: Caller = Depends(allowed(Action.POLICY_CREATE))
) -> dict[str, Any]:
    """The policy belongs to the caller's project. Servers it names must exist in its cloud
    (the API's; naming another is for admins of every project). In keystone mode it acts
    later through a trust from the caller, or the application credential the body names."""
    service = who.services.policies
    cloud = who.cloud(body.cloud)
    credential = _new_credential(who, body, cloud)
    body = body.model_copy(update={"cloud": credential or cloud, "application_credential": None})
    spec = _spec(body, name=body.name, project=who.principal.project_id)
    try:
        created = service.create(spec)
    except Exception:
        if credential is not None and who.services.release_credential is not None:
            who.services.release_credential(credential)
        raise
    return policy_detail(service.view_of(created))


def _new_credential(who: Caller, body: PolicyCreate, cloud: str | None) -> str | None:
    """keystone mode, on the API's own cloud: the stored credential the new policy acts
    through (``credential:<id>``); None otherwise (another cloud is acted on as named)."""
    new_credential = who.services.new_credential
    given = body.application_credential
    if new_credential is None or cloud != who.state.default_cloud:
        if given is not None:
            raise InvalidInput(
                "an application credential is only taken in keystone mode, on the API's cloud",
                field="application_credential",
            )
        return None
    if given is None:
        return new_credential(who.principal, None, None)
    return new_credential(who.principal, given.id, given.secret.get_secret_value())


@router.get("/{policy}", response_model=PolicyOut, summary="Show a policy (id or name)")
def show_policy(policy: str, who: Caller = Depends(allowed(Action.POLICY_SHOW))) -> dict[str, Any]:
    found = visible_policy(who, Action.POLICY_SHOW, policy)
    return policy_detail(who.services.policies.view_of(found))


@router.patch("/{policy}", response_model=PolicyOut, summary="Change a policy")
def update_policy(
    policy: str, body: PolicyUpdate, who: Caller = Depends(allowed(Action.POLICY_UPDATE))
) -> dict[str, Any]:
    """Only the fields given change. Nothing is recreated: existing backups are rotated by
    the new rules at the policy's next run; new schedules apply from their next time."""
    found = visible_policy(who, Action.POLICY_UPDATE, policy)
    if body.cloud is not None and body.cloud != found.cloud:
        # Moving a policy to another cloud (even the API's default one, off the trust it
        # acts through) changes whose credentials act for it: every-project callers only.
        who.authorize(Action.ALL_PROJECTS, None)
    service = who.services.policies
    changed = service.update(found.id, _spec(body, name=body.name))
    return policy_detail(service.view_of(changed))


@router.delete("/{policy}", status_code=204, summary="Delete a policy (its backups stay)")
def delete_policy(policy: str, who: Caller = Depends(allowed(Action.POLICY_DELETE))) -> Response:
    found = visible_policy(who, Action.POLICY_DELETE, policy)
    who.services.policies.delete([found.id])
    return Response(status_code=204)


def _set_enabled(who: Caller, policy: str, enabled: bool) -> dict[str, Any]:
    found = visible_policy(who, Action.POLICY_UPDATE, policy)
    service = who.services.policies
    return policy_detail(service.view_of(service.set_enabled(found.id, enabled)))


@router.post("/{policy}/enable", response_model=PolicyOut, summary="Enable a policy")
def enable_policy(
    policy: str, who: Caller = Depends(allowed(Action.POLICY_UPDATE))
) -> dict[str, Any]:
    return _set_enabled(who, policy, True)


@router.post("/{policy}/disable", response_model=PolicyOut, summary="Disable a policy")
def disable_policy(
    policy: str, who: Caller = Depends(allowed(Action.POLICY_UPDATE))
) -> dict[str, Any]:
    return _set_enabled(who, policy, False)


@router.post(
    "/{policy}/run", response_model=list[RunOut], status_code=202, summary="Run a policy now"
)
def run_policy(policy: str, who: Caller = Depends(allowed(Action.POLICY_RUN))) -> list[Any]:
    """One run per target, due now (the workers take them); its retention applies."""
    found = visible_policy(who, Action.POLICY_RUN, policy)
    return [run_summary(run) for run in who.services.policies.run_now(found.id)]


@router.get(
    "/{policy}/retention-preview",
    response_model=list[PreviewOut],
    summary="What the policy would keep and forget now, and why",
)
def preview_retention(policy: str, who: Caller = Depends(allowed(Action.POLICY_SHOW))) -> list[Any]:
    found = visible_policy(who, Action.POLICY_SHOW, policy)
    return [preview_view(row) for row in who.services.backups.preview(found.id)]
