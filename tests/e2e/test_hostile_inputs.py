"""A battery of hostile inputs through HTTP against the real API (uvicorn subprocess,
folder store, real Docker engine; ``RCE_AUTH_MODE=both``).

Every refused input must get a 4xx in the one JSON error shape (``error``,
``message``, ``status``, ``request_id``), never a 5xx and never a dropped
connection; the few inputs that must be accepted (Unicode names, an empty file)
round-trip. Canary sessions of other owners are checked after every section: their
files must be exactly as they were. Each section prints how many inputs it tried.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import (
    ERROR_KEYS,
    Api,
    EngineForwarder,
    Running,
    api_env,
    ok_json,
    snapshot,
    start_api,
)
from tests.support import tokens
from tests.support.tokens import Signer

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

KEY = "hostile-key-0123456789abcdef"
MAX_CODE = 64 * 1024
MAX_BODY = 256 * 1024
MAX_UPLOAD = 1024 * 1024
ANY_4XX = frozenset(range(400, 500))
DENIED = frozenset({403, 404})
BOUNDARY = "hostile-boundary-7f3a"
Check = Callable[[httpx.Response], str | None]


# --- the battery ----------------------------------------------------------------------


@dataclass
class Battery:
    """Sends inputs, records what each got, and says which answers were wrong."""

    base_url: str
    tried: int = 0
    server_errors: int = 0
    failures: list[str] = field(default_factory=list)

    def send(
        self,
        case: str,
        method: str,
        path: str,
        *,
        expect: frozenset[int] = ANY_4XX,
        check: Check | None = None,
        **request: Any,
    ) -> httpx.Response | None:
        """Send one request; a wrong status, shape or ``check`` becomes a failure."""
        self.tried += 1
        try:
            # A connection of its own: a 5xx may close the connection it came on,
            # and the next input must not be blamed for that.
            with httpx.Client(base_url=self.base_url, timeout=60.0) as client:
                response = client.request(method, path, **request)
        except Exception as exc:  # any failure to get an answer is a finding
            self.failures.append(f"{case}: no answer ({type(exc).__name__}: {exc})")
            return None
        status = response.status_code
        if status >= 500:
            self.server_errors += 1
        problem = None
        if status not in expect:
            problem = f"status {status} not in {_statuses(expect)}: {response.text[:300]}"
        elif status >= 400:
            problem = _shape_problem(response)
        if problem is None and check is not None:
            problem = check(response)
        if problem:
            self.failures.append(f"{case}: {problem}")
        return response

    def send_raw(self, case: str, request: bytes, *, expect: frozenset[int]) -> None:
        """Send bytes no client library would (a lying ``Content-Length``) and judge
        the answer the same way."""
        self.tried += 1
        url = httpx.URL(self.base_url)
        try:
            with socket.create_connection((url.host, url.port or 80), timeout=30) as sock:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                raw = b""
                while chunk := sock.recv(65536):
                    raw += chunk
        except OSError as exc:
            self.failures.append(f"{case}: no answer ({exc})")
            return
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        if status >= 500:
            self.server_errors += 1
        response = httpx.Response(status, content=body, request=httpx.Request("POST", url))
        problem = None
        if status not in expect:
            problem = f"status {status} not in {_statuses(expect)}: {raw[:300]!r}"
        elif status >= 400:
            problem = _shape_problem(response)
        if problem:
            self.failures.append(f"{case}: {problem}")

    def report(self, section: str, capsys: pytest.CaptureFixture[str]) -> None:
        """Print the summary line and fail with every wrong answer."""
        with capsys.disabled():
            print(
                f"\nhostile inputs [{section}]: {self.tried} tried, "
                f"{self.server_errors} answered 5xx, {len(self.failures)} wrong"
            )
        assert not self.failures, f"{len(self.failures)} of {self.tried} inputs misanswered:\n" + (
            "\n".join(f"  - {f}" for f in self.failures)
        )


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def _clear_failure(response: httpx.Response) -> str | None:
    """A 200 for a run that could not start must fail visibly, with no protocol bytes."""
    if response.status_code != 200:
        return None
    body = response.json()
    if body["exit_code"] == 0 or not body["stderr"].strip():
        return f"not a clear failure: {body}"
    if any(ord(c) < 9 or c == "\ufffd" for c in body["stdout"] + body["stderr"]):
        return f"protocol or binary bytes leaked into the output: {body['stdout'][:200]!r}"
    return None


def _statuses(expect: frozenset[int]) -> str:
    return "4xx" if expect == ANY_4XX else str(sorted(expect))


def _shape_problem(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return f"error body is not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or not set(body) >= ERROR_KEYS:
        return f"error body lacks {sorted(ERROR_KEYS - set(body or {}))}: {body}"
    if body["status"] != response.status_code or not body["message"]:
        return f"inconsistent error body: {body}"
    return None


# --- credentials, server and canaries -------------------------------------------------


@dataclass
class World:
    """The running server, who may call it, and the canary sessions."""

    running: Running
    signer: Signer
    #: session id -> (owner headers, name -> sha256, name -> file id)
    canaries: dict[str, tuple[Callable[[], dict[str, str]], dict[str, str], dict[str, str]]]

    def jwt(self, sub: str = "canary", tenant: str = "legacy", **kwargs: Any) -> dict[str, str]:
        """Bearer headers of a fresh LibreChat token."""
        return {"Authorization": f"Bearer {self.signer.mint(sub, tenant, **kwargs)}"}

    @staticmethod
    def key(user: str | None = None) -> dict[str, str]:
        """API-key headers, asserting ``user`` when given."""
        return {"X-API-Key": KEY, **({"User-Id": user} if user else {})}

    def battery(self) -> Battery:
        """A fresh battery on this server (no default credentials)."""
        return Battery(self.running.server.base_url)

    def canary(self, index: int) -> tuple[str, dict[str, str]]:
        """(session id, name -> file id) of a canary."""
        session_id = list(self.canaries)[index]
        return session_id, self.canaries[session_id][2]

    def check_canaries(self) -> None:
        """Every canary session is exactly as it was."""
        for session_id, (headers, files, _) in self.canaries.items():
            api = Api(self.running.server.base_url, headers())
            try:
                assert snapshot(api, session_id) == files, f"canary {session_id} changed"
            finally:
                api.close()


def _make_canary(
    base_url: str, headers: Callable[[], dict[str, str]]
) -> tuple[str, dict[str, str], dict[str, str]]:
    api = Api(base_url, headers())
    try:
        session_id = ok_json(api.upload("secret.txt", b"canary secret " + os.urandom(32)))[
            "session_id"
        ]
        run = ok_json(api.exec("open('made.txt', 'w').write('made')", session_id=session_id))
        assert run["exit_code"] == 0, run
        files = snapshot(api, session_id)
        ids = {e["name"]: e["id"] for e in ok_json(api.files(session_id, "normalized"))}
        return session_id, files, ids
    finally:
        api.close()


@pytest.fixture(scope="module")
def world(
    module_engine: EngineForwarder,
    sandbox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """The API with API keys and LibreChat JWTs, small limits, and two canaries: one
    of JWT user ``canary`` (tenant ``legacy``), one of key user ``alice``."""
    folder = tmp_path_factory.mktemp("hostile")
    signer = tokens.ed25519_signer()
    public = tokens.write_pem(folder / "public.pem", signer)
    env = api_env(
        {"RCE_STORAGE": f"file://{folder / 'store'}"},
        image=sandbox_image,
        engine=module_engine,
        api_key=KEY,
        jwt_public_key_file=public,
        pool_size=0,
        extra={
            "RCE_MAX_CODE_BYTES": str(MAX_CODE),
            "RCE_MAX_BODY_BYTES": str(MAX_BODY),
            "RCE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "RCE_RUN_TIMEOUT_S": "20",
        },
    )
    with start_api(env, folder / "api", {}) as running:
        world = World(running, signer, {})

        def canary_jwt() -> dict[str, str]:
            return world.jwt("canary")

        def alice_key() -> dict[str, str]:
            return World.key("alice")

        for headers in (canary_jwt, alice_key):
            session_id, files, ids = _make_canary(running.server.base_url, headers)
            world.canaries[session_id] = (headers, files, ids)
        yield world
        world.check_canaries()


# --- multipart by hand (names must reach the server byte for byte) --------------------


def _part(headers: list[bytes], body: bytes) -> bytes:
    return (
        b"--" + BOUNDARY.encode() + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body + b"\r\n"
    )


def file_part(filename: bytes, data: bytes = b"data", field_name: bytes = b"file") -> bytes:
    """A file part whose ``filename`` is sent exactly as given."""
    return _part(
        [
            b'Content-Disposition: form-data; name="'
            + field_name
            + b'"; filename="'
            + filename
            + b'"',
            b"Content-Type: application/octet-stream",
        ],
        data,
    )


def field_part(name: str, value: bytes) -> bytes:
    """A plain form field."""
    return _part([f'Content-Disposition: form-data; name="{name}"'.encode()], value)


def multipart(*parts: bytes) -> dict[str, Any]:
    """``content`` and ``headers`` of a multipart request made of ``parts``."""
    body = b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"
    return {
        "content": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    }


def _with(headers: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
    return {**request, "headers": {**request.get("headers", {}), **headers}}


# --- 1. exec bodies -------------------------------------------------------------------


def test_malformed_exec_bodies(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Malformed JSON, wrong types, hostile numbers and strings, oversized code and
    bodies, unknown languages: 4xx in the error shape (413 for sizes, 400 for lang)."""
    battery = world.battery()
    auth = World.key("hostile")
    json_h = {**auth, "Content-Type": "application/json"}
    raw_bodies: dict[str, bytes] = {
        "truncated JSON": b'{"code": "print(1)"',
        "not JSON": b"code=print(1)",
        "invalid UTF-8": b'{"code": "\xff\xfe"}',
        "JSON array": b'["print(1)"]',
        "JSON string": b'"print(1)"',
        "JSON null": b"null",
        "empty body": b"",
        "NaN timeout": b'{"code": "print(1)", "timeout": NaN}',
        "-Infinity timeout": b'{"code": "print(1)", "timeout": -Infinity}',
        "deeply nested JSON": b'{"code": "x", "a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "lone surrogate in code": b'{"code": "print(1)\\ud800", "lang": "py"}',
        "lone surrogate in session_id": b'{"code": "print(1)", "session_id": "\\udfff"}',
        "lone surrogate in files[].name": b'{"code": "print(1)", "files": [{"id": "'
        + b"a" * 21
        + b'", "session_id": "'
        + b"a" * 21
        + b'", "name": "\\ud800"}]}',
        "duplicate keys": b'{"code": 1, "code": {"a": 2}}',
    }
    for case, body in raw_bodies.items():
        battery.send(f"exec: {case}", "POST", "/exec", content=body, headers=json_h)
    battery.send(
        "exec: deeply nested JSON without credentials",
        "POST",
        "/exec",
        content=b"[" * 50_000 + b"]" * 50_000,
        headers={"Content-Type": "application/json"},
    )
    wrong_types: dict[str, Any] = {
        "code is a number": {"code": 5},
        "code is null": {"code": None},
        "code is missing": {"lang": "py"},
        "code is an object": {"code": {"src": "print(1)"}},
        "lang is a number": {"code": "print(1)", "lang": 5},
        "lang is a list": {"code": "print(1)", "lang": ["py"]},
        "args is an object": {"code": "print(1)", "args": {"a": 1}},
        "args holds objects": {"code": "print(1)", "args": [{"a": 1}]},
        "files is a string": {"code": "print(1)", "files": "abc"},
        "files[] without id": {"code": "print(1)", "files": [{"name": "x"}]},
        "files[] id is a list": {"code": "print(1)", "files": [{"id": ["a"]}]},
        "timeout is text": {"code": "print(1)", "timeout": "soon"},
        "timeout is negative": {"code": "print(1)", "timeout": -5},
        "timeout is zero": {"code": "print(1)", "timeout": 0},
        "session_id is a number": {"code": "print(1)", "session_id": 123},
        "1001 files[]": {"code": "x", "files": [{"id": "a" * 21}] * 1001},
    }
    for case, body in wrong_types.items():
        battery.send(f"exec: {case}", "POST", "/exec", json=body, headers=auth)
    # The server caps a huge timeout; accepting it (200) or refusing it (400) are both sane.
    battery.send(
        "exec: Infinity timeout",
        "POST",
        "/exec",
        content=b'{"code": "print(1)", "timeout": Infinity}',
        headers=json_h,
        expect=frozenset({200, 400}),
    )
    # An argument no program can receive: refused, or a failed run that says why.
    battery.send(
        "exec: lone surrogate in args",
        "POST",
        "/exec",
        content=b'{"code": "print(1)", "args": ["\\ud800"]}',
        headers=json_h,
        expect=frozenset({200, 400}),
        check=_clear_failure,
    )
    # A key caller without User-Id asserts its user in the body.
    no_user = {**World.key(), "Content-Type": "application/json"}
    asserted: dict[str, bytes] = {
        "user_id of 300 characters": b'{"code": "print(1)", "user_id": "' + b"u" * 300 + b'"}',
        "user_id with a newline": b'{"code": "print(1)", "user_id": "a\\nb"}',
        "user_id with a lone surrogate": b'{"code": "print(1)", "user_id": "\\ud800"}',
    }
    for case, body in asserted.items():
        battery.send(f"exec: {case}", "POST", "/exec", content=body, headers=no_user)
    for lang in ("cobol", "", " ", "py\x00", "l" * 10_000, "../../bin/sh", "PY3; rm -rf /"):
        battery.send(
            f"exec: unknown lang {lang[:20]!r}",
            "POST",
            "/exec",
            json={"code": "print(1)", "lang": lang},
            headers=auth,
            expect=frozenset({400}),
        )
    battery.send(
        "exec: code over RCE_MAX_CODE_BYTES",
        "POST",
        "/exec",
        json={"code": "#" * (MAX_CODE + 1)},
        headers=auth,
        expect=frozenset({413}),
    )
    battery.send(
        "exec: body over RCE_MAX_BODY_BYTES (declared)",
        "POST",
        "/exec",
        json={"code": "#" * (MAX_BODY + 10)},
        headers=auth,
        expect=frozenset({413}),
    )

    def chunked() -> Iterator[bytes]:
        yield b'{"code": "'
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"#" * 4096
        yield b'"}'

    battery.send(
        "exec: body over RCE_MAX_BODY_BYTES (chunked, no length)",
        "POST",
        "/exec",
        content=chunked(),
        headers=json_h,
        expect=frozenset({413}),
    )
    battery.send_raw(
        "exec: Content-Length far over the limit",
        b"POST /exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"X-API-Key: {KEY}\r\nContent-Length: 99999999999\r\n\r\n{{}}".encode(),
        expect=frozenset({413}),
    )
    battery.send("exec: GET instead of POST", "GET", "/exec", headers=auth)
    battery.send("exec: unknown route", "POST", "/exec/../admin", headers=auth)
    battery.report("exec bodies", capsys)
    world.check_canaries()


# --- 2. ids on every route ------------------------------------------------------------

MALFORMED_IDS = (
    "abc",
    "a" * 20 + "!",
    "a" * 22,
    "a" * 5000,
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2F..%2Fetc",
    "%00" + "a" * 20,
    quote("ñ" * 21),
    "%20" * 21,
    "a" * 20 + "%0a",
    quote("a" * 20 + "\u202e"),
)


def test_malformed_unknown_and_foreign_ids_on_every_route(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed ids get 400 (404 when they cannot even match a route), unknown ids
    404, ids of another owner's session or file 403/404, on every route."""
    battery = world.battery()
    me = World.key("id-prober")
    canary_sid, canary_ids = world.canary(0)
    canary_fid = canary_ids["secret.txt"]
    unknown_sid, unknown_fid = _valid_id(), _valid_id()
    mine = ok_json(Api(world.running.server.base_url, me).upload("mine.txt", b"mine"))
    my_sid, my_fid = mine["session_id"], mine["files"][0]["fileId"]

    for bad in MALFORMED_IDS:
        label = bad[:24]
        for method, path in (
            ("GET", f"/files/{bad}"),
            ("GET", f"/v1/files/{bad}"),
            ("GET", f"/sessions/{bad}/objects/{my_fid}"),
            ("GET", f"/sessions/{my_sid}/objects/{bad}"),
            ("GET", f"/download/{bad}/{my_fid}"),
            ("GET", f"/download/{my_sid}/{bad}"),
            ("DELETE", f"/files/{bad}/{my_fid}"),
            ("DELETE", f"/files/{my_sid}/{bad}"),
        ):
            battery.send(
                f"{method} {path.replace(bad, '<' + label + '>')}", method, path, headers=me
            )
    raw_bad = ("abc", "a" * 22, "../../etc/passwd", "a" * 20 + "\x00", "ñ" * 21, "a" * 64)
    for bad in raw_bad:
        label = repr(bad[:24])
        battery.send(
            f"exec session_id {label}",
            "POST",
            "/exec",
            json={"code": "print(1)", "session_id": bad},
            headers=me,
        )
        battery.send(
            f"exec files[].id {label}",
            "POST",
            "/exec",
            json={"code": "print(1)", "files": [{"id": bad, "session_id": my_sid}]},
            headers=me,
        )
        battery.send(
            f"exec files[].session_id {label}",
            "POST",
            "/exec",
            json={"code": "print(1)", "files": [{"id": my_fid, "session_id": bad}]},
            headers=me,
        )
        battery.send(
            f"upload session_id {label}", "POST", "/upload", **_with(me, _upload_into(bad))
        )
    for method, path in (
        ("GET", f"/files/{unknown_sid}"),
        ("GET", f"/sessions/{unknown_sid}/objects/{unknown_fid}"),
        ("GET", f"/sessions/{my_sid}/objects/{unknown_fid}"),
        ("GET", f"/download/{unknown_sid}/{unknown_fid}"),
        ("GET", f"/download/{my_sid}/{unknown_fid}"),
        ("GET", f"/download/{my_sid}/no-such-name.txt"),
        ("DELETE", f"/files/{unknown_sid}/{unknown_fid}"),
        ("DELETE", f"/files/{my_sid}/{unknown_fid}"),
    ):
        battery.send(f"unknown: {method} {path}", method, path, headers=me, expect=frozenset({404}))
    battery.send(
        "unknown: exec files[] of an unknown file",
        "POST",
        "/exec",
        json={"code": "print(1)", "files": [{"id": unknown_fid, "session_id": my_sid}]},
        headers=me,
        expect=frozenset({404}),
    )
    # A foreign id is a well-formed id of another owner's session or file.
    for method, path in (
        ("GET", f"/files/{canary_sid}"),
        ("GET", f"/sessions/{canary_sid}/objects/{canary_fid}"),
        ("GET", f"/download/{canary_sid}/{canary_fid}"),
        ("GET", f"/download/{canary_sid}/secret.txt"),
        ("DELETE", f"/files/{canary_sid}/{canary_fid}"),
        ("GET", f"/sessions/{my_sid}/objects/{canary_fid}"),
        ("GET", f"/download/{my_sid}/{canary_fid}"),
        ("DELETE", f"/files/{my_sid}/{canary_fid}"),
    ):
        battery.send(f"foreign: {method} {path}", method, path, headers=me, expect=DENIED)
    battery.send(
        "foreign: exec files[] naming the canary's file under my session",
        "POST",
        "/exec",
        json={"code": "print(1)", "files": [{"id": canary_fid, "session_id": my_sid}]},
        headers=me,
        expect=DENIED,
    )
    battery.report("ids", capsys)
    world.check_canaries()


def _valid_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    return "".join(secrets.choice(alphabet) for _ in range(21))


def _upload_into(session_id: str, name: bytes = b"x.txt") -> dict[str, Any]:
    return multipart(field_part("session_id", session_id.encode()), file_part(name))


# --- 3. upload names and multipart bodies ---------------------------------------------

REFUSED_NAMES: dict[str, bytes] = {
    "parent traversal": b"../../etc/passwd",
    "traversal in the middle": b"a/../../b.txt",
    "absolute path": b"/etc/passwd",
    "Windows traversal": b"..\\..\\windows\\win.ini",
    "UNC path": b"\\\\server\\share\\x.txt",
    "NUL byte": b"a\x00b.txt",
    "newline": b"a\nb.txt",
    "escape sequence": b"\x1b[31mred.txt",
    "4 KB name": b"A" * 4096,
    "4 KB of folders": b"d/" * 2048 + b"f.txt",
    "right-to-left override": "invoice\u202egpj.exe".encode(),
    "left-to-right isolate": "report\u2066.pdf".encode(),
    "zero-width space only": "\u200b".encode(),
    "empty name": b"",
    "blank name": b"   ",
    "dot": b".",
    "dot-dot": b"..",
    "encoded surrogate (invalid UTF-8)": b"\xed\xa0\x80.txt",
}


def test_hostile_upload_names_and_multipart_bodies(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Traversal, absolute, control, bidi and over-long names are refused with 400;
    Unicode names and an empty file are accepted and round-trip; broken multipart
    bodies are 400 and oversized files 413."""
    battery = world.battery()
    me = World.key("uploader")
    api = Api(world.running.server.base_url, me)
    for case, name in REFUSED_NAMES.items():
        battery.send(
            f"upload name: {case}",
            "POST",
            "/upload",
            expect=frozenset({400}),
            **_with(me, multipart(file_part(name))),
        )
    for accepted in ("données 😀 ✓.csv", "报告/季度 1.xlsx", "مرحبا.txt", "a'b;c d.txt", "CON"):
        battery.send(
            f"upload name: accepted {accepted!r}",
            "POST",
            "/upload",
            expect=frozenset({200}),
            check=_round_trips(api, accepted, b"unicode " + accepted.encode()),
            **_with(me, multipart(file_part(accepted.encode(), b"unicode " + accepted.encode()))),
        )
    battery.send(
        "upload: /mnt/data prefix is dropped",
        "POST",
        "/upload",
        expect=frozenset({200}),
        check=_round_trips(api, "inside.txt", b"data"),
        **_with(me, multipart(file_part(b"/mnt/data/inside.txt"))),
    )
    battery.send(
        "upload: empty file",
        "POST",
        "/upload",
        expect=frozenset({200}),
        check=_round_trips(api, "empty.txt", b""),
        **_with(me, multipart(file_part(b"empty.txt", b""))),
    )
    structures: dict[str, dict[str, Any]] = {
        "no file part": multipart(field_part("session_id", b"")),
        "'file' is a text field": multipart(field_part("file", b"not a file")),
        "file under another field name": multipart(file_part(b"x.txt", field_name=b"upload")),
        "no parts at all": multipart(),
        "wrong boundary": {
            "content": multipart(file_part(b"x.txt"))["content"],
            "headers": {"Content-Type": "multipart/form-data; boundary=other"},
        },
        "no boundary parameter": {
            "content": multipart(file_part(b"x.txt"))["content"],
            "headers": {"Content-Type": "multipart/form-data"},
        },
        "truncated body": {
            "content": multipart(file_part(b"x.txt", b"y" * 1000))["content"][:-40],
            "headers": multipart()["headers"],
        },
        "JSON instead of multipart": {"json": {"file": "x"}},
        "form-urlencoded": {"data": {"file": "x"}},
        "17 files in a single upload": multipart(
            *(file_part(f"f{i}.txt".encode()) for i in range(17))
        ),
        "unknown kind": multipart(field_part("kind", b"root"), file_part(b"x.txt")),
    }
    for case, request in structures.items():
        battery.send(f"upload: {case}", "POST", "/upload", **_with(me, request))
    # A key caller without User-Id asserts its user in the form's ``id``.
    for case, value in (("300 characters", b"u" * 300), ("a control character", b"a\x07b")):
        battery.send(
            f"upload: asserted user id of {case}",
            "POST",
            "/upload",
            expect=frozenset({400}),
            **_with(World.key(), multipart(field_part("id", value), file_part(b"x.txt"))),
        )
    battery.send(
        "upload: file over RCE_MAX_UPLOAD_BYTES",
        "POST",
        "/upload",
        expect=frozenset({413}),
        **_with(me, multipart(file_part(b"big.bin", b"\0" * (MAX_UPLOAD + 100_000)))),
    )
    battery.send(
        "upload: body far over the route limit",
        "POST",
        "/upload",
        expect=frozenset({413}),
        **_with(me, multipart(file_part(b"huge.bin", b"\0" * (3 * MAX_UPLOAD)))),
    )
    battery.send(
        "upload/batch: good and bad names",
        "POST",
        "/upload/batch",
        expect=frozenset({200}),
        check=_batch_statuses({"good.txt": "success", "../bad.txt": "error"}),
        **_with(me, multipart(file_part(b"good.txt"), file_part(b"../bad.txt"))),
    )
    api.close()
    battery.report("upload names", capsys)
    world.check_canaries()


def _round_trips(api: Api, name: str, data: bytes) -> Check:
    """The uploaded file is listed under ``name`` and downloads byte-exact, by id and
    by name, with a ``Content-Disposition`` naming it."""

    def check(response: httpx.Response) -> str | None:
        body = response.json()
        session_id, file_id = body["session_id"], body["files"][0]["fileId"]
        listed = ok_json(api.files(session_id, "normalized"))
        if [(e["name"], e["size"]) for e in listed] != [(name, len(data))]:
            return f"listed as {[(e['name'], e['size']) for e in listed]}"
        by_id = api.download(session_id, file_id)
        by_name = api.client.get(f"/download/{session_id}/{quote(name)}")
        if by_id.content != data or by_name.content != data:
            return f"downloads differ: {by_id.status_code} {by_name.status_code}"
        disposition = by_id.headers.get("content-disposition", "")
        if f"filename*=UTF-8''{quote(name.rsplit('/', 1)[-1])}" not in disposition:
            return f"Content-Disposition does not name it: {disposition!r}"
        return None

    return check


def _batch_statuses(expected: dict[str, str]) -> Check:
    def check(response: httpx.Response) -> str | None:
        got = {f["filename"]: f["status"] for f in response.json()["files"]}
        return None if got == expected else f"per-file statuses {got}"

    return check


# --- 4. credentials -------------------------------------------------------------------


def test_forged_expired_and_malformed_credentials(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every credential that is not a valid key or a valid LibreChat token gets 401
    (400 for a request that cannot be understood), on an exec and on a listing."""
    battery = world.battery()
    signer = world.signer
    canary_sid, _ = world.canary(0)
    good = signer.mint("canary")
    header = json.loads(tokens.b64url_decode(good.split(".")[0]))
    forged: dict[str, dict[str, str] | dict[str, bytes]] = {
        "no credentials": {},
        "wrong API key": {"X-API-Key": "not-the-key"},
        "API key with a suffix": {"X-API-Key": KEY + "x"},
        "API key prefix": {"X-API-Key": KEY[:-1]},
        "non-ASCII API key": {"X-API-Key": "ключ".encode()},
        "Latin-1 API key bytes": {"X-API-Key": b"\xff\xfe\xfd"},
        "Basic auth": {"Authorization": "Basic dXNlcjpwYXNz"},
        "empty Bearer": {"Authorization": "Bearer"},
        "Bearer garbage": {"Authorization": "Bearer abc"},
        "Bearer three dots": {"Authorization": "Bearer a.b.c"},
        "Bearer of 20 KB": {"Authorization": "Bearer " + "a" * 10_000 + "." + "b" * 10_000 + ".c"},
        "expired token": _bearer(tokens.expired(signer, sub="canary")),
        "token not yet valid": _bearer(tokens.not_yet_valid(signer, sub="canary")),
        "wrong audience": _bearer(tokens.wrong_audience(signer, sub="canary")),
        "wrong issuer": _bearer(tokens.wrong_issuer(signer, sub="canary")),
        "alg none": _bearer(tokens.forge_alg_none(good)),
        "HS256 signed with the public key": _bearer(
            tokens.forge_hmac_with_public_key(signer, sub="canary")
        ),
        "HS512 signed with the public key": _bearer(
            tokens.forge_hmac_with_public_key(signer, "HS512", sub="canary")
        ),
        "tampered sub": _bearer(tokens.tamper_payload(good, sub="someone-else")),
        "tampered tenant": _bearer(tokens.tamper_payload(good, tenant_id="other")),
        "tampered exp": _bearer(tokens.tamper_payload(good, exp=4102444800)),
        "signature stripped": _bearer(good.rsplit(".", 1)[0] + "."),
        "signature of another token": _bearer(
            good.rsplit(".", 1)[0] + "." + signer.mint("other").rsplit(".", 1)[1]
        ),
        "unconfigured key under the trusted kid": _bearer(tokens.wrong_key(sub="canary")),
        "kid is a number": _bearer(signer.mint("canary", header={"kid": 5})),
        "RS256 header on an Ed25519 signature": _bearer(
            signer.mint("canary", header={"alg": "RS256"})
        ),
        "typ is not JWT": _bearer(signer.mint("canary", header={**header, "typ": "xyz"})),
        "lifetime of a day": _bearer(signer.mint("canary", ttl_s=86_400)),
        "no exp": _bearer(signer.mint("canary", drop=("exp",))),
        "no sub": _bearer(signer.mint("canary", drop=("sub",))),
        "empty sub": _bearer(signer.mint("", claims={"sub": ""})),
        "sub of 1000 characters": _bearer(signer.mint("s" * 1000)),
        "sub with a control character": _bearer(signer.mint("a\u0007b")),
        "sub is a number": _bearer(signer.mint("canary", claims={"sub": 42})),
        "tenant_id is a list": _bearer(signer.mint("canary", claims={"tenant_id": ["a"]})),
        "iat is text": _bearer(signer.mint("canary", claims={"iat": "yesterday"})),
        "header is not JSON": _bearer(tokens.b64url(b"{not json") + "." + good.split(".", 1)[1]),
        "payload is not JSON": _bearer(
            good.split(".")[0] + "." + tokens.b64url(b"[1,2") + "." + good.split(".")[2]
        ),
        "payload is a JSON list": _bearer(
            signer.encode(signer.header(), {"x": 1}).split(".")[0]
            + "."
            + tokens.b64url(b"[1,2]")
            + "."
            + good.split(".")[2]
        ),
    }
    for case, headers in forged.items():
        expect = frozenset({401, 400})
        battery.send(
            f"auth exec: {case}",
            "POST",
            "/exec",
            json={"code": "print(1)"},
            headers=headers,
            expect=expect,
        )
        battery.send(
            f"auth list: {case}", "GET", f"/files/{canary_sid}", headers=headers, expect=expect
        )
    battery.send(
        "auth: key in the body is wrong",
        "POST",
        "/exec",
        json={"code": "print(1)", "LIBRECHAT_CODE_API_KEY": "wrong"},
        expect=frozenset({401}),
    )
    battery.send(
        "auth: key in the body holds a lone surrogate",
        "POST",
        "/exec",
        content=b'{"code": "print(1)", "LIBRECHAT_CODE_API_KEY": "\\ud800"}',
        headers={"Content-Type": "application/json"},
        expect=frozenset({401, 400}),
    )
    battery.send(
        "auth: key in the body is a number",
        "POST",
        "/exec",
        json={"code": "print(1)", "LIBRECHAT_CODE_API_KEY": 12345},
        expect=frozenset({401, 400}),
    )
    battery.report("credentials", capsys)
    world.check_canaries()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- 5. other owners ------------------------------------------------------------------


def test_cross_owner_reads_lists_deletes_and_execs_are_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another JWT user, the same user in another tenant, and key users asserting
    other ids cannot list, read, stat, delete, exec into, restore from or upload into
    the canaries' sessions."""
    battery = world.battery()
    jwt_sid, jwt_ids = world.canary(0)
    key_sid, key_ids = world.canary(1)
    attackers: dict[str, Callable[[], dict[str, str]]] = {
        "JWT sub mallory": lambda: world.jwt("mallory"),
        "JWT canary of another tenant": lambda: world.jwt("canary", "other"),
        "JWT mallory asserting User-Id canary": lambda: {
            **world.jwt("mallory"),
            "User-Id": "canary",
        },
        "JWT alice (the key user's name)": lambda: world.jwt("alice"),
        "key User-Id mallory": lambda: World.key("mallory"),
        "key User-Id canary (the JWT user's name)": lambda: World.key("canary"),
        "key User-Id bob": lambda: World.key("bob"),
    }
    targets = ((jwt_sid, jwt_ids, "canary"), (key_sid, key_ids, "alice"))
    for who, headers in attackers.items():
        for session_id, ids, owner in targets:
            file_id = ids["secret.txt"]
            tag = f"{who} -> {owner}'s session"
            for method, path in (
                ("GET", f"/files/{session_id}"),
                ("GET", f"/files/{session_id}?detail=full"),
                ("GET", f"/v1/files/{session_id}?detail=normalized"),
                ("GET", f"/sessions/{session_id}/objects/{file_id}"),
                ("GET", f"/download/{session_id}/{file_id}"),
                ("GET", f"/download/{session_id}/secret.txt"),
                ("GET", f"/v1/download/{session_id}/made.txt"),
                ("DELETE", f"/files/{session_id}/{file_id}"),
                ("DELETE", f"/v1/files/{session_id}/{ids['made.txt']}"),
            ):
                battery.send(
                    f"{tag}: {method} {path}", method, path, headers=headers(), expect=DENIED
                )
            exec_bodies: dict[str, dict[str, Any]] = {
                "exec with session_id": {
                    "code": "print(open('secret.txt').read())",
                    "session_id": session_id,
                },
                "exec with files[] (storage_session_id)": {
                    "code": "print(open('s.txt').read())",
                    "files": [{"id": file_id, "storage_session_id": session_id, "name": "s.txt"}],
                },
                "exec with files[] (legacy session_id)": {
                    "code": "print(1)",
                    "files": [{"id": file_id, "session_id": session_id}],
                },
                "exec with body user_id of the owner": {
                    "code": "print(1)",
                    "session_id": session_id,
                    "user_id": owner,
                },
            }
            for case, body in exec_bodies.items():
                battery.send(
                    f"{tag}: {case}", "POST", "/exec", json=body, headers=headers(), expect=DENIED
                )
            for route in ("/upload", "/upload/batch"):
                battery.send(
                    f"{tag}: {route} into it",
                    "POST",
                    route,
                    expect=DENIED,
                    **_with(headers(), _upload_into(session_id, b"secret.txt")),
                )
    battery.report("cross-owner", capsys)
    world.check_canaries()
