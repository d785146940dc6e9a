"""Continuation tokens of programmatic tool calling: signed, stateless, single-round.

A token carries everything a replica needs to resume a paused program: the
container, the round it answers, the caller it belongs to, the session and input
files to sync at the end, and an expiry. It is ``base64url(zlib(JSON)) "." base64url
(HMAC-SHA256)`` under a key every replica shares (``RCE_PTC_TOKEN_SECRET``). Nothing
about a run is kept in the API process.

What a token proves, and what it does not:
- forged or altered: the MAC fails (``InvalidRequest``, 400);
- another caller's: the principal digest differs (``AccessDenied``, 403);
- expired: ``exp`` has passed (``ContinuationExpired``, 410);
- replayed: the token is well signed, so the round check happens in the sandbox,
  which holds the current round and refuses any other (``Conflict``, 409).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import AccessDenied, ContinuationExpired, InvalidRequest
from core.identity import Caller

VERSION = 1
#: Largest token accepted (before decoding).
MAX_TOKEN_CHARS = 256 * 1024
_MAX_JSON_BYTES = 4 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Continuation:
    """The state of one paused run, as signed into its token."""

    container: str
    round: int
    principal: str
    session_id: str
    expires_at: float
    #: Everything else the use case needs to finish the run (plain JSON values).
    state: Mapping[str, Any]


class TokenSigner:
    """Signs and checks continuation tokens with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the continuation token secret must be at least 16 bytes")
        self._key = hmac.new(secret, b"rce-ptc-continuation-v1", hashlib.sha256).digest()
        self._principal_key = hmac.new(secret, b"rce-ptc-principal-v1", hashlib.sha256).digest()

    def principal(self, caller: Caller) -> str:
        """A stable, opaque digest of ``caller`` (for tokens and container labels)."""
        who = f"{caller.tenant}\0{caller.user or ''}".encode("utf-8", "surrogatepass")
        return hmac.new(self._principal_key, who, hashlib.sha256).hexdigest()[:32]

    def sign(self, continuation: Continuation) -> str:
        """The token of ``continuation``."""
        body = {
            "v": VERSION,
            "c": continuation.container,
            "r": continuation.round,
            "p": continuation.principal,
            "s": continuation.session_id,
            "e": continuation.expires_at,
            "x": dict(continuation.state),
        }
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        payload = _b64(zlib.compress(raw, 6))
        mac = hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()
        return f"{payload}.{_b64(mac)}"

    def verify(self, token: object, caller: Caller, *, now: float) -> Continuation:
        """The continuation of ``token`` if it is genuine, unexpired and ``caller``'s."""
        body = self._open(token)
        if body.get("p") != self.principal(caller):
            raise AccessDenied("this continuation token belongs to another caller")
        expires_at = body.get("e")
        if not isinstance(expires_at, (int, float)) or expires_at <= now:
            raise ContinuationExpired(
                "the continuation token has expired: the paused program waited longer "
                "than RCE_PTC_MAX_WAIT_S for tool results; run the code again"
            )
        return Continuation(
            container=str(body["c"]),
            round=int(body["r"]),
            principal=str(body["p"]),
            session_id=str(body["s"]),
            expires_at=float(expires_at),
            state=body["x"],
        )

    def _open(self, token: object) -> dict[str, Any]:
        invalid = InvalidRequest("continuation_token is not a valid token from this service")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise invalid
        payload, mac = token.split(".")
        expected = hmac.new(self._key, payload.encode("ascii", "replace"), hashlib.sha256).digest()
        try:
            genuine = hmac.compare_digest(_unb64(mac), expected)
            if not genuine:
                raise invalid
            inflater = zlib.decompressobj()
            raw = inflater.decompress(_unb64(payload), _MAX_JSON_BYTES)
            body = json.loads(raw)
        except (binascii.Error, ValueError, zlib.error, UnicodeError):
            raise invalid from None
        fields = ("c", "r", "p", "s", "e", "x")
        if (
            not isinstance(body, dict)
            or body.get("v") != VERSION
            or any(f not in body for f in fields)
        ):
            raise invalid
        if not isinstance(body["x"], dict) or not isinstance(body["r"], int):
            raise invalid
        return body
