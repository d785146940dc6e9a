"""Authentication before any body byte is read (pure ASGI middleware).

FastAPI parses a route's body before it runs the route's dependencies, so an auth
dependency would let an unauthenticated client make the server read (and spool) a
whole body first. This gate runs in front of everything instead: it decides from the
request line and headers alone, answers 401 at once when the credentials are missing
or wrong, and stores the ``Caller`` in the scope for the routes (``caller_of``).

Two exceptions to "headers alone":

- The legacy key-in-body form (``LIBRECHAT_CODE_API_KEY`` in a JSON body, from the
  original README) on the exec routes: a request with no credential header may have
  at most ``RCE_BODY_KEY_MAX_BYTES`` of body read to look for the key (a larger body,
  declared or streamed, is unauthenticated: 401 saying so); the buffered body is then
  replayed to the route.
- Routes that are public by configuration (``/health``; ``/ready`` without details;
  ``/metrics`` and the docs when set to ``public``).

A configuration that is safe only on loopback (``Settings.loopback_only``) also
refuses every request whose connection did not arrive on a loopback address or a
Unix socket, whatever ``RCE_HOST`` claims.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import AccessDenied, AuthenticationFailed, CodeInterpreterError
from core.identity import Caller
from handler.auth import Authenticator
from handler.middleware import send_error
from handler.settings import Settings, is_loopback

#: Where the gate leaves the authenticated caller (None on public routes).
CALLER_KEY = "rce.caller"
BODY_KEY_ROUTES = frozenset({"/exec", "/run/exec"})
DOCS_ROUTES = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class Access(Enum):
    """How a route is reached."""

    PUBLIC = "public"  # never authenticated
    OPTIONAL = "optional"  # authenticated when credentials are sent (``/ready`` details)
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """Which routes need credentials; built from ``Settings``."""

    metrics: Access
    docs: Access
    body_key_max_bytes: int
    loopback_only: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> GatePolicy:
        """The policy ``settings`` describe (``off`` routes are not mounted at all)."""
        return cls(
            metrics=_access(settings.metrics_access),
            docs=_access(settings.docs_access),
            body_key_max_bytes=min(settings.body_key_max_bytes, settings.max_body_bytes),
            loopback_only=settings.loopback_only(),
        )

    def access_for(self, path: str) -> Access:
        """The access rule of ``path`` (``/v1`` prefix ignored); unknown paths need auth."""
        route = route_path(path)
        if route == "/health":
            return Access.PUBLIC
        if route == "/ready":
            return Access.OPTIONAL
        if route == "/metrics":
            return self.metrics
        if route in DOCS_ROUTES:
            return self.docs
        return Access.REQUIRED


def _access(setting: str) -> Access:
    return Access.PUBLIC if setting == "public" else Access.REQUIRED


def route_path(path: str) -> str:
    """``path`` without the ``/v1`` prefix the app also serves every route under."""
    return path[3:] if path.startswith("/v1/") else path


def caller_of(scope: Scope) -> Caller | None:
    """The caller the gate authenticated for this request, if any."""
    found = scope.get(CALLER_KEY)
    return found if isinstance(found, Caller) else None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _has_credentials(headers: Mapping[str, str]) -> bool:
    return bool(headers.get("authorization", "").strip() or headers.get("x-api-key", "").strip())


def _arrived_on_loopback(scope: Scope) -> bool:
    server = scope.get("server")
    if not server:
        return False
    host, port = server[0], server[1] if len(server) > 1 else None
    return port is None or is_loopback(str(host))  # a Unix socket has no port


def _is_json(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


class _Buffered:
    """Replays a body read by the gate, then hands over to the real ``receive``."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()


class AuthGate:
    """Authenticates each HTTP request before its body is read (see the module doc)."""

    def __init__(self, app: ASGIApp, *, auth: Authenticator, policy: GatePolicy) -> None:
        self.app = app
        self.auth = auth
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            caller, receive = await self._authenticate(scope, receive)
        except CodeInterpreterError as exc:
            # The whole answer goes out first (its Content-Length lets the client read
            # it at once); then a small declared body is drained before the connection
            # closes, so the client sees the 401 rather than a reset.
            await send_error(send, exc, more_body=True)
            await _drain_small_body(scope, receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        scope[CALLER_KEY] = caller
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, receive: Receive) -> tuple[Caller | None, Receive]:
        if self.policy.loopback_only and not _arrived_on_loopback(scope):
            raise AccessDenied(
                "this server's configuration (RCE_AUTH_MODE=none or a weak API key) is safe "
                "only on loopback, and this request did not arrive on a loopback address"
            )
        access = self.policy.access_for(scope["path"])
        if access is Access.PUBLIC:
            return None, receive
        headers = _headers(scope)
        if _has_credentials(headers) or self.auth.mode == "none":
            return self.auth.authenticate(headers), receive
        if access is Access.OPTIONAL:
            return None, receive
        if self._may_carry_body_key(scope, headers):
            return await self._body_key_caller(headers, receive)
        return self.auth.authenticate(headers), receive  # raises: no credentials

    def _may_carry_body_key(self, scope: Scope, headers: Mapping[str, str]) -> bool:
        return (
            self.auth.accepts_api_keys
            and scope["method"] == "POST"
            and route_path(scope["path"]) in BODY_KEY_ROUTES
            and _is_json(headers)
        )

    async def _body_key_caller(
        self, headers: Mapping[str, str], receive: Receive
    ) -> tuple[Caller, Receive]:
        body = await self._read_capped(headers, receive)
        caller = self.auth.authenticate(headers, body_api_key=_body_key(body))
        return caller, _Buffered(body, receive)

    async def _read_capped(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        cap = self.policy.body_key_max_bytes
        too_large = AuthenticationFailed(
            "missing credentials: send X-API-Key or Authorization: Bearer (a key in the JSON "
            f"body is looked for only in bodies of at most {cap} bytes, RCE_BODY_KEY_MAX_BYTES)"
        )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise AuthenticationFailed("the client went away before sending credentials")
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > cap:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _body_key(body: bytes) -> str | None:
    try:
        parsed: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    key = parsed.get("LIBRECHAT_CODE_API_KEY") if isinstance(parsed, dict) else None
    return key if isinstance(key, str) else None


#: After a refusal has been sent, a declared body of at most this many bytes is read
#: and dropped, for at most ``LINGER_S``, before the connection closes: closing with
#: unread bytes makes the kernel send a reset, and a client still writing a small body
#: would see ECONNRESET instead of the 401. Larger, chunked or slow bodies are not
#: waited for. Nothing is read before the answer is on its way.
LINGER_BYTES = 64 * 1024
LINGER_S = 0.25


async def _drain_small_body(scope: Scope, receive: Receive) -> None:
    headers = dict(scope.get("headers") or [])
    declared = headers.get(b"content-length", b"").strip()
    if not declared.isdigit() or not 0 < int(declared) <= LINGER_BYTES:
        return
    left = int(declared)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_S
    while left > 0:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), timeout=remaining)
        except TimeoutError:
            return
        if message.get("type") != "http.request":
            return
        left -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return
