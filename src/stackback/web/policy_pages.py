"""Policies: the list with next run times, one policy, create, edit, enable/disable, run now,
delete (after a confirmation page), and the retention preview."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from stackback.errors import InvalidInput, NotFound, ServerLookupFailed, StackbackError
from stackback.views import policy_detail, policy_summary, preview_view, run_summary
from stackback.web.forms import (
    CONSISTENCY_LEVELS,
    FALLBACKS,
    KEEP_COUNTS,
    KEEP_DURATIONS,
    KINDS,
    FormValues,
    blank_form,
    form_of,
    read_form,
)
from stackback.web.gateway import Gateway
from stackback.web.pages import PostedForm, Web

POLICY_RUNS = 20
"""Recent runs shown on a policy's page."""
FORM_ERRORS = (InvalidInput, NotFound, ServerLookupFailed)
"""What a policy form shows on itself: bad values, a server the cloud does not have (or
cannot be asked about)."""


def add_routes(router: APIRouter, web: Web) -> None:
    def form_page(
        request: Request,
        gateway: Gateway,
        values: FormValues,
        *,
        policy_id: str | None,
        error: StackbackError | None = None,
    ) -> Response:
        context = {
            "title": "Edit policy" if policy_id else "New policy",
            "policy_id": policy_id,
            "values": values,
            "error": error.message if error else None,
            "error_field": error.field if isinstance(error, InvalidInput) else None,
            "kinds": KINDS,
            "levels": CONSISTENCY_LEVELS,
            "fallbacks": FALLBACKS,
            "keep_counts": KEEP_COUNTS,
            "keep_durations": KEEP_DURATIONS,
        }
        status = 400 if error else 200
        return web.render(request, "policy_form.html", context, gateway=gateway, status=status)

    @router.get("/", name="web_home")
    def home(request: Request) -> Response:
        web.gateway(request)  # to the login page first when not logged in
        return web.redirect(request, "web_policies")

    @router.get("/policies", name="web_policies")
    def policies(request: Request) -> Response:
        gateway = web.gateway(request)
        rows = [policy_summary(view) for view in gateway.policy_views()]
        return web.render(
            request, "policies.html", {"title": "Policies", "policies": rows}, gateway=gateway
        )

    @router.get("/policies/new", name="web_policy_new")
    def new_policy(request: Request) -> Response:
        gateway = web.gateway(request)
        gateway.allow_create_policy()
        return form_page(request, gateway, blank_form(web.default_cloud), policy_id=None)

    @router.post("/policies/new", name="web_policy_create")
    def create_policy(request: Request, form: PostedForm) -> Response:
        gateway = web.posting(request, form)
        posted = read_form(form)
        try:
            policy = gateway.create_policy(posted.spec(create=True), offline=posted.offline)
        except FORM_ERRORS as error:
            return form_page(request, gateway, posted.values, policy_id=None, error=error)
        return web.redirect(
            request, "web_policy", policy_id=policy.id, flash=f"policy {policy.name} created"
        )

    @router.get("/policies/{policy_id}", name="web_policy")
    def policy(request: Request, policy_id: str) -> Response:
        gateway = web.gateway(request)
        view = gateway.policy_view(policy_id)
        runs = gateway.runs(policy=view.policy.id, limit=POLICY_RUNS)
        context = {
            "title": f"Policy {view.policy.name}",
            "policy": policy_detail(view),
            "project": view.policy.project,
            "runs": [run_summary(run) for run in runs],
        }
        return web.render(request, "policy.html", context, gateway=gateway)

    @router.get("/policies/{policy_id}/edit", name="web_policy_edit")
    def edit_policy(request: Request, policy_id: str) -> Response:
        gateway = web.gateway(request)
        current = gateway.policy_for_update(policy_id)
        return form_page(request, gateway, form_of(current), policy_id=current.id)

    @router.post("/policies/{policy_id}/edit", name="web_policy_update")
    def update_policy(request: Request, policy_id: str, form: PostedForm) -> Response:
        gateway = web.posting(request, form)
        current = gateway.policy_for_update(policy_id)
        posted = read_form(form)
        posted.values["cloud"] = current.cloud or ""  # chosen when the policy was created
        try:
            policy = gateway.update_policy(
                current.id, posted.spec(create=False), offline=posted.offline
            )
        except FORM_ERRORS as error:
            return form_page(request, gateway, posted.values, policy_id=current.id, error=error)
        return web.redirect(
            request, "web_policy", policy_id=policy.id, flash=f"policy {policy.name} saved"
        )

    @router.get("/policies/{policy_id}/delete", name="web_policy_delete_confirm")
    def confirm_delete(request: Request, policy_id: str) -> Response:
        gateway = web.gateway(request)
        view = gateway.allow_delete_policy(policy_id)
        context = {"title": f"Delete policy {view.policy.name}?", "policy": policy_detail(view)}
        return web.render(request, "policy_delete.html", context, gateway=gateway)

    @router.post("/policies/{policy_id}/delete", name="web_policy_delete")
    def delete_policy(request: Request, policy_id: str, form: PostedForm) -> Response:
        gateway = web.posting(request, form)
        deleted = gateway.delete_policy(policy_id)
        return web.redirect(request, "web_policies", flash=f"policy {deleted.name} deleted")

    @router.get("/policies/{policy_id}/retention", name="web_policy_preview")
    def retention_preview(request: Request, policy_id: str) -> Response:
        gateway = web.gateway(request)
        view, rows = gateway.retention_preview(policy_id)
        context = {
            "title": f"Retention preview of {view.policy.name}",
            "policy": policy_summary(view),
            "rows": [preview_view(row) for row in rows],
        }
        return web.render(request, "policy_preview.html", context, gateway=gateway)

    def toggle(request: Request, policy_id: str, form: PostedForm, enabled: bool) -> Response:
        gateway = web.posting(request, form)
        policy = gateway.set_enabled(policy_id, enabled)
        what = "enabled" if enabled else "disabled"
        return web.redirect(
            request, "web_policy", policy_id=policy.id, flash=f"policy {policy.name} {what}"
        )

    @router.post("/policies/{policy_id}/enable", name="web_policy_enable")
    def enable(request: Request, policy_id: str, form: PostedForm) -> Response:
        return toggle(request, policy_id, form, True)

    @router.post("/policies/{policy_id}/disable", name="web_policy_disable")
    def disable(request: Request, policy_id: str, form: PostedForm) -> Response:
        return toggle(request, policy_id, form, False)

    @router.post("/policies/{policy_id}/run", name="web_policy_run")
    def run_now(request: Request, policy_id: str, form: PostedForm) -> Response:
        gateway = web.posting(request, form)
        runs = gateway.run_now(policy_id)
        policy = gateway.policy_view(policy_id).policy
        started = ", ".join(run.target for run in runs)
        return web.redirect(
            request,
            "web_policy",
            policy_id=policy.id,
            flash=f"{len(runs)} run(s) of {policy.name} queued: {started}",
        )
