"""``DockerSandbox``: the ``Sandbox`` port on a Docker engine.

With its private ``runner._docker_*`` modules, this is the only code importing ``docker``.

Every run gets a brand-new container that no other run touched: created from the
sandbox image with the hardening of ``runner._docker_config``, attached (stdin,
stdout, stderr) and started, or taken pre-started from a warm pool. The host sends
the agent inside one job (header + framed tar of the inputs; stdin stays open) and
reads one reply (``runner.protocol``), trusting nothing in it. The container is then
removed by a background thread, whatever happened; ``reap()`` removes the ones a
crashed process left behind once their ``org.rce.deadline`` has passed (or, never
started, soon after their creation).

There is a warm pool per ``Flavour``: LIGHT agents (python3 and the agent only,
cheap to refill), DATA agents (numpy, pandas and matplotlib imported, about half
a CPU-second to refill), and R and NODE agents holding an R or a node already
started and waiting for the program (``rce_agent.warm``). Python code importing a
data library takes a DATA container, R code an R one, JavaScript and TypeScript a
NODE one, anything else a LIGHT one. A DATA, R or NODE request finding none takes a
LIGHT one (started already, it beats a cold start); a LIGHT request takes a DATA one
only when there is no LIGHT pool (its refill costs more than the cold start it
saves). The R and NODE pools have a floor of 0 by default: they exist whenever the
LIGHT pool does and hold containers only while requests of their languages come. Cold
starts run the LIGHT agent too (by default), so Python code always runs in a forked
child of the agent, set up to behave as ``python3 main.py``. The pools grow
with the rate of the requests of their flavour, within a memory budget
(``runner.pool_sizing``); a request finding its pool empty waits for a container
being prepared when the measured figures say that is faster than its next option.

After creation every call addresses the container by its ``rce-sbx-…`` name (the
socket proxy in front of the engine only lets those through), and only these
endpoints are used: ``/_ping``, ``/version``, ``/images/{name}/json``,
``/containers/create``, ``/containers/{name}/{attach,start,wait,json,kill}``,
``/containers/{name}/rename`` (programmatic runs, ``runner.docker_ptc``),
``DELETE /containers/{name}`` and ``GET /containers/json``.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import docker
import docker.errors
import docker.transport
import requests.exceptions

from core.errors import (
    SandboxError,
    SandboxLost,
    SandboxStartFailed,
    SandboxUnavailable,
)
from runner import _docker_config as cfg
from runner import pool_sizing
from runner._docker_errors import already_gone, engine_errors
from runner._docker_stream import AttachedStream, StreamTimeout
from runner.activity import MAX_DELAY_S, Activity, Deferred
from runner.base import Limits, RunRequest, RunResult
from runner.network import SandboxNetwork
from runner.pool import MAX_PARALLEL_FILLS, WarmPool
from runner.pool_sizing import Ewma
from runner.protocol import (
    FRAME,
    READY,
    ProtocolError,
    Reply,
    ReplyReader,
    build_result,
    encode_job_header,
    read_exact,
    write_job_files,
)

log = logging.getLogger(__name__)

Client: TypeAlias = "docker.DockerClient | docker.APIClient"
ClientSource: TypeAlias = "Client | Callable[[], Client]"

_ATTACH = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
#: How long a pooled agent may take to import its libraries.
POOL_READY_TIMEOUT_S = 120.0
#: How long a pooled container may sit idle before it is replaced.
POOL_MAX_IDLE_S = 600.0
#: Pauses before each retry of a failed removal. The engine refuses to remove a
#: container whose kill it could not confirm within its own 2 s wait; a program
#: holding much memory on a busy host can take longer than that to die.
_REMOVE_RETRY_S = (0.1, 0.5, 2.0, 5.0)
#: Pauses of ``close()`` before its last tries at the removals that failed.
_CLOSE_RETRY_S = (0.0, 1.0, 3.0)
#: A container still in the "created" state this long after its creation was never
#: started (its creator died mid-way): the reaper removes it before its deadline.
UNSTARTED_GRACE_S = 300.0
#: Host memory one ready pooled container holds, in MB (measured: the agent alone,
#: then with numpy, pandas and matplotlib imported, 61 MiB by ``docker stats`` when
#: the agent imported them and 69 MiB with the waiting data interpreter that imports
#: them now (``rce_agent.pywarm``); R, NODE and JAVA: the container's
#: own usage, 46, 22 and 45 MiB by ``docker stats``, plus the ~7 MB the LIGHT figure
#: holds beyond its 7.7 MiB).
ENTRY_MB = {
    cfg.Flavour.LIGHT: 15.0,
    cfg.Flavour.DATA: 110.0,
    cfg.Flavour.R: 55.0,
    cfg.Flavour.NODE: 30.0,
    cfg.Flavour.JAVA: 55.0,
}
#: What a ready container holds more under gVisor, in MB: its Sentry (the sandbox's
#: kernel) and page cache. Measured by ``docker stats`` on idle warm containers of each
#: flavour under runsc (ptrace) beside runc: 21.5 against 8.1 MiB (light; 23.3 against
#: 5.3 with the child it forks before the job, so 16 MB), 96.7
#: against 68.8 (data, with its waiting interpreter; 85.2 against 61.5 before it),
#: 65.0 against 46.1 (r), 37.3 against 22.0 (node), 63.9 against 47.2 (java).
GVISOR_EXTRA_MB = {
    cfg.Flavour.LIGHT: 16.0,
    cfg.Flavour.DATA: 28.0,
    cfg.Flavour.R: 19.0,
    cfg.Flavour.NODE: 16.0,
    cfg.Flavour.JAVA: 17.0,
}


def default_pool_budget_mb(runtime: str | None) -> float:
    """The pools' memory budget when none is configured: ``DEFAULT_POOL_BUDGET_MB``,
    plus under gVisor the Sentries of the sandboxes it is sized for (3452 MB), so a
    gVisor host keeps as many sandboxes ready for a burst as a runc one."""
    if not cfg.is_gvisor(runtime):
        return DEFAULT_POOL_BUDGET_MB
    extra = sum(n * GVISOR_EXTRA_MB[flavour] for flavour, n in BUDGET_SIZED_FOR.items())
    return DEFAULT_POOL_BUDGET_MB + extra


def entry_mb(flavour: cfg.Flavour, runtime: str | None) -> float:
    """Host memory one ready container of ``flavour`` holds under ``runtime`` (MB): what
    the pools' memory budget counts it as."""
    extra = GVISOR_EXTRA_MB[flavour] if cfg.is_gvisor(runtime) else 0.0
    return ENTRY_MB[flavour] + extra


#: How long a container's agent waits for its removal after a complete reply instead
#: of exiting (``rce_agent.supervise.linger``): its exit, engine work, then comes with
#: the removal, which waits while execs come one at a time (``runner.activity``). Above
#: the longest that removal waits, so the container exits by itself only when the
#: host died meanwhile. A run that starts while another is in flight does not linger:
#: under concurrent load its removal would seldom wait, and killing a running
#: container costs the host more than removing one that exited (135 against 122 ms
#: of CPU per whole lifecycle, measured with the engine alone); its container exits
#: after the reply, and its removal first waits for that exit.
LINGER_S = MAX_DELAY_S + 10.0
#: Memory all warm containers may hold together under runc, the floors included
#: (README, "Budget"): a burst of 60 light execs needs 72 ready light sandboxes beside
#: the two data floors, with room for the data pool to grow to about 9.
DEFAULT_POOL_BUDGET_MB = 2048.0
#: The sandboxes the default budget is sized for, as the README's "Budget" says:
#: under gVisor it holds as many, each with its Sentry (``GVISOR_EXTRA_MB``).
BUDGET_SIZED_FOR = {cfg.Flavour.LIGHT: 72, cfg.Flavour.DATA: 9}
#: Preparation time assumed until the pool measured one (seconds; medians measured
#: with runc on a busy 2-core machine).
_PREPARE_PRIOR_S = {
    cfg.Flavour.LIGHT: 0.25,
    cfg.Flavour.DATA: 1.8,
    cfg.Flavour.R: 1.2,
    cfg.Flavour.NODE: 0.8,
    cfg.Flavour.JAVA: 2.0,
}
#: Run-time samples are clipped here: a long program says nothing about start-up.
_COST_SAMPLE_MAX_S = 5.0
#: Run time by (wanted flavour, how it was served) assumed until measured: a hit on
#: a warm container of that flavour, on a LIGHT one, or a cold start.
_PATH_PRIOR_S = {
    (cfg.Flavour.LIGHT, "light"): 0.02,
    (cfg.Flavour.LIGHT, "cold"): 0.24,
    (cfg.Flavour.DATA, "data"): 0.05,
    (cfg.Flavour.DATA, "light"): 0.7,
    (cfg.Flavour.DATA, "cold"): 0.9,
    (cfg.Flavour.R, "r"): 0.05,
    (cfg.Flavour.R, "light"): 0.8,
    (cfg.Flavour.R, "cold"): 1.0,
    (cfg.Flavour.NODE, "node"): 0.05,
    (cfg.Flavour.NODE, "light"): 0.35,
    (cfg.Flavour.NODE, "cold"): 0.6,
    (cfg.Flavour.JAVA, "java"): 0.4,
    (cfg.Flavour.JAVA, "light"): 1.0,
    (cfg.Flavour.JAVA, "cold"): 1.2,
}
#: The flavours whose pool exists whenever the LIGHT pool does (floor 0 by default).
ON_DEMAND_FLAVOURS = (cfg.Flavour.R, cfg.Flavour.NODE, cfg.Flavour.JAVA)


def _without_environment(api: docker.APIClient) -> docker.APIClient:
    """``api``, no longer reading proxies, ``.netrc`` and CA bundles from the environment
    at every call when its engine is a unix socket: none of them applies to a socket,
    and the lookup is about a quarter of the SDK's CPU per call."""
    adapters = list(getattr(api, "adapters", {}).values())
    if adapters and all(isinstance(a, docker.transport.UnixHTTPAdapter) for a in adapters):
        api.trust_env = False
    return api


@dataclass(eq=False)
class _Container:
    """A created, attached and started sandbox container."""

    name: str
    stream: AttachedStream
    #: Unix time after which the reaper may remove it (its label).
    deadline: float
    pooled: bool = False
    #: Its agent's READY frame is still to be read (a cold start of a warm flavour).
    ready_unread: bool = False
    #: Its agent sent a complete reply: it exits by itself, its removal can wait.
    finished: bool = False
    #: Its agent was told not to linger: after its reply it exits at once, and its
    #: removal first waits for that exit (the end of its stream).
    exits: bool = False
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
        network: SandboxNetwork | None = None,
        pool_size: int = 0,
        pool_data_size: int = 0,
        pool_r_size: int = 0,
        pool_node_size: int = 0,
        pool_java_size: int = 0,
        pool_limits: Limits | None = None,
        pool_max_idle_s: float = POOL_MAX_IDLE_S,
        max_run_timeout_s: float = 300.0,
        labels: Mapping[str, str] | None = None,
        cold_flavour: cfg.Flavour | None = cfg.Flavour.LIGHT,
        pool_budget_mb: float | None = None,
        pool_parallel_fills: int = MAX_PARALLEL_FILLS,
        language_pools: bool = True,
    ) -> None:
        """``client`` is a docker client or a factory for one (default: ``docker.from_env``).

        ``pool_size`` LIGHT and ``pool_data_size`` DATA containers are kept warm, and
        ``pool_r_size`` R, ``pool_node_size`` NODE and ``pool_java_size`` JAVA ones
        (these pools exist, with
        floor 0, whenever ``pool_size`` > 0 and ``language_pools``: they grow only with
        their requests; without them R, js, ts and java take LIGHT containers). No
        I/O happens here except starting the pools' background threads when a size is
        > 0 and ``pool_limits`` is given (otherwise they start with the first run's
        limits). ``labels`` are added to every container. A cold start runs the
        ``cold_flavour`` agent (LIGHT: Python code runs in a forked child of the agent,
        saving a second interpreter start); ``None`` runs Python as a fresh
        ``python3 main.py``, the behaviour the forked child reproduces.

        The pool sizes are floors: each pool grows with the rate of the requests it
        serves (``runner.pool_sizing``) while all the warm containers above the
        floors fit ``pool_budget_mb`` (default: ``default_pool_budget_mb``), preparing up
        to ``pool_parallel_fills`` at once.
        """
        self.image = image
        self.gpu = gpu
        self.runtime = runtime
        self.network = network
        self._client_source: ClientSource = client if client is not None else docker.from_env
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._labels = dict(labels or {})
        self._cold_flavour = cold_flavour
        self._max_run_timeout_s = max_run_timeout_s
        #: Runs in flight: refills and removals wait for a pause in them.
        self._activity = Activity()
        self._removal: Deferred[Callable[[], None]] = Deferred(
            lambda removal: removal(), self._activity, workers=4, name="rce-remove"
        )
        #: Names whose removal failed (the engine was unreachable): retried by
        #: ``reap()`` and ``close()``, so an outage does not leave them to the deadline.
        self._unremoved: set[str] = set()
        self._unremoved_lock = threading.Lock()
        self._closing = threading.Event()
        self._stats_lock = threading.Lock()
        self._counters = dict.fromkeys(
            ("pool_hits", "pool_misses", "containers_started", "container_failures"), 0
        )
        self._pool_max_idle_s = pool_max_idle_s
        self._pool_budget_mb = (
            default_pool_budget_mb(runtime) if pool_budget_mb is None else pool_budget_mb
        )
        self._pool_parallel = max(1, pool_parallel_fills)
        #: Measured run time by (wanted flavour, how it was served): what waiting for
        #: a container still being prepared is weighed against.
        self._path_costs = {path: Ewma(prior, alpha=0.1) for path, prior in _PATH_PRIOR_S.items()}
        self._pools: dict[cfg.Flavour, WarmPool[cfg.ContainerKey, _Container]] = {}
        sizes = {
            cfg.Flavour.LIGHT: pool_size,
            cfg.Flavour.DATA: pool_data_size,
            cfg.Flavour.R: pool_r_size,
            cfg.Flavour.NODE: pool_node_size,
            cfg.Flavour.JAVA: pool_java_size,
        }
        for flavour, size in sizes.items():
            on_demand = flavour in ON_DEMAND_FLAVOURS and pool_size > 0 and language_pools
            if size > 0 or on_demand:
                self._pools[flavour] = WarmPool(
                    size=size,
                    create=functools.partial(self._create_pooled, flavour=flavour),
                    destroy=self._discard,
                    max_idle_s=pool_max_idle_s,
                    healthy=lambda c: c.stream.idle_and_alive(),
                    parallel_fills=self._pool_parallel,
                    entry_mb=entry_mb(flavour, runtime),
                    prepare_prior_s=_PREPARE_PRIOR_S[flavour],
                    on_tick=self._replan,
                    on_demand=on_demand,
                    hold_back_s=self._activity.quiet_in,
                )
        self._exit_hook: Callable[[], None] | None = None
        if self._pools:
            # A process that exits without close() (a server stopped before its
            # start-up completed) must not leave its warm containers behind.
            self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
            atexit.register(self._exit_hook)
            if pool_limits is not None:
                for pool in self._pools.values():
                    pool.start(self._key(pool_limits))

    @classmethod
    def from_settings(
        cls,
        *,
        image: str,
        gpu: bool = False,
        runtime: str | None = None,
        network: SandboxNetwork | None = None,
        pool_size: int = 0,
        pool_data_size: int = 0,
        pool_r_size: int = 0,
        pool_node_size: int = 0,
        pool_java_size: int = 0,
        limits: Limits | None = None,
        client: ClientSource | None = None,
        max_run_timeout_s: float = 300.0,
        labels: Mapping[str, str] | None = None,
        pool_budget_mb: float | None = None,
        pool_parallel_fills: int = MAX_PARALLEL_FILLS,
    ) -> DockerSandbox:
        """The sandbox the service runs: its warm pools keyed by the configured ``limits``."""
        return cls(
            client,
            image=image,
            gpu=gpu,
            runtime=runtime,
            network=network,
            pool_size=pool_size,
            pool_data_size=pool_data_size,
            pool_r_size=pool_r_size,
            pool_node_size=pool_node_size,
            pool_java_size=pool_java_size,
            pool_limits=limits or Limits(),
            max_run_timeout_s=max_run_timeout_s,
            labels=labels,
            pool_budget_mb=pool_budget_mb,
            pool_parallel_fills=pool_parallel_fills,
        )

    # ------------------------------------------------------------------ port

    def run(self, request: RunRequest) -> RunResult:
        """Run one job in a fresh container; see ``runner.base.Sandbox.run``."""
        started = time.monotonic()
        # Validates names before any container exists.
        # Alone, the container lingers until the host is quiet; beside other runs
        # it exits by itself (see ``LINGER_S``).
        lingers = self._activity.in_flight == 0
        header = encode_job_header(request, linger_s=LINGER_S if lingers else 0.0)
        wanted = cfg.flavour_for(request)
        self._activity.begin()
        try:
            pooled = self._take_pooled(request, wanted)
            path = pooled[1] if pooled is not None else "cold"
            container = pooled[0] if pooled is not None else self._start_cold(request)
            container.exits = not lingers
            try:
                result = self._exchange(container, request, header, started)
            finally:
                self._discard(container)
        finally:
            self._activity.end()
        if not result.timed_out and not result.oom_killed:
            self._note_cost(wanted, path, time.monotonic() - started)
        return result

    def ping(self) -> None:
        """Raise ``SandboxError`` unless the engine answers and the image is present."""
        api = self._api()
        with engine_errors("answer a ping", self.image):
            api.ping()
        with engine_errors("inspect the sandbox image", self.image):
            api.inspect_image(self.image)  # type: ignore[no-untyped-call]

    def reap(self) -> int:
        """Remove our containers (``org.rce.service=rce``) whose deadline has passed,
        and those never started ``UNSTARTED_GRACE_S`` after their creation."""
        api = self._api()
        retried = self._retry_unremoved()
        with engine_errors("list sandbox containers", self.image):
            listed = api.containers(
                all=True, filters={"label": f"{cfg.LABEL_SERVICE}={cfg.SERVICE}"}
            )
        now = time.time()
        removed = retried
        for item in listed:
            labels = item.get("Labels") or {}
            if labels.get(cfg.LABEL_SERVICE) != cfg.SERVICE:
                continue
            names = [n.lstrip("/") for n in item.get("Names") or []]
            name = next((n for n in names if n.startswith(cfg.NAME_PREFIX)), None)
            if name is None or not _expired(name, item, labels, now):
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
        """Drain the warm pools and wait for pending removals. Idempotent.

        A pooled container being created meanwhile is removed once its creation
        returns: ``close()`` returns only after that.
        """
        if self._closing.is_set():
            return
        self._closing.set()
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
        closers = [
            threading.Thread(target=pool.close, name="rce-pool-close")
            for pool in self._pools.values()
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()
        self._removal.close()
        for pause_s in _CLOSE_RETRY_S:
            with self._unremoved_lock:
                if not self._unremoved:
                    break
            time.sleep(pause_s)
            self._retry_unremoved()

    # --------------------------------------------------------------- helpers

    def wait_pool_ready(self, timeout_s: float = 60.0) -> bool:
        """Block until every warm pool is full (benchmarks and tests); False on timeout."""
        end = time.monotonic() + timeout_s
        return bool(self._pools) and all(
            pool.wait_ready(timeout_s=max(0.0, end - time.monotonic()))
            for pool in self._pools.values()
        )

    def stats(self) -> dict[str, int]:
        """Counters for /metrics: the warm pools (all, then per flavour: ready, target,
        being prepared, hits and misses) and container starts."""
        pools = {flavour: pool.stats() for flavour, pool in self._pools.items()}
        with self._stats_lock:
            counters = dict(self._counters)
        per_flavour: dict[str, int] = {}
        for flavour in cfg.Flavour:
            got = pools.get(flavour, {})
            per_flavour[f"pool_size_{flavour.value}"] = got.get("ready", 0)
            per_flavour[f"pool_target_{flavour.value}"] = got.get("target", 0)
            per_flavour[f"pool_pending_{flavour.value}"] = got.get("pending", 0)
            per_flavour[f"pool_hits_{flavour.value}"] = got.get("hits", 0)
            per_flavour[f"pool_misses_{flavour.value}"] = got.get("misses", 0)
            per_flavour[f"pool_waited_{flavour.value}"] = got.get("waited", 0)
        return {
            "pool_size": sum(p["ready"] for p in pools.values()),
            "pool_pending": sum(p["pending"] for p in pools.values()),
            "pool_target": sum(p["target"] for p in pools.values()),
            "pool_budget_mb": int(self._pool_budget_mb),
            **per_flavour,
            **counters,
        }

    def _replan(self) -> None:
        """Set every pool's target from the demand it observed, within the budget."""
        demands = {flavour.value: pool.demand() for flavour, pool in self._pools.items()}
        plans = pool_sizing.plan(
            demands, budget_mb=self._pool_budget_mb, max_parallel=self._pool_parallel
        )
        for flavour, pool in self._pools.items():
            pool.set_plan(plans[flavour.value])

    def _note_cost(self, wanted: cfg.Flavour, path: str, seconds: float) -> None:
        cost = self._path_costs.get((wanted, path))
        if cost is not None:
            with self._stats_lock:
                cost.add(min(seconds, _COST_SAMPLE_MAX_S))

    def _extra_cost(self, wanted: cfg.Flavour, path: str, instead_of: str) -> float:
        """Measured: how much slower a ``wanted`` request served by ``path`` runs than
        one served by ``instead_of`` (0 when it is not slower)."""
        with self._stats_lock:
            slow = self._path_costs[(wanted, path)].value
            fast = self._path_costs[(wanted, instead_of)].value
        return max(0.0, slow - fast)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self._counters[name] += 1

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                source = self._client_source
                with engine_errors("connect", self.image):
                    client = source() if callable(source) else source
                api = client.api if isinstance(client, docker.DockerClient) else client
                self._client = _without_environment(api)
            return self._client

    def _key(self, limits: Limits) -> cfg.ContainerKey:
        return cfg.container_key(
            self.image, limits, gpu=self.gpu, runtime=self.runtime, network=self.network
        )

    # ------------------------------------------------------------ containers

    def _create(
        self,
        key: cfg.ContainerKey,
        labels: dict[str, str],
        *,
        warm: cfg.Flavour | None,
        name: str | None = None,
    ) -> str:
        """Create (not start) a container (named ``name`` or a fresh name); return its name."""
        api = self._api()
        name = name or cfg.new_name()
        body = cfg.create_body(key, container_labels=labels, warm=warm)
        try:
            with engine_errors("create the sandbox container", self.image):
                api.create_container_from_config(body, name=name)  # type: ignore[no-untyped-call]
        except SandboxError:
            self._count("container_failures")
            # A create that timed out may still have happened: try once, quietly.
            self._remove_later(name, retry_s=(), quiet=True)
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

    def _start_cold(self, request: RunRequest, *, name: str | None = None) -> _Container:
        budget = cfg.run_budget_s(request)
        labels = cfg.labels(
            exec_id=request.exec_id, deadline_s=budget, pooled=False, extra=self._labels
        )
        name = self._create(self._key(request.limits), labels, warm=self._cold_flavour, name=name)
        container = self._attach_and_start(name, float(labels[cfg.LABEL_DEADLINE]), pooled=False)
        container.ready_unread = self._cold_flavour is not None
        return container

    def _create_pooled(self, key: cfg.ContainerKey, *, flavour: cfg.Flavour) -> _Container:
        """Start a warm container of ``flavour`` and wait until its agent reports ready."""
        if self._closing.is_set():
            raise SandboxStartFailed("the sandbox is closing")
        budget = self._pool_max_idle_s + self._max_run_timeout_s + 600.0
        labels = cfg.labels(exec_id="pool", deadline_s=budget, pooled=True, extra=self._labels)
        name = self._create(key, labels, warm=flavour)
        container = self._attach_and_start(name, float(labels[cfg.LABEL_DEADLINE]), pooled=True)
        try:
            self._wait_ready(container)
        except BaseException:
            self._discard(container)
            raise
        return container

    def _wait_ready(self, container: _Container) -> None:
        """Wait for the agent's READY frame, giving up when the sandbox closes (or
        the process exits) or after ``POOL_READY_TIMEOUT_S``."""
        stream = container.stream
        end = time.monotonic() + POOL_READY_TIMEOUT_S
        while True:
            if self._closing.is_set() or not threading.main_thread().is_alive():
                raise SandboxStartFailed("the sandbox is closing")
            stream.first_byte_deadline = min(end, time.monotonic() + 0.5)
            try:
                _read_ready(stream)
                return
            except StreamTimeout:
                if time.monotonic() >= end:
                    raise SandboxStartFailed("a pooled sandbox did not become ready") from None
            except ProtocolError as exc:
                raise SandboxStartFailed("a pooled sandbox failed to start its agent") from exc

    def _take_pooled(
        self, request: RunRequest, wanted: cfg.Flavour
    ) -> tuple[_Container, str] | None:
        """A warm container for ``request`` (see ``_pool_order``) and the flavour it
        has, or None.

        With none ready, a pool may wait for a container it is preparing: when its
        expected remaining preparation time is below the measured extra run time of
        the next option (the next pool's ready container, or a cold start).
        """
        if not self._pools or self._closing.is_set():
            return None
        key = self._key(request.limits)
        order = self._pool_order(wanted)
        if wanted in self._pools:
            self._pools[wanted].record_arrival()
            self._replan()
        for index, flavour in enumerate(order):
            container = self._pools[flavour].take(
                key, alternative_s=self._wait_budget(wanted, flavour, order[index + 1 :])
            )
            if container is None:
                continue
            if container.deadline - time.time() < cfg.run_budget_s(request):
                self._discard(container)
                continue
            self._count("pool_hits")
            return container, flavour.value
        self._count("pool_misses")
        return None

    def _wait_budget(
        self, wanted: cfg.Flavour, here: cfg.Flavour, rest: list[cfg.Flavour]
    ) -> float:
        """What not waiting for a ``here`` container costs a ``wanted`` request: the
        measured extra run time of the next option with a ready container (else of
        a cold start) over a run on a ``here`` container; 0 (never wait) for a
        combination without a figure (a LIGHT request on the DATA pool)."""
        fallback = next((f.value for f in rest if self._pools[f].stats()["ready"] > 0), "cold")
        if (wanted, here.value) not in self._path_costs or (
            wanted,
            fallback,
        ) not in self._path_costs:
            return 0.0
        return self._extra_cost(wanted, fallback, here.value)

    def _pool_order(self, wanted: cfg.Flavour) -> list[cfg.Flavour]:
        """The pools a request of flavour ``wanted`` takes from, in order.

        A DATA, R or NODE request falls back to a LIGHT container (started already, it
        beats a cold start). A LIGHT request never takes a DATA container (its refill
        costs half a CPU-second, more than the cold start it saves) unless there is no
        LIGHT pool at all (then the DATA pool serves every request), nor an R or NODE
        one (kept for their languages).
        """
        if wanted is not cfg.Flavour.LIGHT:
            order = [wanted, cfg.Flavour.LIGHT]
        elif cfg.Flavour.LIGHT in self._pools:
            order = [cfg.Flavour.LIGHT]
        else:
            order = [cfg.Flavour.DATA]
        return [flavour for flavour in order if flavour in self._pools]

    def _discard(self, container: _Container) -> None:
        """Close the stream now; remove the container in the background: once the
        host is quiet when its agent replied (it exits by itself), at once otherwise."""
        if container.removed:
            return
        container.removed = True
        first = None
        if container.finished and container.exits:
            first = functools.partial(_await_exit, container.stream)  # closes it
        else:
            container.stream.close()
        self._remove_later(container.name, defer=container.finished, first=first)

    def _remove_later(
        self,
        name: str,
        *,
        retry_s: tuple[float, ...] = _REMOVE_RETRY_S,
        quiet: bool = False,
        defer: bool = False,
        first: Callable[[], None] | None = None,
    ) -> None:
        """Remove ``name`` in the background (inline once closed), at once or, with
        ``defer``, when the host is quiet; ``first`` runs before, in the same worker."""
        removal = functools.partial(self._remove, name, retry_s=retry_s, quiet=quiet)
        if first is not None:
            removal = functools.partial(_then, first, removal)
        try:
            if defer:
                self._removal.submit(removal)
            else:
                self._removal.now(removal)
        except RuntimeError:  # closed: remove inline
            removal()

    def _remove(
        self, name: str, *, retry_s: tuple[float, ...] = _REMOVE_RETRY_S, quiet: bool = False
    ) -> None:
        """Force-remove ``name``. An engine that answers with an error is asked again
        after each pause of ``retry_s``: it refuses to remove a container that exits
        while it kills it ("cannot remove - ... is not running")."""
        for delay_s in (*retry_s, None):
            try:
                with engine_errors("remove the sandbox container", self.image):
                    self._api().remove_container(name, force=True)
                self._forget_unremoved(name)
                return
            except SandboxError as exc:
                if already_gone(exc):
                    self._forget_unremoved(name)
                    return
                if delay_s is None or not isinstance(exc, SandboxStartFailed):
                    with self._unremoved_lock:
                        self._unremoved.add(name)
                    if not quiet:
                        log.warning("could not remove %s (retried later): %s", name, exc.message)
                    return
                time.sleep(delay_s)

    def _forget_unremoved(self, name: str) -> None:
        with self._unremoved_lock:
            self._unremoved.discard(name)

    def _retry_unremoved(self) -> int:
        """Try again to remove what an engine outage left behind; return how many went."""
        with self._unremoved_lock:
            pending = sorted(self._unremoved)
        for name in pending:
            self._remove(name, retry_s=(), quiet=True)
        with self._unremoved_lock:
            return sum(1 for name in pending if name not in self._unremoved)

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
        reader = ReplyReader(_AfterReady(stream) if container.ready_unread else stream, request)
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
        container.finished = True
        return build_result(reply, request, duration_s=time.monotonic() - started)

    def _send_job(self, stream: AttachedStream, request: RunRequest, header: bytes) -> bool:
        """Send the job; False if the container hung up meanwhile."""
        stream.write_deadline = time.monotonic() + cfg.upload_budget_s(request)
        try:
            stream.write(header)
            if request.files:
                write_job_files(request.files, stream)
            # No half-close: with StdinOnce=false the engine would end the whole attach
            # (stdout too). The job's end is framed; the agent needs no EOF.
        except (OSError, StreamTimeout) as exc:
            log.info("sending the job failed: %s", exc)
            return False
        return True

    def _failed(
        self, container: _Container, request: RunRequest, reply: Reply, started: float, why: str
    ) -> RunResult:
        """The result of a run whose reply did not complete: say why, detect OOM."""
        state = self._final_state(container.name)
        if state is None:
            raise SandboxLost(
                "the Docker engine running this exec stopped answering mid-run "
                f"({why}); the session's files are unchanged; run the code again"
            )
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

    def _final_state(self, name: str) -> dict[str, Any] | None:
        """The container's State once it stopped (killing it if it did not); None when
        the engine does not answer (it was lost, with the run)."""
        api = self._api()
        try:
            with engine_errors("inspect the sandbox container", self.image):
                state: dict[str, Any] = api.inspect_container(name).get("State") or {}
                if state.get("Running"):
                    api.kill(name)
                    api.wait(name, timeout=10)
                    state = api.inspect_container(name).get("State") or {}
                return state
        except SandboxUnavailable as exc:
            log.warning("could not inspect %s: %s", name, exc.message)
            return None
        except (SandboxError, requests.exceptions.RequestException) as exc:
            log.info("could not inspect %s: %s", name, exc)
            return {}


class _AfterReady:
    """The reply of a cold-started warm agent, its READY frame consumed first (so the
    program's silence is timed as before a reply). An agent too old to know its
    flavour sends none: its reply is read as is."""

    def __init__(self, stream: AttachedStream) -> None:
        self._stream = stream
        self._head: bytes | None = None

    def read(self, size: int) -> bytes:
        if self._head is None:
            head = read_exact(self._stream, FRAME.size)
            if head == FRAME.pack(READY, 0):
                self._stream.got_reply = False
                head = b""
            self._head = head
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)


#: Longest wait for a container that does not linger to exit after its reply, before
#: its removal kills it (its exit takes tens of milliseconds under runc).
EXIT_WAIT_S = 2.0


def _await_exit(stream: AttachedStream) -> None:
    """Wait (``EXIT_WAIT_S`` at most) for the end of a finished container's stream,
    then close it: removing a container as it exits makes the engine refuse ("is not
    running") and costs its kill path (about 13 ms of host CPU, measured)."""
    try:
        stream.drain_to_end(EXIT_WAIT_S)
    finally:
        stream.close()


def _then(first: Callable[[], None], second: Callable[[], None]) -> None:
    """``first()``, then ``second()`` whatever ``first`` did."""
    try:
        first()
    finally:
        second()


def _read_ready(stream: AttachedStream) -> None:
    """Consume the agent's READY frame (sent before it reads its job)."""
    head = read_exact(stream, FRAME.size)
    if len(head) != FRAME.size or FRAME.unpack(head) != (READY, 0):
        raise ProtocolError("the agent did not report ready")
    stream.got_reply = False


def _expired(name: str, item: Mapping[str, Any], labels: Mapping[str, str], now: float) -> bool:
    """Whether the reaper may remove this listed container.

    A programmatic run's container (``cfg.ptc_expiry`` of its name) expires when its
    name says, whatever its labels (a pooled one keeps the pool's), or once exited.
    """
    expiry = cfg.ptc_expiry(name)
    if expiry is not None:
        return expiry <= now or item.get("State") == "exited"
    try:
        if float(labels.get(cfg.LABEL_DEADLINE, "0")) <= now:
            return True
        created = float(labels.get(cfg.LABEL_CREATED, str(now)))
    except ValueError:
        return True
    return item.get("State") == "created" and now - created > UNSTARTED_GRACE_S


def _close_at_exit(ref: weakref.ref[DockerSandbox]) -> None:
    sandbox = ref()
    if sandbox is not None:
        sandbox.close()
