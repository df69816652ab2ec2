"""Backups per target on a time line, one backup, protect/unprotect, delete, restore as new;
restores (the list and one with its steps)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from stackback.errors import InvalidInput
from stackback.restoreplan import RestoreState
from stackback.views import backup_detail, plan_view, restore_view
from stackback.web.gateway import Gateway
from stackback.web.pages import PostedForm, Web
from stackback.web.timeline import timelines

RESTORE_FIELDS = ("name", "flavor", "network")
RESTORE_STATES = tuple(state.value for state in RestoreState)


def parse_restore_state(value: str | None) -> RestoreState | None:
    if not value:
        return None
    try:
        return RestoreState(value)
    except ValueError:
        raise InvalidInput(
            f"unknown restore state {value!r}: expected one of {', '.join(RESTORE_STATES)}",
            field="state",
        ) from None


def _given(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def add_routes(router: APIRouter, web: Web) -> None:
    @router.get("/backups", name="web_backups")
    def backups(request: Request) -> Response:
        gateway = web.gateway(request)
        server = request.query_params.get("server") or None
        policy = request.query_params.get("policy") or None
        found = gateway.backups(server=server, policy=policy)
        context = {
            "title": "Backups",
            "timelines": timelines(found, web.backends.clock.now()),
            "server_filter": server or "",
            "policy_filter": policy or "",
        }
        return web.render(request, "backups.html", context, gateway=gateway)

    @router.get("/backups/{backup_id}", name="web_backup")
    def backup(request: Request, backup_id: str) -> Response:
        gateway = web.gateway(request)
        found = gateway.backup(backup_id)
        context = {
            "title": f"Backup {found.id[:8]}",
            "backup": backup_detail(found, gateway.backup_chain(found)),
            "project": found.project,
        }
        return web.render(request, "backup.html", context, gateway=gateway)

    def set_protected(request: Request, backup_id: str, form: FormData, protect: bool) -> Response:
        gateway = web.posting(request, form)
        found = gateway.protect(backup_id, protect)
        what = "protected" if protect else "no longer protected"
        return web.redirect(
            request, "web_backup", backup_id=found.id, flash=f"backup {found.id[:8]} is {what}"
        )

    @router.post("/backups/{backup_id}/protect", name="web_backup_protect")
    def protect(request: Request, backup_id: str, form: PostedForm) -> Response:
        return set_protected(request, backup_id, form, True)

    @router.post("/backups/{backup_id}/unprotect", name="web_backup_unprotect")
    def unprotect(request: Request, backup_id: str, form: PostedForm) -> Response:
        return set_protected(request, backup_id, form, False)

    @router.get("/backups/{backup_id}/delete", name="web_backup_delete_confirm")
    def confirm_delete(request: Request, backup_id: str) -> Response:
        gateway = web.gateway(request)
        found = gateway.backup(backup_id)
        context = {"title": f"Delete backup {found.id[:8]}?", "backup": backup_detail(found)}
        return web.render(request, "backup_delete.html", context, gateway=gateway)

    @router.post("/backups/{backup_id}/delete", name="web_backup_delete")
    def delete(request: Request, backup_id: str, form: PostedForm) -> Response:
        gateway = web.posting(request, form)
        found = gateway.delete_backup(backup_id)
        return web.redirect(
            request,
            "web_backup",
            backup_id=found.id,
            flash=f"backup {found.id[:8]} is {found.status.value}",
        )

    def restore_page(
        request: Request,
        gateway: Gateway,
        backup_id: str,
        values: dict[str, str],
        error: str | None = None,
    ) -> Response:
        found = gateway.backup(backup_id)
        plan = None
        if error is None:
            try:
                planned = gateway.restore_plan(
                    found.id,
                    name=values["name"] or None,
                    flavor=values["flavor"] or None,
                    network=values["network"] or None,
                )
                plan = plan_view(planned.plan, found.id)
            except InvalidInput as refused:
                error = refused.message
        context = {
            "title": f"Restore backup {found.id[:8]} as a new server",
            "backup": backup_detail(found),
            "values": values,
            "plan": plan,
            "error": error,
        }
        status = 400 if error and request.method == "POST" else 200
        return web.render(request, "backup_restore.html", context, gateway=gateway, status=status)

    @router.get("/backups/{backup_id}/restore", name="web_backup_restore_form")
    def restore_form(request: Request, backup_id: str) -> Response:
        gateway = web.gateway(request)
        gateway.allow_restore(backup_id)
        return restore_page(request, gateway, backup_id, dict.fromkeys(RESTORE_FIELDS, ""))

    @router.post("/backups/{backup_id}/restore", name="web_backup_restore")
    def restore(request: Request, backup_id: str, form: PostedForm) -> Response:
        gateway = web.posting(request, form)
        values = {name: _given(form, name) or "" for name in RESTORE_FIELDS}
        try:
            job = gateway.restore_as_new(
                backup_id,
                name=values["name"] or None,
                flavor=values["flavor"] or None,
                network=values["network"] or None,
            )
        except InvalidInput as error:
            return restore_page(request, gateway, backup_id, values, error.message)
        return web.redirect(
            request, "web_restore", restore_id=job.id, flash=f"restore {job.id[:8]} started"
        )

    @router.get("/restores", name="web_restores")
    def restores(request: Request) -> Response:
        gateway = web.gateway(request)
        state = request.query_params.get("state") or None
        found = gateway.restores(state=parse_restore_state(state))
        context = {
            "title": "Restores",
            "restores": [restore_view(job) for job in found],
            "states": RESTORE_STATES,
            "state_filter": state or "",
        }
        return web.render(request, "restores.html", context, gateway=gateway)

    @router.get("/restores/{restore_id}", name="web_restore")
    def restore_job(request: Request, restore_id: str) -> Response:
        gateway = web.gateway(request)
        job = gateway.restore_job(restore_id)
        context = {"title": f"Restore {job.id[:8]}", "restore": restore_view(job)}
        return web.render(request, "restore.html", context, gateway=gateway)
