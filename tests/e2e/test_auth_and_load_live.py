"""Auth before the body, bounded load and start-up refusals, through a real uvicorn.

Raw sockets announce huge bodies and send none: the server must answer 401 from the
headers alone, at once. Real sandboxes that sleep fill every exec slot and the queue:
the next exec is a 429 with ``Retry-After`` while ``/health`` and ``/ready`` stay fast.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import LiveServer, ServerStartError, live_server, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

KEY = "live-gate-key-0123456789abcdef"
FAST_S = 1.0
FIRST_PART = b"--b\r\nContent-Disposition: form-data; name=file; filename=a\r\n\r\n"


def _env(tmp_path: Path, image: str, **extra: str) -> dict[str, str]:
    return server_env(
        storage=f"file://{tmp_path / 'sessions'}",
        api_key=KEY,
        pool_size=0,
        extra={"RCE_IMAGE_NAME": image, **extra},
    )


@pytest.fixture(name="server")
def _server(tmp_path: Path, sandbox_image: str) -> Iterator[LiveServer]:
    env = _env(
        tmp_path,
        sandbox_image,
        RCE_MAX_CONCURRENT_EXECS="1",
        RCE_EXEC_QUEUE_SIZE="1",
        RCE_EXEC_QUEUE_TIMEOUT_S="60",
    )
    with live_server(env) as server:
        yield server


def _raw(
    server: LiveServer, head: str, body: bytes = b""
) -> tuple[int, dict[str, str], bytes, float]:
    """Send ``head`` (and ``body``) on a fresh socket; (status, headers, body, seconds)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - started
    header_block, _, rest = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest, elapsed


def _complete(data: bytes) -> bool:
    header_block, _, rest = data.partition(b"\r\n\r\n")
    for line in header_block.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return len(rest) >= int(value)
    return False


def _head(path: str, *headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return "\r\n".join(lines) + "\r\n\r\n"


class TestAuthBeforeBody:
    @pytest.mark.parametrize("path", ["/exec", "/upload", "/upload/batch", "/v1/exec"])
    def test_huge_announced_body_without_credentials(self, server: LiveServer, path: str) -> None:
        """10 GiB announced, nothing sent, no credentials: 401 at once."""
        status, headers, body, elapsed = _raw(
            server,
            _head(path, "Content-Type: application/json", f"Content-Length: {10 * 1024**3}"),
        )
        assert status == 401, body
        assert elapsed < FAST_S
        assert headers["www-authenticate"] == "Bearer"
        assert json.loads(body)["error"] == "unauthorized"

    def test_chunked_body_without_credentials(self, server: LiveServer) -> None:
        """Chunked multipart, first chunk only: 401 at once."""
        status, _, _, elapsed = _raw(
            server,
            _head(
                "/upload",
                "Content-Type: multipart/form-data; boundary=b",
                "Transfer-Encoding: chunked",
            ),
            b"%x\r\n%s\r\n" % (len(FIRST_PART), FIRST_PART),
        )
        assert (status, elapsed < FAST_S) == (401, True)

    def test_wrong_key_with_huge_body(self, server: LiveServer) -> None:
        """A wrong key is refused from the headers too."""
        status, _, _, elapsed = _raw(
            server,
            _head(
                "/upload",
                "X-API-Key: wrong-key-0123456789",
                "Content-Type: multipart/form-data; boundary=b",
                f"Content-Length: {10 * 1024**3}",
            ),
        )
        assert (status, elapsed < FAST_S) == (401, True)

    def test_legacy_body_key_oversize_is_refused_fast(self, server: LiveServer) -> None:
        """Key-in-body: a body past RCE_BODY_KEY_MAX_BYTES is refused, declared or chunked."""
        status, _, body, elapsed = _raw(
            server,
            _head("/exec", "Content-Type: application/json", f"Content-Length: {1024**3}"),
        )
        assert (status, elapsed < FAST_S) == (401, True)
        assert "RCE_BODY_KEY_MAX_BYTES" in json.loads(body)["message"]
        chunk = b" " * 0x10000
        chunked = (b"10000\r\n" + chunk + b"\r\n") * 2  # 128 KiB > 64 KiB, then silence
        status, _, _, elapsed = _raw(
            server,
            _head("/exec", "Content-Type: application/json", "Transfer-Encoding: chunked"),
            chunked,
        )
        assert (status, elapsed < FAST_S) == (401, True)

    def test_legacy_body_key_small_body_runs(self, server: LiveServer) -> None:
        """The original README's key-in-body form still runs code."""
        r = httpx.post(
            f"{server.base_url}/exec",
            json={"code": "print(6 * 7)", "lang": "py", "LIBRECHAT_CODE_API_KEY": KEY},
            timeout=60,
        )
        assert (r.status_code, r.json()["stdout"]) == (200, "42\n")


class TestBoundedLoad:
    def test_saturated_execs_429_and_health_stays_fast(self, server: LiveServer) -> None:
        """1 slot + 1 queue place held by sleeping sandboxes: the next exec is a 429 with
        Retry-After; /health and /ready answer fast meanwhile."""
        headers = {"X-API-Key": KEY, "User-Id": "load"}
        sleeper = {"code": "import time; time.sleep(6); print('slept')", "lang": "py"}
        with (
            httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client,
            ThreadPoolExecutor(2) as pool,
        ):
            running = [pool.submit(client.post, "/exec", json=sleeper) for _ in range(2)]
            deadline = time.monotonic() + 30
            while "rce_exec_queued 1.0" not in client.get("/metrics").text:
                assert time.monotonic() < deadline, "the second exec never queued"
                time.sleep(0.1)
            refused = client.post("/exec", json={"code": "print(1)"})
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"] == "exec_queue_full"
            for path in ("/health", "/ready"):
                started = time.monotonic()
                assert client.get(path).status_code == 200
                assert time.monotonic() - started < FAST_S
            results = [f.result(timeout=120) for f in running]
        assert [(r.status_code, r.json()["stdout"]) for r in results] == [(200, "slept\n")] * 2


class TestStartupRefusals:
    def test_no_auth_off_loopback_does_not_start(self, tmp_path: Path, sandbox_image: str) -> None:
        """RCE_AUTH_MODE=none with RCE_HOST=0.0.0.0 stops the server at start-up."""
        env = _env(tmp_path, sandbox_image, RCE_AUTH_MODE="none", RCE_HOST="0.0.0.0")
        with (
            pytest.raises(ServerStartError, match="RCE_ALLOW_INSECURE_NO_AUTH"),
            live_server(env, startup_timeout_s=60),
        ):
            pass

    def test_weak_key_off_loopback_does_not_start(self, tmp_path: Path, sandbox_image: str) -> None:
        """A change-me key with RCE_HOST=0.0.0.0 stops the server at start-up."""
        env = _env(tmp_path, sandbox_image, RCE_HOST="0.0.0.0")
        env["CUSTOM_RCE_API_KEY"] = "change-me"
        with (
            pytest.raises(ServerStartError, match="CUSTOM_RCE_API_KEY"),
            live_server(env, startup_timeout_s=60),
        ):
            pass
