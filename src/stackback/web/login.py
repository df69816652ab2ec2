"""Logging in with a token, and out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from stackback.errors import StackbackError, Unauthenticated
from stackback.web.pages import PostedForm, Web
from stackback.web.session import CSRF_FIELD


def safe_next(value: object) -> str | None:
    """A path on this site to go back to after logging in (never another site)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 32 for c in value):
        return None
    return value


def add_routes(router: APIRouter, web: Web) -> None:
    def login_page(
        request: Request, *, next_path: str | None, error: str | None = None, status: int = 200
    ) -> Response:
        nonce, token = web.sessions.login_form(request)
        context = {
            "title": "Log in",
            "error": error,
            "next_path": next_path or "",
            "login_token": token,
            "csrf_field": CSRF_FIELD,
        }
        response = web.render(request, "login.html", context, status=status)
        web.sessions.keep_login_nonce(request, response, nonce)
        return response

    @router.get("/login", name="web_login")
    def login_form(request: Request) -> Response:
        return login_page(request, next_path=safe_next(request.query_params.get("next")))

    @router.post("/login", name="web_login_post")
    def log_in(request: Request, form: PostedForm) -> Response:
        next_path = safe_next(form.get("next"))
        web.sessions.check_login_csrf(request, form)
        token = form.get("token")
        if not isinstance(token, str) or not token.strip():
            return login_page(request, next_path=next_path, error="give a token", status=400)
        target = next_path or str(request.url_for("web_policies"))
        response = RedirectResponse(target, status_code=303)
        try:
            web.sessions.log_in(request, response, token.strip())
        except Unauthenticated as error:
            return login_page(request, next_path=next_path, error=error.message, status=401)
        except StackbackError as error:  # the identity service could not be asked
            return login_page(request, next_path=next_path, error=error.message, status=503)
        return response

    @router.post("/logout", name="web_logout")
    def log_out(request: Request, form: PostedForm) -> Response:
        web.posting(request, form)
        response = RedirectResponse(str(request.url_for("web_login")), status_code=303)
        web.sessions.log_out(response)
        return response
