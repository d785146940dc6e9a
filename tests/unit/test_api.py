"""The HTTP contract on fakes: shapes of both LibreChat generations, auth, errors."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.errors import SandboxUnavailable
from handler.app import create_app
from handler.settings import Settings
from runner.base import RunResult
from runner.fake import FakeSandbox
from storage.memory import InMemorySessionStore

KEY = "unit-test-key-0123456789"
H = {"X-API-Key": KEY}


@pytest.fixture(name="sandbox")
def _sandbox() -> FakeSandbox:
    return FakeSandbox(RunResult("4\n", "", 0))


@pytest.fixture(name="store")
def _store() -> InMemorySessionStore:
    return InMemorySessionStore()


@pytest.fixture(name="client")
def _client(sandbox: FakeSandbox, store: InMemorySessionStore) -> Iterator[TestClient]:
    settings = Settings(api_keys=KEY, log_json=False)
    app = create_app(settings, store=store, sandbox=sandbox, maintenance=False)
    with TestClient(app) as client:
        yield client


def upload(
    client: TestClient,
    name: str = "data.csv",
    body: bytes = b"a,b\n1,2\n",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> dict:  # type: ignore[type-arg]
    r = client.post(
        "/upload", headers=headers or H, files={"file": (name, body, "text/csv")}, data=fields
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


class TestExec:
    def test_original_readme_example(self, client: TestClient) -> None:
        """The original README's request answers its documented response."""
        r = client.post("/exec", headers=H, json={"code": "print(2 + 2)", "lang": "py"})
        assert r.status_code == 200
        body = r.json()
        assert (body["stdout"], body["exit_code"], body["output"], body["files"]) == (
            "4\n",
            0,
            "4\n",
            [],
        )
        assert len(body["session_id"]) == 21

    @pytest.mark.parametrize("prefix", ["", "/v1"])
    @pytest.mark.parametrize("route", ["/exec", "/run/exec"])
    def test_routes_and_prefixes(self, client: TestClient, prefix: str, route: str) -> None:
        """/exec and /run/exec answer at the root and under /v1."""
        r = client.post(prefix + route, headers=H, json={"code": "x", "lang": "python3"})
        assert r.status_code == 200

    def test_unknown_fields_and_body_key(self, client: TestClient) -> None:
        """Legacy clients' extra fields, and the key in the body, are accepted."""
        r = client.post(
            "/exec",
            json={
                "code": "x",
                "lang": "py",
                "codeSessionKey": "execute_code",
                "LIBRECHAT_CODE_API_KEY": KEY,
                "user_id": "u1",
            },
        )
        assert r.status_code == 200

    def test_unknown_language(self, client: TestClient) -> None:
        """An unsupported lang is a 400 naming the supported ones."""
        r = client.post("/exec", headers=H, json={"code": "x", "lang": "cobol"})
        assert r.status_code == 400
        assert "py" in r.json()["message"] and r.json()["error"] == "unsupported_language"

    def test_failed_program_is_200(self, client: TestClient, sandbox: FakeSandbox) -> None:
        """A failing program is a result with stderr, not an HTTP error."""
        sandbox.result = RunResult("", "Traceback...\nZeroDivisionError\n", 1)
        r = client.post("/exec", headers=H, json={"code": "1/0", "lang": "py"})
        assert r.status_code == 200 and r.json()["exit_code"] == 1

    def test_engine_down_is_503(self, client: TestClient, sandbox: FakeSandbox) -> None:
        """An unreachable engine is a 503 with a clear message."""
        sandbox.error = SandboxUnavailable("no Docker engine answers")
        r = client.post("/exec", headers=H, json={"code": "x", "lang": "py"})
        assert r.status_code == 503 and r.json()["error"] == "sandbox_unavailable"

    def test_malformed_json(self, client: TestClient) -> None:
        """Malformed JSON is a 400 in the one error shape."""
        r = client.post(
            "/exec", headers={**H, "Content-Type": "application/json"}, content=b"{nope"
        )
        assert r.status_code == 400
        assert set(r.json()) >= {"error", "message", "status", "request_id"}

    def test_wrong_types(self, client: TestClient) -> None:
        """A number where code should be is a 400."""
        r = client.post("/exec", headers=H, json={"code": 5, "lang": "py"})
        assert r.status_code == 400

    def test_outputs_and_follow_up(self, client: TestClient, sandbox: FakeSandbox) -> None:
        """Outputs come back as refs that a follow-up exec can restore (current shape)."""
        sandbox.outputs = {"plot.png": b"\x89PNG..."}
        first = client.post("/exec", headers=H, json={"code": "x", "lang": "py"}).json()
        [f] = first["files"]
        assert f["path"] == "/mnt/data/plot.png" and f["storage_session_id"] == first["session_id"]
        sandbox.outputs = {}
        ref = {
            "id": f["id"],
            "resource_id": f["id"],
            "name": f["name"],
            "storage_session_id": f["storage_session_id"],
            "kind": "user",
        }
        r = client.post("/exec", headers=H, json={"code": "y", "lang": "py", "files": [ref]})
        assert r.status_code == 200
        assert sandbox.written_files == {"plot.png": b"\x89PNG..."}


class TestUploadAndFiles:
    def test_current_upload_shape(self, client: TestClient) -> None:
        """kind/id upload answers message, storage_session_id and files[0].fileId."""
        body = upload(client, kind="user", id="user-1")
        assert body["message"] == "success"
        assert body["storage_session_id"] == body["session_id"]
        assert body["files"][0]["filename"] == "data.csv" and len(body["files"][0]["fileId"]) == 21

    def test_legacy_listing_and_freshness(self, client: TestClient) -> None:
        """?detail=summary names start with {sid}/{fileId} and carry lastModified."""
        body = upload(client, entity_id="agent-1")
        sid, fid = body["session_id"], body["files"][0]["fileId"]
        items = client.get(f"/files/{sid}?detail=summary", headers=H).json()
        assert items[0]["name"].startswith(f"{sid}/{fid}") and "lastModified" in items[0]
        full = client.get(f"/files/{sid}?detail=full", headers=H).json()
        assert full[0]["metadata"]["original-filename"] == "data.csv"
        simple = client.get(f"/files/{sid}", headers=H).json()
        assert simple == [f"{sid}/{fid}.csv"]

    def test_session_object_and_download_and_delete(self, client: TestClient) -> None:
        """objects -> lastModified; download streams bytes; delete removes."""
        body = upload(client, body=b"hello")
        sid, fid = body["session_id"], body["files"][0]["fileId"]
        info = client.get(f"/sessions/{sid}/objects/{fid}?kind=user&id=x", headers=H).json()
        assert info["lastModified"].endswith("Z") and info["size"] == 5
        r = client.get(f"/download/{sid}/{fid}", headers=H)
        assert r.content == b"hello" and "attachment" in r.headers["content-disposition"]
        assert client.get(f"/download/{sid}/data.csv", headers=H).content == b"hello"
        assert client.delete(f"/files/{sid}/{fid}", headers=H).status_code == 200
        assert client.get(f"/download/{sid}/{fid}", headers=H).status_code == 404

    def test_batch_reports_each_file(self, client: TestClient) -> None:
        """Batch upload gives a status per file and partial success."""
        files = [("file", ("ok.txt", b"1", "text/plain")), ("file", ("../bad", b"2", "text/plain"))]
        r = client.post("/upload/batch", headers=H, files=files)
        body = r.json()
        assert (
            body["message"] == "partial_success" and body["succeeded"] == 1 and body["failed"] == 1
        )

    @pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a\u202egnp.exe"])
    def test_hostile_names(self, client: TestClient, name: str) -> None:
        """Escaping, absolute and bidi names are a clear 400."""
        r = client.post("/upload", headers=H, files={"file": (name, b"x", "text/plain")})
        assert r.status_code == 400, r.text

    def test_upload_without_file(self, client: TestClient) -> None:
        """A multipart request without a file part is a 400."""
        r = client.post("/upload", headers=H, data={"kind": "user"}, files={"other": ("a", b"x")})
        assert r.status_code == 400

    def test_bad_ids_are_400(self, client: TestClient) -> None:
        """Ids of the wrong shape are refused before any store call."""
        assert client.get("/files/short", headers=H).status_code == 400
        assert client.get(f"/sessions/{'a' * 21}/objects/bad!", headers=H).status_code == 400

    def test_unknown_session_is_404(self, client: TestClient) -> None:
        """An unknown session is a 404."""
        assert client.get(f"/files/{'a' * 21}", headers=H).status_code == 404


class TestOwnership:
    def test_other_users_files_are_refused_everywhere(self, client: TestClient) -> None:
        """Bob gets 403 on every route for Alice's session and file."""
        alice = {**H, "User-Id": "alice"}
        bob = {**H, "User-Id": "bob"}
        body = upload(client, headers=alice)
        sid, fid = body["session_id"], body["files"][0]["fileId"]
        assert client.get(f"/files/{sid}", headers=bob).status_code == 403
        assert client.get(f"/sessions/{sid}/objects/{fid}", headers=bob).status_code == 403
        assert client.get(f"/download/{sid}/{fid}", headers=bob).status_code == 403
        assert client.delete(f"/files/{sid}/{fid}", headers=bob).status_code == 403
        ref = {"id": fid, "storage_session_id": sid, "name": "x"}
        r = client.post("/exec", headers=bob, json={"code": "x", "lang": "py", "files": [ref]})
        assert r.status_code == 403
        r = client.post("/exec", headers=bob, json={"code": "x", "lang": "py", "session_id": sid})
        assert r.status_code == 403
        assert client.get(f"/download/{sid}/{fid}", headers=alice).status_code == 200


class TestAuth:
    @pytest.mark.parametrize(
        "headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}]
    )
    def test_rejected(self, client: TestClient, headers: dict[str, str]) -> None:
        """Missing or wrong credentials are a 401 JSON error."""
        r = client.post("/exec", headers=headers, json={"code": "x", "lang": "py"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"

    def test_bearer_key(self, client: TestClient) -> None:
        """A key as a Bearer token works."""
        r = client.post("/exec", headers={"Authorization": f"Bearer {KEY}"}, json={"code": "x"})
        assert r.status_code == 200


class TestOps:
    def test_health_and_ready(self, client: TestClient, sandbox: FakeSandbox) -> None:
        """Liveness is unconditional; readiness reports docker and storage separately
        to an authenticated caller, and only its status to anyone else."""
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").status_code == 200
        sandbox.ping_error = SandboxUnavailable("engine down")
        r = client.get("/ready", headers=H)
        assert (
            r.status_code == 503 and r.json()["docker"]["ok"] is False and r.json()["storage"]["ok"]
        )
        anonymous = client.get("/ready")
        assert (anonymous.status_code, anonymous.json()) == (503, {"status": "unavailable"})

    def test_metrics(self, client: TestClient) -> None:
        """Prometheus metrics include exec latency by language and outcome."""
        client.post("/exec", headers=H, json={"code": "x", "lang": "py"})
        text = client.get("/metrics", headers=H).text
        assert 'rce_exec_duration_seconds_count{language="py",outcome="ok"} 1.0' in text

    def test_request_id_echoed(self, client: TestClient) -> None:
        """Every answer carries X-Request-ID."""
        r = client.get("/health", headers={"X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"

    def test_oversized_body_is_413(self, client: TestClient) -> None:
        """A JSON body past RCE_MAX_BODY_BYTES is a 413."""
        r = client.post("/exec", headers=H, json={"code": "x" * (9 * 1024 * 1024), "lang": "py"})
        assert r.status_code == 413


class TestHostileBodies:
    @pytest.mark.parametrize(
        "raw",
        [
            b'{"code": "print(1)", "timeout": NaN}',
            b'{"code": "print(1)", "timeout": -5}',
            b'{"code": "print(1)\\ud800"}',
            b'{"code": "x", "args": ["\\udc00"]}',
        ],
    )
    def test_bad_values_are_400(self, client: TestClient, raw: bytes) -> None:
        """NaN or negative timeouts and lone surrogates are a clear 400, never a 500."""
        r = client.post("/exec", headers={**H, "Content-Type": "application/json"}, content=raw)
        assert r.status_code == 400, r.text

    def test_surrogate_body_key_is_401(self, client: TestClient) -> None:
        """A lone surrogate as the legacy body key is a wrong key."""
        raw = b'{"code": "x", "LIBRECHAT_CODE_API_KEY": "\\ud800"}'
        r = client.post("/exec", headers={"Content-Type": "application/json"}, content=raw)
        assert r.status_code == 401

    def test_chunked_body_over_the_limit_is_413(self, client: TestClient) -> None:
        """A streamed body without Content-Length is cut off at the limit with a 413."""

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"code": "'
            for _ in range(10):
                yield b"x" * (1024 * 1024)
            yield b'"}'

        r = client.post(
            "/exec", headers={**H, "Content-Type": "application/json"}, content=chunks()
        )
        assert r.status_code == 413
        assert r.json()["request_id"] != "-"

    def test_unexpected_errors_carry_the_request_id(
        self, client: TestClient, sandbox: FakeSandbox
    ) -> None:
        """A bug answers a 500 in the one shape, with the request's id."""
        sandbox.error = RuntimeError("boom")
        r = client.post(
            "/exec", headers={**H, "X-Request-ID": "req-500"}, json={"code": "x", "lang": "py"}
        )
        assert r.status_code == 500
        assert r.json() == {
            "error": "internal_error",
            "message": "internal error; see the server log",
            "status": 500,
            "request_id": "req-500",
        }


class TestAnonymousKeyCaller:
    """A key caller that names no user: capability reads, no writes to others' files."""

    def _alice_upload(self, client: TestClient) -> tuple[str, str]:
        up = upload(client, headers={**H, "User-Id": "alice"})
        return up["session_id"], up["files"][0]["fileId"]

    def test_reads_by_ids(self, client: TestClient) -> None:
        """Legacy LibreChat's download and freshness check (no user) keep working."""
        sid, fid = self._alice_upload(client)
        assert client.get(f"/download/{sid}/{fid}", headers=H).content == b"a,b\n1,2\n"
        listed = client.get(f"/files/{sid}?detail=summary", headers=H).json()
        assert [item["name"].startswith(f"{sid}/{fid}") for item in listed] == [True]

    def test_cannot_delete_a_users_file(self, client: TestClient) -> None:
        """DELETE without a user is refused for a user's file; the file stays."""
        sid, fid = self._alice_upload(client)
        r = client.delete(f"/files/{sid}/{fid}", headers=H)
        assert r.status_code == 403
        assert (
            client.get(f"/download/{sid}/{fid}", headers={**H, "User-Id": "alice"}).status_code
            == 200
        )

    def test_cannot_upload_into_a_users_session(self, client: TestClient) -> None:
        """Uploading into a user's session needs that user."""
        sid, _ = self._alice_upload(client)
        r = client.post(
            "/upload",
            headers=H,
            files={"file": ("x.txt", b"x", "text/plain")},
            data={"session_id": sid},
        )
        assert r.status_code == 403

    def test_cannot_exec_in_a_users_session(self, client: TestClient) -> None:
        """An exec that would write outputs into a user's session needs that user."""
        sid, _ = self._alice_upload(client)
        r = client.post("/exec", headers=H, json={"code": "x", "session_id": sid})
        assert r.status_code == 403

    def test_manages_its_own_files(self, client: TestClient) -> None:
        """What it uploaded itself it may delete."""
        up = upload(client)
        sid, fid = up["session_id"], up["files"][0]["fileId"]
        assert client.delete(f"/files/{sid}/{fid}", headers=H).status_code == 200


class TestDependencies:
    def test_every_request_dependency_runs_on_the_event_loop(self) -> None:
        # They do no I/O: a plain ``def`` would cost every request a hop to the
        # thread pool and back for each of them.
        from fastapi.dependencies.models import Dependant
        from fastapi.routing import APIRoute

        from handler.ptc_routes import build_ptc_router
        from handler.routes import build_router
        from handler.status import build_status_router

        def walk(dependant: Dependant) -> Iterator[Dependant]:
            for sub in dependant.dependencies:
                yield sub
                yield from walk(sub)

        seen = 0
        for router in (build_router(), build_ptc_router(), build_status_router("test")):
            for route in router.routes:
                assert isinstance(route, APIRoute)
                for dep in walk(route.dependant):
                    seen += 1
                    assert inspect.iscoroutinefunction(dep.call), (route.path, dep.call)
        assert seen >= 10
