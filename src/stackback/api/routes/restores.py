"""``/v1/restores``: restore jobs (and verifications), as started from a backup."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from stackback.api.access import Caller, allowed
from stackback.api.models import Page, RestoreOut
from stackback.api.routes.common import Limit, Marker, page
from stackback.restoreplan import RestoreState
from stackback.services.access import Action
from stackback.views import restore_view

router = APIRouter(prefix="/restores", tags=["restores"])


@router.get("", response_model=Page[RestoreOut], summary="List restores, newest first")
def list_restores(
    state: RestoreState | None = None,
    limit: Limit = 50,
    marker: Marker = None,
    who: Caller = Depends(allowed(Action.RESTORE_LIST)),
) -> dict[str, Any]:
    jobs = who.services.restores.list(
        state=state, limit=limit + 1, project=who.scope, marker=marker
    )
    return page(jobs, limit, restore_view)


@router.get("/{restore_id}", response_model=RestoreOut, summary="Show a restore")
def show_restore(
    restore_id: str, who: Caller = Depends(allowed(Action.RESTORE_SHOW))
) -> dict[str, Any]:
    job = who.services.restores.get(restore_id, project=who.scope)
    who.check(Action.RESTORE_SHOW, job.project, "restore", restore_id)
    return restore_view(job)
