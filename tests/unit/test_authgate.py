"""Authentication before the body: the app is driven as raw ASGI, so the tests see
exactly how many body messages the server asks for before it answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI

from handler.app import create_app
from handler.settings import Settings
from runner.base import RunResult
from runner.fake import FakeSandbox
from storage.memory import InMemorySessionStore

KEY = "gate-test-key-0123456789"
HUGE = str(10 * 1024**3).encode()  # 10 GiB announced, never sent


def make_app(**settings: Any) -> FastAPI:
    base: dict[str, Any] = {"api_keys": KEY, "log_json": False}
    return create_app(
        Settings(**(base | settings)),
        store=InMemorySessionStore(),
        sandbox=FakeSandbox(RunResult("4\n", "", 0)),
        maintenance=False,
    )


class Probe:
    """A client that records how often the server asked for body bytes before it
    answered (a refused request's small body may be drained after the answer)."""

    def __init__(self, chunks: list[bytes], server: tuple[str, int | None]) -> None:
        self.chunks = list(chunks)
        self.server = server
        self.reads = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not any(m["type"] == "http.response.body" for m in self.sent):
            self.reads += 1
        if not self.chunks:
            await asyncio.sleep(3600)  # a client that never sends its announced body
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def call(
    app: FastAPI,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes] | None = None,
    method: str = "POST",
    server: tuple[str, int | None] = ("127.0.0.1", 8000),
) -> Probe:
    probe = Probe(chunks or [], server)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5555),
        "server": server,
    }
    asyncio.run(asyncio.wait_for(app(scope, probe.receive, probe.send), 5))
    return probe


JSON = (b"content-type", b"application/json")


class TestNoCredentials:
    @pytest.mark.parametrize("path", ["/exec", "/v1/exec", "/upload", "/upload/batch", "/nope"])
    def test_huge_declared_body_is_401_without_reading_it(self, path: str) -> None:
        """No credentials, 10 GiB announced: 401 from the headers, no body read."""
        probe = call(make_app(), path, [JSON, (b"content-length", HUGE)])
        assert probe.status == 401
        assert probe.reads == 0
        assert probe.headers[b"www-authenticate"] == b"Bearer"
        assert probe.headers[b"connection"] == b"close"
        assert probe.json()["error"] == "unauthorized"

    def test_chunked_body_is_401_without_reading_it(self) -> None:
        """Chunked (no length): still refused before the first body message."""
        probe = call(
            make_app(),
            "/upload",
            [
                (b"content-type", b"multipart/form-data; boundary=x"),
                (b"transfer-encoding", b"chunked"),
            ],
        )
        assert (probe.status, probe.reads) == (401, 0)

    def test_wrong_key_is_401_without_reading(self) -> None:
        """A wrong header key is refused from the headers too."""
        probe = call(
            make_app(), "/exec", [JSON, (b"x-api-key", b"nope"), (b"content-length", HUGE)]
        )
        assert (probe.status, probe.reads) == (401, 0)

    def test_valid_key_reaches_the_route(self) -> None:
        """The gate lets a valid key through, and the route reads the body."""
        body = b'{"code": "print(1)"}'
        probe = call(
            make_app(),
            "/exec",
            [JSON, (b"x-api-key", KEY.encode()), (b"content-length", str(len(body)).encode())],
            [body],
        )
        assert probe.status == 200, probe.json()
        assert probe.json()["stdout"] == "4\n"


class TestLegacyBodyKey:
    def _body(self, size: int = 0) -> bytes:
        return json.dumps({"code": "print(1)" + " " * size, "LIBRECHAT_CODE_API_KEY": KEY}).encode()

    def test_small_body_with_the_key_runs(self) -> None:
        """The original README's key-in-body form keeps working for small bodies."""
        body = self._body()
        probe = call(make_app(), "/exec", [JSON], [body[:10], body[10:]])
        assert probe.status == 200, probe.json()

    def test_declared_oversize_is_401_without_reading(self) -> None:
        """A body-key request announcing more than RCE_BODY_KEY_MAX_BYTES: 401 at once."""
        probe = call(make_app(body_key_max_bytes=1024), "/exec", [JSON, (b"content-length", HUGE)])
        assert (probe.status, probe.reads) == (401, 0)
        assert "RCE_BODY_KEY_MAX_BYTES" in probe.json()["message"]

    def test_streamed_oversize_stops_at_the_cap(self) -> None:
        """Chunked: reading stops at the first chunk past the cap."""
        chunks = [b"{" + b" " * 511] * 100  # 51 KiB on offer
        probe = call(make_app(body_key_max_bytes=1024), "/exec", [JSON], chunks)
        assert probe.status == 401
        assert "RCE_BODY_KEY_MAX_BYTES" in probe.json()["message"]
        assert probe.reads == 3  # 512 + 512 + 512 > 1024

    def test_body_without_a_key_is_401(self) -> None:
        """A small JSON body without the key is read, then refused."""
        probe = call(make_app(), "/exec", [JSON], [b'{"code": "x"}'])
        assert probe.status == 401

    def test_wrong_body_key_is_401(self) -> None:
        """A wrong key in the body is refused."""
        body = json.dumps({"code": "x", "LIBRECHAT_CODE_API_KEY": "wrong"}).encode()
        assert call(make_app(), "/exec", [JSON], [body]).status == 401

    def test_body_key_only_on_exec_routes(self) -> None:
        """Other routes never read a body for a key."""
        probe = call(make_app(), "/files/x", [JSON], [self._body()], method="GET")
        assert (probe.status, probe.reads) == (401, 0)

    def test_body_key_not_in_jwt_mode(self, tmp_path: Any) -> None:
        """With JWT-only auth no body is read for a key."""
        from tests.support.tokens import ed25519_signer, write_pem

        signer = ed25519_signer()
        pem = write_pem(tmp_path / "k.pem", signer)
        app = make_app(auth_mode="jwt", jwt_public_key_file=str(pem))
        probe = call(app, "/exec", [JSON, (b"content-length", b"100")], [self._body()])
        assert (probe.status, probe.reads) == (401, 0)


class TestJsonCap:
    def test_json_on_upload_has_the_json_cap(self) -> None:
        """A JSON body sent to an upload route gets RCE_MAX_BODY_BYTES, not the upload cap."""
        probe = call(
            make_app(max_body_bytes=1000),
            "/upload",
            [JSON, (b"x-api-key", KEY.encode()), (b"content-length", b"5000")],
        )
        assert (probe.status, probe.reads) == (413, 0)

    def test_multipart_on_upload_has_the_upload_cap(self) -> None:
        """Multipart on /upload is judged by RCE_MAX_UPLOAD_BYTES."""
        headers = [
            (b"content-type", b"multipart/form-data; boundary=x"),
            (b"x-api-key", KEY.encode()),
        ]
        small = call(
            make_app(max_body_bytes=1000),
            "/upload",
            [*headers, (b"content-length", b"5000")],
            [b"--x--\r\n"],
        )
        assert small.status != 413
        big = call(
            make_app(max_upload_bytes=1000),
            "/upload",
            [*headers, (b"content-length", str(3 * 1024**2).encode())],
        )
        assert (big.status, big.reads) == (413, 0)

    def test_batch_has_its_total_cap(self) -> None:
        """/upload/batch is bounded by RCE_MAX_BATCH_BYTES."""
        probe = call(
            make_app(max_batch_bytes=10_000),
            "/upload/batch",
            [
                (b"content-type", b"multipart/form-data; boundary=x"),
                (b"x-api-key", KEY.encode()),
                (b"content-length", b"10001"),
            ],
        )
        assert (probe.status, probe.reads) == (413, 0)


class TestOpsAccess:
    def test_health_is_public(self) -> None:
        """/health needs no credentials."""
        assert call(make_app(), "/health", [], method="GET").status == 200

    @pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json", "/redoc"])
    def test_metrics_and_docs_need_auth_by_default(self, path: str) -> None:
        """Metrics and the API docs are for authenticated callers by default."""
        app = make_app()
        assert call(app, path, [], method="GET").status == 401
        ok = call(app, path, [(b"x-api-key", KEY.encode())], method="GET")
        assert ok.status == 200

    @pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json"])
    def test_public_setting(self, path: str) -> None:
        """RCE_METRICS_ACCESS / RCE_DOCS_ACCESS=public serve them without credentials."""
        app = make_app(metrics_access="public", docs_access="public")
        assert call(app, path, [], method="GET").status == 200

    @pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json", "/redoc"])
    def test_off_setting(self, path: str) -> None:
        """=off removes them, even for authenticated callers."""
        app = make_app(metrics_access="off", docs_access="off")
        assert call(app, path, [(b"x-api-key", KEY.encode())], method="GET").status == 404

    def test_ready_details(self) -> None:
        """/ready: status for anyone; details with credentials, or never when off."""
        app = make_app()
        assert call(app, "/ready", [], method="GET").json() == {"status": "ok"}
        detailed = call(app, "/ready", [(b"x-api-key", KEY.encode())], method="GET").json()
        assert detailed["docker"] == {"ok": True}
        public = make_app(ready_details="public")
        assert "storage" in call(public, "/ready", [], method="GET").json()
        off = make_app(ready_details="off")
        assert call(off, "/ready", [(b"x-api-key", KEY.encode())], method="GET").json() == {
            "status": "ok"
        }


class TestLoopbackOnly:
    def test_weak_key_serves_loopback_only(self) -> None:
        """A weak key (allowed on loopback) refuses connections on other addresses."""
        app = make_app(api_keys="short")
        headers = [(b"x-api-key", b"short")]
        assert call(app, "/health", headers, method="GET").status == 200
        remote = call(app, "/health", headers, method="GET", server=("10.1.2.3", 8000))
        assert remote.status == 403
        assert "loopback" in remote.json()["message"]

    def test_unix_socket_counts_as_local(self) -> None:
        """A Unix socket (no port) is local."""
        app = make_app(auth_mode="none")
        assert call(app, "/health", [], method="GET", server=("/run/rce.sock", None)).status == 200

    def test_no_auth_serves_loopback_only(self) -> None:
        """RCE_AUTH_MODE=none on loopback: other addresses are refused at request time."""
        app = make_app(auth_mode="none")
        assert call(app, "/ready", [], method="GET", server=("192.0.2.1", 80)).status == 403

    def test_explicitly_allowed_no_auth(self) -> None:
        """RCE_ALLOW_INSECURE_NO_AUTH=true lifts the loopback rule."""
        app = make_app(auth_mode="none", allow_insecure_no_auth=True, host="0.0.0.0")
        assert call(app, "/ready", [], method="GET", server=("192.0.2.1", 80)).status == 200

    def test_strong_key_serves_any_address(self) -> None:
        """A real key is not restricted to loopback."""
        headers = [(b"x-api-key", KEY.encode())]
        assert (
            call(make_app(), "/ready", headers, method="GET", server=("10.0.0.1", 80)).status == 200
        )


class TestRefusalLinger:
    def test_a_small_refused_body_is_drained_after_the_answer(self) -> None:
        """The 401 goes out before any body byte is read; a small declared body is then
        drained so the client reads the 401 instead of a connection reset."""
        probe = call(make_app(), "/upload", [JSON, (b"content-length", b"100")], [b"x" * 100])
        assert (probe.status, probe.reads) == (401, 0)
        assert probe.chunks == []
        assert probe.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}

    def test_a_large_refused_body_is_not_read(self) -> None:
        """A body over the linger cap is never read: the connection just closes."""
        probe = call(make_app(), "/upload", [JSON, (b"content-length", b"10000000")], [b"x"])
        assert (probe.status, probe.reads) == (401, 0)
        assert probe.chunks == [b"x"]
