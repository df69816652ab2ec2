"""Errors at the HTTP edge: every failure as ``{"error": {"code", "message", "details"}}``.

The StackbackError tree is mapped to statuses here and only here; request validation
errors, unknown routes and oversized bodies get the same shape.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackback.errors import (
    CloudBusy,
    CloudError,
    CloudNotFound,
    CloudRejected,
    CloudUnavailable,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    IdentityUnknown,
    InvalidInput,
    LeaseLost,
    NotFound,
    NotMigrated,
    RunFailed,
    SchemaTooNew,
    StackbackError,
    Unauthenticated,
    WaitTimedOut,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""The largest request body accepted (1 MiB): policies and restore requests are small."""

STATUSES: tuple[tuple[type[StackbackError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (CloudNotFound, 404),
    (InvalidInput, 400),
    (IdentityUnknown, 400),
    (Conflict, 409),
    (LeaseLost, 409),
    (RunFailed, 409),
    (CloudBusy, 409),
    (CloudRejected, 422),
    (CloudUnavailable, 503),
    (CloudError, 502),
    (NotMigrated, 503),
    (SchemaTooNew, 503),
    (DatabaseUnavailable, 503),
    (WaitTimedOut, 504),
)
"""The HTTP status of each kind of error (the first class that matches wins)."""


def status_of(error: StackbackError) -> int:
    """The HTTP status an error is answered with (500: a kind not foreseen here)."""
    return next((status for kind, status in STATUSES if isinstance(error, kind)), 500)


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one shape of every error answer."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message, **details), status_code=status, headers=headers)


def _stackback_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StackbackError)
    details: dict[str, Any] = {"error_id": error.error_id}
    field = getattr(error, "field", None)
    if field is not None:
        details["field"] = field
    status = status_of(error)
    if status >= 500:
        log.error("error %s: %s: %s", error.error_id, error.code, error.message)
    return error_response(status, error.code, error.message, **details)


def _field_name(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location if part != "body") or "body"


def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        {"field": _field_name(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
        for e in error.errors()
    ]
    error_id = uuid.uuid4().hex[:12]
    if any(e.get("type") == "json_invalid" for e in error.errors()):
        return error_response(
            400, "malformed-json", "the request body is not valid JSON", error_id=error_id
        )
    first = problems[0] if problems else {"field": "body", "message": "invalid request"}
    return error_response(
        422,
        "invalid-input",
        f"{first['field']}: {first['message']}",
        error_id=error_id,
        field=first["field"],
        errors=problems,
    )


def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if isinstance(error.__cause__, BodyTooLarge):  # FastAPI wraps what reading a body raised
        return _body_too_large(_request, error.__cause__)
    if isinstance(error.__cause__, NulInBody):
        return _nul_in_body(_request, error.__cause__)
    codes = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}
    code = codes.get(error.status_code, "http-error")
    return error_response(
        error.status_code, code, str(error.detail), error_id=uuid.uuid4().hex[:12]
    )


def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.exception("error %s: unexpected %s", error_id, type(error).__name__)
    return error_response(
        500, "internal-error", f"an unexpected error (id {error_id})", error_id=error_id
    )


def _body_too_large(_request: Request, error: Exception) -> JSONResponse:
    return error_response(
        413, "too-large", f"the request body is too large: {error}", error_id=uuid.uuid4().hex[:12]
    )


def _nul_in_body(_request: Request, error: Exception) -> JSONResponse:
    return error_response(400, "invalid-input", str(error), error_id=uuid.uuid4().hex[:12])


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape."""
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_exception_handler(NulInBody, _nul_in_body)
    app.add_exception_handler(StackbackError, _stackback_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodyTooLarge(Exception):
    """The request body went past the limit while it was read."""


class NulInBody(Exception):
    """The request body carries a NUL character (``\\u0000``), which no column can hold."""


class BodyLimit:
    """ASGI middleware: a request whose body is over ``max_bytes`` is answered 413, whether
    its ``Content-Length`` says so or its (chunked) body turns out longer; one carrying a NUL
    character (in its path, query or JSON body) 400, as PostgreSQL could not store it."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = (scope.get("raw_path") or b"") + b"?" + (scope.get("query_string") or b"")
        if b"%00" in target:  # no database column holds a NUL character
            await self._answer(send, 400, "invalid-input", "NUL characters are not accepted")
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_long = int(declared) > self.max_bytes
            except ValueError:
                await self._answer(send, 400, "invalid-input", "Content-Length is not a number")
                return
            if too_long:
                await self._too_large(send)
                return
        received = 0
        started = False
        tail = b""

        async def limited() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise BodyTooLarge(f"over {self.max_bytes} bytes")
                if b"\\u0000" in tail + chunk:  # JSON's only way to carry a NUL character
                    raise NulInBody("NUL characters are not accepted")
                tail = chunk[-5:]
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except BodyTooLarge:
            if not started:
                await self._too_large(send)
        except NulInBody as error:
            if not started:
                await self._answer(send, 400, "invalid-input", str(error))

    async def _too_large(self, send: Send) -> None:
        await self._answer(
            send, 413, "too-large", f"the request body is over {self.max_bytes} bytes"
        )

    @staticmethod
    async def _answer(send: Send, status: int, code: str, message: str) -> None:
        response = error_response(status, code, message, error_id=uuid.uuid4().hex[:12])
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})
