"""Run the real API as a subprocess for end-to-end tests.

``live_server(env)`` starts ``uvicorn handler.app:create_app --factory`` on a free
loopback port with exactly the settings given (plus the process basics such as
``PATH`` and ``DOCKER_HOST``), waits until ``/health`` answers, yields a
``LiveServer`` and stops the process on exit: SIGTERM to its process group, then
SIGKILL after a grace period. The server's output goes to a log file whose tail is
available for failure messages.

``server_env(...)`` builds the usual settings: API key, JWT public key file, storage
URL and pool size.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.docker_plugin import TEST_RUNTIME

REPO_ROOT = Path(__file__).resolve().parents[2]

# Variables a child needs from the parent; every RCE_*/AWS_* setting is explicit.
_PASSTHROUGH: tuple[str, ...] = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONFIG",
    "VIRTUAL_ENV",
    "CI",
)


class ServerStartError(RuntimeError):
    """The server exited or never became healthy; the message carries its log tail."""


@dataclass
class LiveServer:
    """A running API process."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, max_chars: int = 6000) -> str:
        """The end of the server's combined stdout/stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:]

    def log_problems(self, max_lines: int = 40) -> str:
        """The server's last warning and error lines (JSON logs), wherever they are in
        the log: a failure's cause may precede the tail by many requests."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        problems = [ln for ln in lines if _PROBLEM.search(ln) or ln.startswith("Traceback")]
        return "\n".join(problems[-max_lines:])

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None


#: A JSON log line at warning level or above.
_PROBLEM = re.compile(r'"level": "(?:warning|error|critical)"')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(
    *,
    storage: str,
    api_key: str | None = None,
    jwt_public_key_file: Path | None = None,
    pool_size: int = 1,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Settings for a server with API-key and/or JWT auth and the given store.

    ``storage`` is ``file:///abs/path`` or ``s3://bucket/prefix`` (put the S3 endpoint
    and credentials in ``extra``: ``RCE_S3_ENDPOINT``, ``RCE_S3_ACCESS_KEY``, ...).
    """
    env: dict[str, str] = {
        "RCE_STORAGE": storage,
        # ``pool_size`` sizes both warm pools (light and data); 0 means every exec is cold.
        "RCE_POOL_SIZE": str(pool_size),
        "RCE_POOL_DATA_SIZE": str(pool_size),
        "RCE_HOST": "127.0.0.1",
    }
    if TEST_RUNTIME:
        env["RCE_RUNTIME"] = TEST_RUNTIME
    if api_key and jwt_public_key_file:
        env["RCE_AUTH_MODE"] = "both"
    elif jwt_public_key_file:
        env["RCE_AUTH_MODE"] = "jwt"
    else:
        env["RCE_AUTH_MODE"] = "api_key"
    if api_key:
        env["CUSTOM_RCE_API_KEY"] = api_key
    if jwt_public_key_file:
        env["RCE_JWT_PUBLIC_KEY_FILE"] = str(jwt_public_key_file)
        env["RCE_JWT_ISSUER"] = "librechat"
        env["RCE_JWT_AUDIENCE"] = "codeapi"
    env.update(extra or {})
    return env


def _child_env(env: Mapping[str, str], port: int) -> dict[str, str]:
    child = {name: os.environ[name] for name in _PASSTHROUGH if name in os.environ}
    child.update(env)
    child["RCE_PORT"] = str(port)
    child.setdefault("RCE_HOST", "127.0.0.1")
    return child


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(server: LiveServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerStartError(
                f"server exited with {server.process.returncode} before it was healthy:\n"
                f"{server.log_tail()}"
            )
        if _healthy(f"{server.base_url}/health"):
            return
        time.sleep(0.2)
    raise ServerStartError(f"server not healthy after {timeout_s:.0f} s:\n{server.log_tail()}")


def stop(server: LiveServer, grace_s: float = 30.0) -> int | None:
    """SIGTERM the server's process group, wait ``grace_s``, then SIGKILL it."""
    process = server.process
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
    return process.returncode


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


@contextmanager
def live_server(
    env: Mapping[str, str],
    *,
    startup_timeout_s: float = 120.0,
    stop_grace_s: float = 30.0,
    log_dir: Path | None = None,
) -> Iterator[LiveServer]:
    """Start the API with ``env``, yield it once ``/health`` answers, then stop it."""
    port = free_port()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="rce-live-"))
    log_path = log_dir / f"server-{port}.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "handler.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_child_env(env, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_healthy(server, startup_timeout_s)
        yield server
    finally:
        stop(server, stop_grace_s)
