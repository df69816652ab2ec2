"""Runs (recent, with state, steps and errors) and the recovery point status."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from stackback.errors import InvalidInput
from stackback.policy import RunState
from stackback.rpo import Verdict
from stackback.views import run_detail, run_summary
from stackback.web.pages import Web

RUN_STATES = tuple(state.value for state in RunState)


def parse_state(value: str | None) -> RunState | None:
    if not value:
        return None
    try:
        return RunState(value)
    except ValueError:
        raise InvalidInput(
            f"unknown run state {value!r}: expected one of {', '.join(RUN_STATES)}", field="state"
        ) from None


def add_routes(router: APIRouter, web: Web) -> None:
    @router.get("/runs", name="web_runs")
    def runs(request: Request) -> Response:
        gateway = web.gateway(request)
        policy = request.query_params.get("policy") or None
        state = request.query_params.get("state") or None
        found = gateway.runs(policy=policy, state=parse_state(state))
        context = {
            "title": "Runs",
            "runs": [run_summary(run) for run in found],
            "states": RUN_STATES,
            "policy_filter": policy or "",
            "state_filter": state or "",
        }
        return web.render(request, "runs.html", context, gateway=gateway)

    @router.get("/runs/{run_id}", name="web_run")
    def run(request: Request, run_id: str) -> Response:
        gateway = web.gateway(request)
        found = gateway.run(run_id)
        context = {"title": f"Run {found.id[:8]}", "run": run_detail(found)}
        return web.render(request, "run.html", context, gateway=gateway)

    @router.get("/status", name="web_status")
    def status(request: Request) -> Response:
        gateway = web.gateway(request)
        reports = gateway.status()
        context = {
            "title": "Recovery point status",
            "reports": reports,
            "overdue": sum(1 for r in reports if r.verdict is not Verdict.OK),
        }
        return web.render(request, "status.html", context, gateway=gateway)
