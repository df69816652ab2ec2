"""``/v1/runs``: the recorded executions of policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from stackback.api.access import Caller, allowed
from stackback.api.models import Page, RunDetailOut, RunOut
from stackback.api.routes.common import Limit, Marker, page, policy_zones, utc, zoned
from stackback.policy import Run, RunState
from stackback.services.access import Action
from stackback.views import run_detail, run_summary

router = APIRouter(prefix="/runs", tags=["runs"])


def visible_run(who: Caller, action: Action, run_id: str) -> Run:
    run = who.services.runs.get(run_id, project=who.scope)
    who.check(action, run.project, "run", run_id)
    return run


@router.get("", response_model=Page[RunOut], summary="List runs, newest first")
def list_runs(
    policy: str | None = Query(None, max_length=255, description="Policy id or name."),
    target: str | None = Query(None, max_length=255, description="Server id or name."),
    state: RunState | None = None,
    since: datetime | None = Query(None, description="Scheduled at or after (UTC if no zone)."),
    until: datetime | None = Query(None, description="Scheduled before (UTC if no zone)."),
    limit: Limit = 50,
    marker: Marker = None,
    who: Caller = Depends(allowed(Action.RUN_LIST)),
) -> dict[str, Any]:
    runs = who.services.runs.list_runs(
        policy=policy,
        target=target,
        state=state,
        limit=limit + 1,
        project=who.scope,
        marker=marker,
        since=utc(since),
        until=utc(until),
    )
    return page(runs, limit, zoned(run_summary, policy_zones(who.services.policies, runs)))


@router.get("/{run_id}", response_model=RunDetailOut, summary="Show a run with its steps")
def show_run(run_id: str, who: Caller = Depends(allowed(Action.RUN_SHOW))) -> dict[str, Any]:
    run = visible_run(who, Action.RUN_SHOW, run_id)
    return zoned(run_detail, policy_zones(who.services.policies, [run]))(run)


@router.delete("/{run_id}", status_code=204, summary="Delete a finished run's record")
def delete_run(run_id: str, who: Caller = Depends(allowed(Action.RUN_DELETE))) -> Response:
    """Its backup stays. A run still in progress: 409."""
    run = visible_run(who, Action.RUN_DELETE, run_id)
    who.services.runs.delete([run.id])
    return Response(status_code=204)
