"""Domain errors to HTTP, in exactly one place.

Every error body has one shape::

    {"error": "<code>", "message": "<what happened and what to do>", "status": 404,
     "request_id": "..."}
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors as e
from handler.logs import current_request_id

log = logging.getLogger(__name__)

#: Most specific class first; the first ``isinstance`` match wins.
STATUS_BY_ERROR: tuple[tuple[type[e.CodeInterpreterError], int], ...] = (
    (e.InvalidRequest, 400),
    (e.AuthenticationFailed, 401),
    (e.AccessDenied, 403),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.ContinuationExpired, 410),
    (e.PayloadTooLarge, 413),
    (e.ExecQueueFull, 429),
    (e.ExecQueueTimeout, 503),
    (e.StorageError, 503),
    (e.SandboxError, 503),
)


def status_for(exc: e.CodeInterpreterError) -> int:
    """The HTTP status of a domain error (500 for anything unmapped)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    """A JSON error in the one shape every error uses."""
    body: dict[str, object] = {
        "error": code,
        "message": message,
        "status": status,
        "request_id": current_request_id(),
    }
    body.update(extra)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.CodeInterpreterError)
    status = status_for(exc)
    if status >= 500:
        log.warning("request failed: %s: %s", type(exc).__name__, exc.message)
    headers = None
    if isinstance(exc, e.Overloaded):
        headers = {"Retry-After": str(max(1, exc.retry_after_s))}
    return error_response(status, exc.code, exc.message, headers=headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        for err in exc.errors()[:20]
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return error_response(400, "invalid_request", f"{where}: {first['msg']}", details=details)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the one mapping on ``app``. Anything unmapped becomes a 500 in
    ``handler.middleware.RequestIdMiddleware``, inside the request's context."""
    app.add_exception_handler(e.CodeInterpreterError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
