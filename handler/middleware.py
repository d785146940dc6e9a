"""Pure ASGI middleware: request ids, body-size limits, error answers sent from here."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import CodeInterpreterError, Overloaded
from handler.errors import status_for
from handler.logs import current_request_id, reset_request_id, set_request_id

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Binds ``X-Request-ID`` (or a new id) to the request's logs and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else secrets.token_hex(8)
        token = set_request_id(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_with_id(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            # The last resort, inside the request's context so the answer and the log
            # line carry its id. Domain errors never get here (handler.errors maps them).
            log.exception("unexpected error")
            if not started:
                await _send_json(
                    send_with_id, 500, "internal_error", "internal error; see the server log"
                )
        finally:
            reset_request_id(token)


class BodyLimitMiddleware:
    """Answers 413 as soon as a body passes its limit, streamed or declared.

    ``limit_for(path, content_type)`` gives the limit: JSON and other bodies have
    their own cap, independent of the upload routes' multipart caps.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        limit = self.limit_for(scope["path"], content_type)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, limit)
            return
        seen = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now and tell the app the client is gone: it stops reading,
                    # and whatever it tries to send afterwards is dropped.
                    rejected = True
                    await _send_413(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _send_413(send: Send, limit: int) -> None:
    await _send_json(send, 413, "payload_too_large", f"request body is larger than {limit} bytes")


async def send_error(send: Send, exc: CodeInterpreterError, *, more_body: bool = False) -> None:
    """Answer with a domain error (the one shape and status of ``handler.errors``) and
    close the connection: whatever body the client still sends is never read."""
    status = status_for(exc)
    headers: list[tuple[bytes, bytes]] = []
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if isinstance(exc, Overloaded):
        headers.append((b"retry-after", str(max(1, exc.retry_after_s)).encode()))
    await _send_json(send, status, exc.code, exc.message, headers, more_body=more_body)


async def _send_json(
    send: Send,
    status: int,
    code: str,
    message: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    *,
    more_body: bool = False,
) -> None:
    body = json.dumps(
        {"error": code, "message": message, "status": status, "request_id": current_request_id()}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": more_body})
