"""``/v1/status``: every target's newest good backup against its schedule (RPO)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from stackback.api.access import Caller, allowed
from stackback.api.models import StatusOut
from stackback.services.access import Action
from stackback.views import status_view

router = APIRouter(prefix="/status", tags=["status"])


@router.get("", response_model=list[StatusOut], summary="RPO status of every target")
def status(
    policy: str | None = Query(None, max_length=255, description="Only this policy's targets."),
    who: Caller = Depends(allowed(Action.STATUS_SHOW)),
) -> list[Any]:
    """As ``stackback status -f json``: ok, late, failing or never, with the age of the newest
    good backup."""
    return [status_view(r) for r in who.services.status.report(policy, project=who.scope)]
