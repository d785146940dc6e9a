"""Shared pieces of ``bench.py`` and ``soak.py``: a local API process, an HTTP
client for the LibreChat-compatible routes, an RSS sampler, Docker helpers,
percentiles and a description of the machine.

Everything here talks to the API over HTTP only; the API is started as a separate
process (``python -m uvicorn handler.app:create_app --factory``) so that its RSS
is measured alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = "custom-rce-kernel:latest"
SERVICE_LABEL = "org.rce.service=rce"
MiB = 1024 * 1024


# --- errors -------------------------------------------------------------------------


class ApiError(Exception):
    """The API answered with a non-2xx status."""

    def __init__(self, status: int, body: str, route: str) -> None:
        super().__init__(f"{route}: HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body
        self.route = route


class WrongAnswer(Exception):
    """The API answered 2xx but the content is not what the request implies."""


def error_kind(exc: BaseException) -> str:
    """A short, countable name for a failed request."""
    if isinstance(exc, ApiError):
        return "http_5xx" if exc.status >= 500 else f"http_{exc.status}"
    if isinstance(exc, WrongAnswer):
        return "wrong_answer"
    if isinstance(exc, httpx.TransportError):
        return f"transport_{type(exc).__name__}"
    return f"client_{type(exc).__name__}"


# --- statistics -----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/min/max of a list of seconds."""
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# --- the machine ----------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def busy_cpu_s() -> float:
    """The machine's busy CPU seconds so far (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def docker_server_version() -> str:
    """The Docker engine's version, or why it is unknown."""
    try:
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({type(exc).__name__})"
    return out.stdout.strip()


def source_revision() -> str:
    """``git rev-parse --short HEAD`` of the checkout, ``+dirty`` with local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """nproc, memory, kernel, CPU model, Docker version, Python version."""
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "docker": docker_server_version(),
        "python": platform.python_version(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


# --- Docker helpers -------------------------------------------------------------------


def docker_available(image: str) -> str | None:
    """None when the engine answers and ``image`` exists, else the reason it does not."""
    try:
        subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return "no Docker engine answers (`docker info` failed)"
    try:
        subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return f"image {image} is missing (build it with images/build.sh)"
    return None


def containers_with_label(label: str) -> list[str]:
    """Ids of all containers (any state) carrying ``label`` (``key=value`` or ``key``)."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [line for line in out.stdout.split() if line]


def container_configs(ids: list[str]) -> dict[str, dict[str, Any]]:
    """Container id -> ``{"image": <name it was created from>, "labels": {...}}``;
    containers that vanished meanwhile are left out."""
    found: dict[str, dict[str, Any]] = {}
    for cid in ids:
        out = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config}}", cid],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if out.returncode == 0:
            config = json.loads(out.stdout or "{}") or {}
            found[cid] = {"image": config.get("Image", ""), "labels": config.get("Labels") or {}}
    return found


def tag_image(image: str, tag: str) -> None:
    """Give ``image`` a second name (no copy): containers created from ``tag`` can then
    be told apart from those of any other API on the same engine."""
    subprocess.run(["docker", "tag", image, tag], capture_output=True, timeout=60, check=True)


def untag_image(tag: str) -> None:
    """Remove a name ``tag_image`` added (the image itself stays)."""
    subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=60, check=False)


def remove_containers(ids: list[str]) -> None:
    """Force-remove containers by id (used only for containers this tool started)."""
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False)


@dataclass(frozen=True, slots=True)
class DockerRun:
    """One bare ``docker run --rm IMAGE python3 -c CODE``."""

    seconds: float
    exit_code: int
    stdout: str
    stderr: str


def bare_docker_run(image: str, code: str, label: str, timeout_s: float = 300) -> DockerRun:
    """Time ``docker run --rm IMAGE python3 -c CODE`` (the baseline); ``label`` only
    marks the container so an interrupted run can be cleaned up."""
    argv = ["docker", "run", "--rm", "--label", label, image, "python3", "-c", code]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    return DockerRun(time.perf_counter() - started, proc.returncode, proc.stdout, proc.stderr)


# --- the HTTP client ------------------------------------------------------------------


def _check(response: httpx.Response, route: str) -> httpx.Response:
    if response.status_code >= 300:
        raise ApiError(response.status_code, response.text, route)
    return response


@dataclass(frozen=True, slots=True)
class Uploaded:
    """A file the API stored: ``(storage_session_id, file id)`` plus what we sent."""

    session_id: str
    file_id: str
    name: str
    size: int
    sha256: str

    def ref(self) -> dict[str, str]:
        """The ``files[]`` entry that restores this file under its name."""
        return {
            "id": self.file_id,
            "storage_session_id": self.session_id,
            "session_id": self.session_id,
            "name": self.name,
        }


class RceClient:
    """The LibreChat-compatible routes over one ``httpx.Client`` (``X-API-Key`` auth)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 300.0,
        request_id_prefix: str | None = None,
    ) -> None:
        """``request_id_prefix``: send ``X-Request-ID: <prefix><n>`` so the sandbox
        containers of these requests can be told apart (their exec-id label)."""
        self._prefix = request_id_prefix
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"X-API-Key": api_key, "User-Agent": "LibreChat/1.0"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
        )
        self.requests = 0

    def _headers(self) -> dict[str, str]:
        self.requests += 1
        return {"X-Request-ID": f"{self._prefix}{self.requests}"} if self._prefix else {}

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def exec(
        self,
        code: str,
        *,
        files: list[dict[str, str]] | None = None,
        session_id: str | None = None,
        timeout_ms: int | None = None,
        lang: str = "py",
    ) -> dict[str, Any]:
        """``POST /exec``; the JSON answer."""
        body: dict[str, Any] = {"lang": lang, "code": code}
        if files:
            body["files"] = files
        if session_id:
            body["session_id"] = session_id
        if timeout_ms is not None:
            body["timeout"] = timeout_ms
        response = self._http.post("/exec", json=body, headers=self._headers())
        answer: dict[str, Any] = _check(response, "exec").json()
        return answer

    def upload(
        self,
        name: str,
        content: bytes | IO[bytes],
        *,
        session_id: str | None = None,
        size: int | None = None,
        sha256: str | None = None,
    ) -> Uploaded:
        """``POST /upload`` of one file; ``size``/``sha256`` describe a streamed file."""
        data = {"session_id": session_id} if session_id else None
        response = _check(
            self._http.post(
                "/upload", files={"file": (name, content)}, data=data, headers=self._headers()
            ),
            "upload",
        )
        answer = response.json()
        if answer.get("message") != "success" or not answer.get("files"):
            raise WrongAnswer(f"upload answer is not a success: {answer}")
        sid = answer.get("storage_session_id") or answer.get("session_id")
        if isinstance(content, bytes):
            size, sha256 = len(content), sha256_hex(content)
        return Uploaded(sid, answer["files"][0]["fileId"], name, size or 0, sha256 or "")

    def download_digest(self, session_id: str, file_id: str) -> tuple[int, str]:
        """``GET /download/{sid}/{fid}`` streamed: ``(size, sha256)`` of the bytes."""
        digest = hashlib.sha256()
        size = 0
        url = f"/download/{session_id}/{file_id}"
        with self._http.stream("GET", url, headers=self._headers()) as response:
            if response.status_code >= 300:
                response.read()
                _check(response, "download")
            for chunk in response.iter_bytes(MiB):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def download(self, session_id: str, file_id: str) -> bytes:
        """``GET /download/{sid}/{fid}``: the whole body."""
        url = f"/download/{session_id}/{file_id}"
        return _check(self._http.get(url, headers=self._headers()), "download").content

    def list_files(self, session_id: str, detail: str = "summary") -> list[Any]:
        """``GET /files/{sid}?detail=...``."""
        response = _check(
            self._http.get(
                f"/files/{session_id}", params={"detail": detail}, headers=self._headers()
            ),
            "files",
        )
        answer: list[Any] = response.json()
        return answer


def output_file(answer: Mapping[str, Any], name: str) -> dict[str, str]:
    """The entry of an exec answer's ``files`` named ``name``, or ``WrongAnswer``."""
    for item in answer.get("files") or ():
        if item.get("name") == name:
            return {
                "id": item["id"],
                "session_id": item.get("storage_session_id") or answer["session_id"],
            }
    raise WrongAnswer(f"exec answer lists no output file {name!r}: {answer.get('files')}")


def expect_stdout(answer: Mapping[str, Any], expected: str) -> None:
    """``WrongAnswer`` unless the exec printed exactly ``expected`` (and exited 0)."""
    got = str(answer.get("stdout", "")).strip()
    if got != expected or answer.get("exit_code", 0) != 0:
        raise WrongAnswer(
            f"stdout {got[:200]!r} (exit {answer.get('exit_code')}, stderr "
            f"{str(answer.get('stderr', ''))[-300:]!r}); expected {expected!r}"
        )


# --- the API process ------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_SETTINGS_CODE = (
    "import json; from handler.settings import Settings; s = Settings(); "
    "print(json.dumps({k: getattr(s, k) for k in ('pool_size', 'pool_data_size', "
    "'storage', 'image_name', 'mem_limit', 'cpu_limit', 'workspace_size', "
    "'max_file_bytes', 'max_upload_bytes', "
    "'runtime', 'log_level', 'run_timeout_s')}))"
)


@dataclass
class LocalApi:
    """The API as a subprocess on a free loopback port, with a folder store and a
    private ``TMPDIR`` under ``workdir``. Use as a context manager."""

    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def tmpdir(self) -> Path:
        """The API's ``TMPDIR``."""
        return self.workdir / "tmp"

    @property
    def store_dir(self) -> Path:
        """The folder store's root."""
        return self.workdir / "store"

    @property
    def log_path(self) -> Path:
        """Where the API's stdout and stderr go."""
        return self.workdir / "api.log"

    @property
    def pid(self) -> int:
        """The API process id."""
        assert self.process is not None, "the API is not started"
        return self.process.pid

    def environment(self) -> dict[str, str]:
        """The variables the API runs with: ours over the caller's environment."""
        env = dict(os.environ)
        env.update(
            {
                "CUSTOM_RCE_API_KEY": self.api_key,
                "RCE_STORAGE": f"file://{self.store_dir}",
                "TMPDIR": str(self.tmpdir),
                **self.settings,
            }
        )
        return env

    def effective_settings(self) -> dict[str, Any]:
        """The settings the API runs with, as the service's own ``Settings`` reads them."""
        out = subprocess.run(
            [sys.executable, "-c", _SETTINGS_CODE],
            env=self.environment(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            return {"settings_error": out.stderr.strip()[-300:]}
        settings: dict[str, Any] = json.loads(out.stdout)
        return settings

    def start(self, ready_timeout_s: float = 90.0) -> None:
        """Start uvicorn and wait until ``/health`` answers."""
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "handler.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=self.environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(ready_timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the API exited at start-up:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the API did not answer /health in {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the API printed."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 60.0) -> int | None:
        """SIGTERM (graceful: the lifespan drains the warm pool), then SIGKILL."""
        proc, self.process = self.process, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> LocalApi:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def leftover_files(directory: Path, pattern: str = "*") -> list[str]:
    """Paths under ``directory`` matching ``pattern`` (recursive), relative."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob(pattern))


def remove_tree(path: Path) -> None:
    """Remove a work folder this tool created."""
    shutil.rmtree(path, ignore_errors=True)


# --- RSS sampling ---------------------------------------------------------------------


class RssSampler:
    """Samples one process's RSS in a background thread; keeps the overall peak and
    the peak of the current window."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self._proc = psutil.Process(pid)
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.start_rss = self.read()
        self.peak = self.start_rss
        self._window_peak = self.start_rss

    def read(self) -> int:
        """The RSS now, in bytes (0 once the process is gone)."""
        try:
            return int(self._proc.memory_info().rss)
        except psutil.Error:
            return 0

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            rss = self.read()
            with self._lock:
                self.peak = max(self.peak, rss)
                self._window_peak = max(self._window_peak, rss)

    def start(self) -> RssSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=5)

    def begin_window(self) -> int:
        """Start a new window; returns the RSS now (the window's baseline)."""
        rss = self.read()
        with self._lock:
            self._window_peak = rss
        return rss

    def end_window(self) -> int:
        """The peak RSS since ``begin_window`` (including a final sample)."""
        rss = self.read()
        with self._lock:
            self._window_peak = max(self._window_peak, rss)
            self.peak = max(self.peak, rss)
            return self._window_peak


def mib(value: float | None) -> str:
    """Bytes as ``12.3 MiB``; ``n/a`` for None."""
    return "n/a" if value is None else f"{value / MiB:.1f} MiB"


def ms(value: float | None) -> str:
    """Seconds as milliseconds text; ``n/a`` for None."""
    return "n/a" if value is None else f"{value * 1000:.0f}"


def write_json(path: str | None, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as indented JSON when ``path`` is given."""
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
