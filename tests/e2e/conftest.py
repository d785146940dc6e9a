"""Shared pieces of the end-to-end tests that drive the real API process.

- ``EngineForwarder``: a unix-socket forwarder to the real Docker engine that can be
  stopped and started (the engine "goes away" without touching dockerd) and that
  records the name of every sandbox container created through it, so a test can
  prove that none of *its* containers is left, whatever else runs on the engine.
- ``Api``: a small ``httpx`` client for the service's routes.
- ``start_api``: the real API (``tests.support.live_server``) wired to a forwarder,
  with its own ``TMPDIR`` that must be empty once the server has stopped.
- ``snapshot``: a session's files as name -> sha256, each one downloaded and checked.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from tests.support.live_server import LiveServer, live_server, server_env
from tests.support.s3_plugin import make_s3_store, random_bucket
from tests.support.seaweed import ACCESS_KEY, SECRET_KEY

#: The label every sandbox of the service carries.
SERVICE_LABEL = "org.rce.service=rce"
ERROR_KEYS = {"error", "message", "status", "request_id"}
_CREATE_RE = re.compile(rb"/containers/create\?name=(rce-sbx-[0-9a-f]+)")
_RECV = 64 * 1024


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def engine_socket() -> str:
    """The path of the real engine's unix socket (``DOCKER_HOST`` or the default)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"these tests forward a local engine socket; DOCKER_HOST={host}")
    return host.removeprefix("unix://")


# --- the engine forwarder -------------------------------------------------------------


class EngineForwarder:
    """Forwards ``unix://<tmp>/engine.sock`` to the real engine socket.

    ``stop()`` closes the listener and every open connection (the API then sees a
    dead engine); ``start()`` listens again on the same path. Half-closes are
    forwarded, since the sandbox protocol ends its input with one. Every
    ``POST /containers/create?name=rce-sbx-…`` seen is recorded in ``created``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._dir = Path(tempfile.mkdtemp(prefix="rce-fwd-"))
        self.path = self._dir / "engine.sock"
        self.created: list[str] = []
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None

    @property
    def docker_host(self) -> str:
        """The ``DOCKER_HOST`` value that reaches the engine through this forwarder."""
        return f"unix://{self.path}"

    def start(self) -> None:
        """Listen (again) on ``path``."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stop.clear()
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.path.unlink(missing_ok=True)
        with self._lock:
            conns, self._conns = set(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        """Stop and remove the socket's folder."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.upstream)
            except OSError:
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            done = threading.Barrier(2, action=functools.partial(self._close, client, upstream))
            for src, dst, record in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, record, done), daemon=True
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, record: bool, done: threading.Barrier
    ) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(_RECV)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    break
                if record:
                    window = tail + data
                    self._record(window)
                    tail = window[-128:]
                dst.sendall(data)
        except OSError:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait(timeout=600)

    def _record(self, window: bytes) -> None:
        with self._lock:
            for match in _CREATE_RE.finditer(window):
                name = match.group(1).decode()
                if name not in self.created:
                    self.created.append(name)

    def _close(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._conns.discard(sock)
        for sock in socks:
            sock.close()


def existing(client: docker.DockerClient, names: list[str]) -> list[str]:
    """Which of ``names`` are still containers on the engine (any state)."""
    listed = client.api.containers(all=True, filters={"label": SERVICE_LABEL})
    present = {n.lstrip("/") for item in listed for n in item.get("Names") or []}
    return [name for name in names if name in present]


def wait_gone(client: docker.DockerClient, names: list[str], timeout_s: float = 30.0) -> list[str]:
    """Wait until none of ``names`` exists; the names still there after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while True:
        left = existing(client, names)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.25)


def force_remove(client: docker.DockerClient, names: list[str]) -> None:
    """Remove containers, ignoring the ones already gone."""
    for name in names:
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_container(name, force=True)


@contextlib.contextmanager
def forwarded_engine(client: docker.DockerClient) -> Iterator[EngineForwarder]:
    """A started forwarder to the real engine. At the end, every sandbox created
    through it must be gone (stragglers are removed, then reported)."""
    forwarder = EngineForwarder(engine_socket())
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.start()  # a test may end with the engine "down"
        left = wait_gone(client, list(forwarder.created))
        force_remove(client, left)
        forwarder.close()
    assert not left, f"sandbox containers left behind: {left}"


@pytest.fixture
def engine(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[EngineForwarder]:
    """The engine behind a forwarder, for one test (see ``forwarded_engine``)."""
    with forwarded_engine(docker_client) as forwarder:
        yield forwarder


@pytest.fixture(scope="module")
def module_engine(
    docker_client: docker.DockerClient, sandbox_image: str
) -> Iterator[EngineForwarder]:
    """The engine behind a forwarder, shared by a module's tests."""
    with forwarded_engine(docker_client) as forwarder:
        yield forwarder


# --- the HTTP client ------------------------------------------------------------------


@dataclass
class Api:
    """The service's routes over one ``httpx.Client`` (safe to share between threads)."""

    base_url: str
    headers: dict[str, str]
    timeout_s: float = 120.0
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=self.headers,
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
        )

    def as_(self, headers: Mapping[str, str]) -> Api:
        """The same server with other credentials (replaces ``headers``)."""
        return Api(self.base_url, dict(headers), self.timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def exec(self, code: str, **fields: Any) -> httpx.Response:
        """``POST /exec`` with ``{"code": code, "lang": "py", **fields}``."""
        return self.client.post("/exec", json={"code": code, "lang": "py", **fields})

    def upload(
        self, name: str, data: bytes, session_id: str | None = None, **fields: str
    ) -> httpx.Response:
        """``POST /upload`` of one file (multipart ``file``)."""
        form = dict(fields)
        if session_id:
            form["session_id"] = session_id
        return self.client.post(
            "/upload", files={"file": (name, data, "application/octet-stream")}, data=form
        )

    def files(self, session_id: str, detail: str = "full") -> httpx.Response:
        """``GET /files/{sid}?detail=...``."""
        return self.client.get(f"/files/{session_id}", params={"detail": detail})

    def download(self, session_id: str, ref: str) -> httpx.Response:
        """``GET /download/{sid}/{file id or name}``."""
        return self.client.get(f"/download/{session_id}/{ref}")

    def delete(self, session_id: str, file_id: str) -> httpx.Response:
        """``DELETE /files/{sid}/{fid}``."""
        return self.client.delete(f"/files/{session_id}/{file_id}")

    def ready(self) -> httpx.Response:
        """``GET /ready``."""
        return self.client.get("/ready")


def ok_json(response: httpx.Response) -> Any:
    """The JSON body of a 200, or an assertion naming the status and body."""
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: " + (
        f"{response.status_code} {response.text[:2000]}"
    )
    return response.json()


def assert_error_shape(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The one JSON error shape: ``error``, ``message``, ``status``, ``request_id``."""
    where = f"{response.request.method} {response.request.url}"
    if status is not None:
        assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
    body: dict[str, Any] = response.json()
    assert set(body) >= ERROR_KEYS, f"{where}: error body lacks {ERROR_KEYS - set(body)}: {body}"
    assert body["status"] == response.status_code, f"{where}: {body}"
    assert isinstance(body["message"], str) and body["message"], f"{where}: {body}"
    return body


def snapshot(api: Api, session_id: str) -> dict[str, str]:
    """The session's files as name -> sha256: every listed file is downloaded whole
    and its bytes must match the sha256 and size the listing reports."""
    entries = ok_json(api.files(session_id, "full"))
    out: dict[str, str] = {}
    for entry in entries:
        name = entry["metadata"]["original-filename"]
        body = api.download(session_id, entry["id"])
        assert body.status_code == 200, f"download {name}: {body.status_code} {body.text[:300]}"
        assert len(body.content) == entry["size"], f"{name}: size {len(body.content)} != listed"
        assert sha256(body.content) == entry["metadata"]["sha256"], f"{name}: torn or changed"
        assert name not in out, f"two files named {name!r} in session {session_id}"
        out[name] = sha256(body.content)
    return out


# --- the server -----------------------------------------------------------------------


@dataclass
class Running:
    """A live API process and a client for it."""

    server: LiveServer
    api: Api
    tmpdir: Path


def s3_settings(endpoint: str, *, bucket: str | None = None) -> dict[str, str]:
    """``RCE_*`` settings for a fresh (created) bucket on an S3 endpoint."""
    bucket = bucket or random_bucket("e2e")
    make_s3_store(endpoint, bucket)
    return {
        "RCE_STORAGE": f"s3://{bucket}/sessions",
        "RCE_S3_ENDPOINT": endpoint,
        "RCE_S3_REGION": "us-east-1",
        "RCE_S3_ACCESS_KEY": ACCESS_KEY,
        "RCE_S3_SECRET_KEY": SECRET_KEY,
    }


def api_env(
    storage: Mapping[str, str],
    *,
    image: str,
    engine: EngineForwarder | None,
    api_key: str | None = None,
    jwt_public_key_file: Path | None = None,
    pool_size: int = 0,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one API process (``server_env`` plus image and engine)."""
    settings = dict(storage)
    env = server_env(
        storage=settings.pop("RCE_STORAGE"),
        api_key=api_key,
        jwt_public_key_file=jwt_public_key_file,
        pool_size=pool_size,
        extra={**settings, "RCE_IMAGE_NAME": image, "RCE_LOG_JSON": "true", **(extra or {})},
    )
    if engine is not None:
        env["DOCKER_HOST"] = engine.docker_host
    return env


@contextlib.contextmanager
def start_api(
    env: Mapping[str, str],
    workdir: Path,
    headers: Mapping[str, str],
    *,
    check_tmp: bool = True,
) -> Iterator[Running]:
    """Run the API with ``env`` and its own ``TMPDIR`` under ``workdir``; stop it on exit.

    After a clean exit the server's ``TMPDIR`` must be empty: nothing it spooled may
    be left behind.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix="tmp-", dir=workdir))
    with live_server({**env, "TMPDIR": str(tmpdir)}, log_dir=workdir) as server:
        api = Api(server.base_url, dict(headers))
        try:
            yield Running(server, api, tmpdir)
        finally:
            api.close()
    left = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*"))
    shutil.rmtree(tmpdir, ignore_errors=True)
    if check_tmp:
        assert not left, f"the server left temporary files behind: {left[:20]}"
