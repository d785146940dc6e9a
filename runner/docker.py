"""``DockerSandbox``: the ``Sandbox`` port on a Docker engine.

With its private ``runner._docker_*`` modules, this is the only code importing ``docker``.

Every run gets a brand-new container that no other run touched: created from the
sandbox image with the hardening of ``runner._docker_config``, attached (stdin,
stdout, stderr) and started, or taken pre-started from the warm pool. The host
sends the agent inside one job (header + tar of the inputs), half-closes stdin and
reads one reply (``runner.protocol``), trusting nothing in it. The container is
then removed by a background thread, whatever happened; ``reap()`` removes the
ones a crashed process left behind once their ``org.rce.deadline`` has passed.

After creation every call addresses the container by its ``rce-sbx-…`` name (the
socket proxy in front of the engine only lets those through), and only these
endpoints are used: ``/_ping``, ``/version``, ``/images/{name}/json``,
``/containers/create``, ``/containers/{name}/{attach,start,wait,json,kill}``,
``DELETE /containers/{name}`` and ``GET /containers/json``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import docker
import docker.errors
import requests.exceptions

from core.errors import (
    SandboxError,
    SandboxStartFailed,
)
from runner import _docker_config as cfg
from runner._docker_errors import already_gone, engine_errors
from runner._docker_stream import AttachedStream, StreamTimeout
from runner.base import Limits, RunRequest, RunResult
from runner.pool import WarmPool
from runner.protocol import (
    FRAME,
    READY,
    ProtocolError,
    Reply,
    ReplyReader,
    build_result,
    encode_job_header,
    read_exact,
    write_input_tar,
)

log = logging.getLogger(__name__)

Client: TypeAlias = "docker.DockerClient | docker.APIClient"
ClientSource: TypeAlias = "Client | Callable[[], Client]"

_ATTACH = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
#: How long a pooled agent may take to import its libraries.
POOL_READY_TIMEOUT_S = 120.0
#: How long a pooled container may sit idle before it is replaced.
POOL_MAX_IDLE_S = 600.0


@dataclass(eq=False)
class _Container:
    """A created, attached and started sandbox container."""

    name: str
    stream: AttachedStream
    #: Unix time after which the reaper may remove it (its label).
    deadline: float
    pooled: bool = False
    removed: bool = field(default=False)


class DockerSandbox:
    """The ``Sandbox`` port on a Docker engine. Thread-safe; see the module docstring."""

    def __init__(
        self,
        client: ClientSource | None = None,
        *,
        image: str,
        gpu: bool = False,
        runtime: str | None = None,
        pool_size: int = 0,
        pool_limits: Limits | None = None,
        pool_max_idle_s: float = POOL_MAX_IDLE_S,
        max_run_timeout_s: float = 300.0,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """``client`` is a docker client or a factory for one (default: ``docker.from_env``).

        No I/O happens here except starting the warm pool's background threads when
        ``pool_size`` > 0 and ``pool_limits`` is given (otherwise the pool starts with
        the first run's limits). ``labels`` are added to every container.
        """
        self.image = image
        self.gpu = gpu
        self.runtime = runtime
        self._client_source: ClientSource = client if client is not None else docker.from_env
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._labels = dict(labels or {})
        self._max_run_timeout_s = max_run_timeout_s
        self._removal = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rce-remove")
        self._closing = threading.Event()
        self._stats_lock = threading.Lock()
        self._counters = dict.fromkeys(
            ("pool_hits", "pool_misses", "containers_started", "container_failures"), 0
        )
        self._pool: WarmPool[cfg.ContainerKey, _Container] | None = None
        self._pool_max_idle_s = pool_max_idle_s
        if pool_size > 0:
            self._pool = WarmPool(
                size=pool_size,
                create=self._create_pooled,
                destroy=self._discard,
                max_idle_s=pool_max_idle_s,
                healthy=lambda c: c.stream.idle_and_alive(),
            )
            if pool_limits is not None:
                self._pool.start(self._key(pool_limits))

    @classmethod
    def from_settings(
        cls,
        *,
        image: str,
        gpu: bool = False,
        runtime: str | None = None,
        pool_size: int = 0,
        limits: Limits | None = None,
        client: ClientSource | None = None,
        max_run_timeout_s: float = 300.0,
        labels: Mapping[str, str] | None = None,
    ) -> DockerSandbox:
        """The sandbox the service runs: its warm pool keyed by the configured ``limits``."""
        return cls(
            client,
            image=image,
            gpu=gpu,
            runtime=runtime,
            pool_size=pool_size,
            pool_limits=limits or Limits(),
            max_run_timeout_s=max_run_timeout_s,
            labels=labels,
        )

    # ------------------------------------------------------------------ port

    def run(self, request: RunRequest) -> RunResult:
        """Run one job in a fresh container; see ``runner.base.Sandbox.run``."""
        started = time.monotonic()
        header = encode_job_header(request)  # validates names before any container exists
        container = self._take_pooled(request) or self._start_cold(request)
        try:
            return self._exchange(container, request, header, started)
        finally:
            self._discard(container)

    def ping(self) -> None:
        """Raise ``SandboxError`` unless the engine answers and the image is present."""
        api = self._api()
        with engine_errors("answer a ping", self.image):
            api.ping()
        with engine_errors("inspect the sandbox image", self.image):
            api.inspect_image(self.image)  # type: ignore[no-untyped-call]

    def reap(self) -> int:
        """Remove our containers (``org.rce.service=rce``) whose deadline has passed."""
        api = self._api()
        with engine_errors("list sandbox containers", self.image):
            listed = api.containers(
                all=True, filters={"label": f"{cfg.LABEL_SERVICE}={cfg.SERVICE}"}
            )
        now = time.time()
        removed = 0
        for item in listed:
            labels = item.get("Labels") or {}
            if labels.get(cfg.LABEL_SERVICE) != cfg.SERVICE:
                continue
            try:
                deadline = float(labels.get(cfg.LABEL_DEADLINE, "0"))
            except ValueError:
                deadline = 0.0
            names = [n.lstrip("/") for n in item.get("Names") or []]
            name = next((n for n in names if n.startswith(cfg.NAME_PREFIX)), None)
            if name is None or deadline > now:
                continue
            try:
                with engine_errors("remove an expired sandbox", self.image):
                    api.remove_container(name, force=True)
                removed += 1
            except SandboxError as exc:
                if not already_gone(exc):
                    log.warning("reaper: could not remove %s: %s", name, exc.message)
        return removed

    def close(self) -> None:
        """Drain the warm pool and wait for pending removals. Idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._pool is not None:
            self._pool.close()
        self._removal.shutdown(wait=True)

    # --------------------------------------------------------------- helpers

    def wait_pool_ready(self, timeout_s: float = 60.0) -> bool:
        """Block until the warm pool is full (benchmarks and tests); False on timeout."""
        return self._pool is not None and self._pool.wait_ready(timeout_s=timeout_s)

    def stats(self) -> dict[str, int]:
        """Counters for /metrics: the warm pool and container starts."""
        pool = self._pool.stats() if self._pool is not None else {}
        with self._stats_lock:
            counters = dict(self._counters)
        return {
            "pool_size": pool.get("ready", 0),
            "pool_pending": pool.get("pending", 0),
            "pool_target": pool.get("size", 0),
            **counters,
        }

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self._counters[name] += 1

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                source = self._client_source
                with engine_errors("connect", self.image):
                    client = source() if callable(source) else source
                self._client = client.api if isinstance(client, docker.DockerClient) else client
            return self._client

    def _key(self, limits: Limits) -> cfg.ContainerKey:
        return cfg.container_key(self.image, limits, gpu=self.gpu, runtime=self.runtime)

    # ------------------------------------------------------------ containers

    def _create(self, key: cfg.ContainerKey, labels: dict[str, str], *, preload: bool) -> str:
        """Create (not start) a container; return its name."""
        api = self._api()
        name = cfg.new_name()
        body = cfg.create_body(key, container_labels=labels, preload=preload)
        try:
            with engine_errors("create the sandbox container", self.image):
                api.create_container_from_config(body, name=name)  # type: ignore[no-untyped-call]
        except SandboxError:
            self._count("container_failures")
            raise
        self._count("containers_started")
        return name

    def _attach_and_start(self, name: str, deadline: float, *, pooled: bool) -> _Container:
        api = self._api()
        container: _Container | None = None
        try:
            with engine_errors("attach to the sandbox container", self.image):
                attached = api.attach_socket(name, params=dict(_ATTACH))
            container = _Container(name, AttachedStream(attached), deadline, pooled=pooled)
            with engine_errors("start the sandbox container", self.image):
                api.start(name)
        except BaseException:
            self._count("container_failures")
            if container is not None:
                self._discard(container)
            else:
                self._remove_later(name)
            raise
        return container

    def _start_cold(self, request: RunRequest) -> _Container:
        budget = cfg.run_budget_s(request)
        labels = cfg.labels(
            exec_id=request.exec_id, deadline_s=budget, pooled=False, extra=self._labels
        )
        name = self._create(self._key(request.limits), labels, preload=False)
        return self._attach_and_start(name, float(labels[cfg.LABEL_DEADLINE]), pooled=False)

    def _create_pooled(self, key: cfg.ContainerKey) -> _Container:
        """Start a preloaded container and wait until its agent reports ready."""
        budget = self._pool_max_idle_s + self._max_run_timeout_s + 600.0
        labels = cfg.labels(exec_id="pool", deadline_s=budget, pooled=True, extra=self._labels)
        name = self._create(key, labels, preload=True)
        container = self._attach_and_start(name, float(labels[cfg.LABEL_DEADLINE]), pooled=True)
        try:
            self._wait_ready(container)
        except BaseException:
            self._discard(container)
            raise
        return container

    def _wait_ready(self, container: _Container) -> None:
        stream = container.stream
        end = time.monotonic() + POOL_READY_TIMEOUT_S
        while True:
            if self._closing.is_set():
                raise SandboxStartFailed("the sandbox is closing")
            stream.first_byte_deadline = min(end, time.monotonic() + 0.5)
            try:
                head = read_exact(stream, FRAME.size)
                break
            except StreamTimeout:
                if time.monotonic() >= end:
                    raise SandboxStartFailed("a pooled sandbox did not become ready") from None
        if len(head) != FRAME.size or FRAME.unpack(head) != (READY, 0):
            raise SandboxStartFailed("a pooled sandbox failed to start its agent")
        stream.got_reply = False

    def _take_pooled(self, request: RunRequest) -> _Container | None:
        if self._pool is None or self._closing.is_set():
            return None
        container = self._pool.take(self._key(request.limits))
        if container is None:
            self._count("pool_misses")
            return None
        if container.deadline - time.time() < cfg.run_budget_s(request):
            self._discard(container)
            self._count("pool_misses")
            return None
        self._count("pool_hits")
        return container

    def _discard(self, container: _Container) -> None:
        """Close the stream now; remove the container in the background."""
        if container.removed:
            return
        container.removed = True
        container.stream.close()
        self._remove_later(container.name)

    def _remove_later(self, name: str) -> None:
        try:
            self._removal.submit(self._remove, name)
        except RuntimeError:  # closed: remove inline
            self._remove(name)

    def _remove(self, name: str) -> None:
        try:
            with engine_errors("remove the sandbox container", self.image):
                self._api().remove_container(name, force=True)
        except SandboxError as exc:
            if not already_gone(exc):
                log.warning("could not remove %s (the reaper will): %s", name, exc.message)

    # -------------------------------------------------------------- exchange

    def _exchange(
        self, container: _Container, request: RunRequest, header: bytes, started: float
    ) -> RunResult:
        stream = container.stream
        sent = self._send_job(stream, request, header)
        now = time.monotonic()
        stream.first_byte_deadline = now + request.limits.run_timeout_s + cfg.START_GRACE_S
        stream.idle_s = cfg.IDLE_TIMEOUT_S
        stream.final_deadline = stream.first_byte_deadline + cfg.COLLECT_BUDGET_S
        reader = ReplyReader(stream, request)
        reply = reader.reply
        try:
            reader.read()
        except StreamTimeout as exc:
            if exc.got_reply:
                return self._failed(
                    container, request, reply, started, "the sandbox stopped answering"
                )
            return build_result(
                reply,
                request,
                duration_s=time.monotonic() - started,
                failure="timeout",
                timed_out=True,
            )
        except ProtocolError as exc:
            return self._failed(container, request, reply, started, f"invalid reply: {exc}")
        except OSError as exc:
            return self._failed(container, request, reply, started, f"lost the sandbox: {exc}")
        if reply.result is None:
            why = "the sandbox stopped before the program finished"
            if not sent:
                why = "the sandbox stopped while it was receiving the input files"
            return self._failed(container, request, reply, started, why)
        return build_result(reply, request, duration_s=time.monotonic() - started)

    def _send_job(self, stream: AttachedStream, request: RunRequest, header: bytes) -> bool:
        """Send the job and half-close stdin; False if the container hung up meanwhile."""
        stream.write_deadline = time.monotonic() + cfg.upload_budget_s(request)
        try:
            stream.write(header)
            if request.files:
                write_input_tar(request.files, stream)
            stream.close_stdin()
        except (OSError, StreamTimeout) as exc:
            log.info("sending the job failed: %s", exc)
            return False
        return True

    def _failed(
        self, container: _Container, request: RunRequest, reply: Reply, started: float, why: str
    ) -> RunResult:
        """The result of a run whose reply did not complete: say why, detect OOM."""
        state = self._final_state(container.name)
        oom = bool(state.get("OOMKilled"))
        diagnostics = bytes(container.stream.diagnostics).decode("utf-8", "replace").strip()
        if diagnostics:
            why = f"{why}\n{diagnostics[-2000:]}"
        exit_code = state.get("ExitCode")
        if isinstance(exit_code, int) and exit_code and not oom:
            why = f"{why} (agent exit code {exit_code})"
        return build_result(
            reply,
            request,
            duration_s=time.monotonic() - started,
            failure=why,
            oom_killed=oom,
        )

    def _final_state(self, name: str) -> dict[str, Any]:
        """The container's State once it stopped (killing it if it did not)."""
        api = self._api()
        try:
            with engine_errors("inspect the sandbox container", self.image):
                state: dict[str, Any] = api.inspect_container(name).get("State") or {}
                if state.get("Running"):
                    api.kill(name)
                    api.wait(name, timeout=10)
                    state = api.inspect_container(name).get("State") or {}
                return state
        except (SandboxError, requests.exceptions.RequestException) as exc:
            log.info("could not inspect %s: %s", name, exc)
            return {}
