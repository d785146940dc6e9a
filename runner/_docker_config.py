"""The Engine API body of a sandbox container, built by pure functions.

Everything that makes a sandbox safe is decided here, in one place that unit tests
read: no network unless asked, every capability dropped, no privilege gain, the
engine's default seccomp profile, a non-root user, a read-only root with size-capped
tmpfs for ``/mnt/data`` and ``/tmp``, memory without swap, CPU, PIDs, open files and
file size limits, an init that reaps zombies, and no binds, volumes or devices
(except the GPUs of a GPU sandbox).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from docker.types import DeviceRequest

from runner.base import Language, Limits, RunRequest
from runner.network import SandboxNetwork

NAME_PREFIX = "rce-sbx-"
SANDBOX_USER = "1000:1000"
WORKDIR = "/mnt/data"
AGENT_CMD = ("python3", "/opt/rce/rce_agent/__main__.py")
#: The private exec-able tmpfs for sources and build products (outside /mnt/data).
BUILD_DIR = "/var/rce"
#: Its size: compilers, a Go cache and the binaries they write (memory-backed, so it
#: also counts against the memory limit).
BUILD_TMPFS_BYTES = 256 * 1024 * 1024
PRELOAD_ENV = "RCE_AGENT_PRELOAD"

LABEL_SERVICE = "org.rce.service"
LABEL_EXEC_ID = "org.rce.exec-id"
LABEL_CREATED = "org.rce.created-at"
LABEL_DEADLINE = "org.rce.deadline"
LABEL_POOL = "org.rce.pool"
SERVICE = "rce"

#: After the run limit: time for the agent to kill, drain and start its reply.
START_GRACE_S = 10.0
#: Longest silence while a reply is streaming.
IDLE_TIMEOUT_S = 30.0
#: Longest time to stream back the outputs after the program ended.
COLLECT_BUDGET_S = 120.0
#: Extra margin the reaper leaves on top of every budget.
REAP_MARGIN_S = 60.0
#: Slowest input upload accepted, in bytes per second (on top of a fixed 30 s).
MIN_UPLOAD_RATE = 4 * 1024 * 1024
UPLOAD_BASE_S = 30.0
#: Under gVisor the container's pids cgroup counts the Sentry's host threads and, on
#: the ptrace platform, one stub process per guest address space with a thread per
#: Sentry thread that entered it. Measured on the 2-core VM: a program holding 127
#: processes makes 830-870 host tasks, 1510 when it forked them from a Python that had
#: loaded pandas and matplotlib (a warm data agent). There the program's own limit is
#: the ``nproc`` rlimit, which gVisor's kernel enforces over the whole sandbox (agent
#: and job are one uid in a kernel of their own), and the host cgroup gets this many
#: times the limit (3072 for 128: twice the worst measured), so the Sentry is not
#: refused a thread below the program's limit. A bash fork bomb that keeps churning
#: processes still grows the Sentry past it within seconds: that ends its own sandbox
#: only (a clean "sandbox stopped" result), and one sandbox's host tasks stay bounded.
GVISOR_HOST_PIDS_FACTOR = 24


class Flavour(StrEnum):
    """What a warm (pooled) agent loads before its job; the value is its ``RCE_AGENT_PRELOAD``.

    All report ready before the job; LIGHT runs Python in a forked child of the
    agent, DATA, R, NODE and JAVA hold an interpreter (a JVM) started and waiting for
    the program (``rce_agent.warm``; DATA's Python imported the data libraries).
    """

    #: python3 and the agent only: cheap to start, for most code.
    LIGHT = "light"
    #: numpy, pandas and matplotlib imported: for code that imports data libraries.
    DATA = "data"
    #: An R that has loaded its default packages: for R.
    R = "r"
    #: A node past its bootstrap: for JavaScript and TypeScript.
    NODE = "node"
    #: A JVM whose source launcher has loaded javac: for Java.
    JAVA = "java"


#: The flavour each language other than Python wants (the rest: LIGHT).
LANGUAGE_FLAVOURS = {
    Language.R: Flavour.R,
    Language.JAVASCRIPT: Flavour.NODE,
    Language.TYPESCRIPT: Flavour.NODE,
    Language.JAVA: Flavour.JAVA,
}


#: Top-level modules whose import makes code prefer a ``Flavour.DATA`` container
#: (those preloaded, and libraries that import them).
DATA_MODULES = frozenset(
    ("numpy", "pandas", "matplotlib", "scipy", "sklearn", "seaborn", "statsmodels")
)
_IMPORT = re.compile(r"(?:^|;)[ \t]*(import|from)[ \t]+([^;#\n]*)", re.MULTILINE)


def imported_modules(code: str) -> set[str]:
    """Top-level names of the modules ``code``'s import statements name (a heuristic)."""
    found: set[str] = set()
    for match in _IMPORT.finditer(code):
        kind, rest = match.groups()
        clauses = [rest] if kind == "from" else rest.strip("()\\ \t").split(",")
        for clause in clauses:
            words = clause.split()
            if words:
                found.add(words[0].lstrip("(").split(".")[0])
    return found


def flavour_for(request: RunRequest) -> Flavour:
    """The warm flavour that serves ``request`` best: DATA for Python importing
    ``DATA_MODULES``, R for R, NODE for JavaScript and TypeScript, JAVA for Java, LIGHT
    for everything else (bash included). Only speed depends on it."""
    if request.language is Language.PYTHON and not imported_modules(request.code).isdisjoint(
        DATA_MODULES
    ):
        return Flavour.DATA
    return LANGUAGE_FLAVOURS.get(request.language, Flavour.LIGHT)


def new_name() -> str:
    """A fresh container name the socket proxy lets through (``rce-sbx-`` + hex)."""
    return NAME_PREFIX + secrets.token_hex(8)


#: A programmatic run's container, renamed so: ``rce-sbx-ptc-<key>-<expiry>``. The key
#: is a digest of the client's request id (a cancel or a duplicate finds the run with
#: one list call); the expiry (Unix seconds) is when the reaper removes it, pushed
#: forward at each pause by a rename (a label cannot change, a name can).
PTC_PREFIX = NAME_PREFIX + "ptc-"
_PTC_NAME = re.compile(r"^rce-sbx-ptc-([0-9a-f]{24})-([0-9]{10,12})$")


def ptc_key(request_id: str) -> str:
    """The run key of ``request_id`` (a random one without a request id)."""
    import hashlib

    seed = request_id.encode() if request_id else secrets.token_bytes(16)
    return hashlib.sha256(b"rce-ptc\0" + seed).hexdigest()[:24]


def ptc_name(key: str, expiry: float) -> str:
    """The name of a programmatic run's container that expires at ``expiry``."""
    return f"{PTC_PREFIX}{key}-{int(expiry) + 1}"


def ptc_expiry(name: str) -> float | None:
    """The expiry a programmatic run's container name carries, else None."""
    match = _PTC_NAME.match(name)
    return float(match.group(2)) if match else None


def upload_budget_s(request: RunRequest) -> float:
    """Time allowed to stream the input files into the container."""
    return UPLOAD_BASE_S + sum(f.size for f in request.files) / MIN_UPLOAD_RATE


def run_budget_s(request: RunRequest) -> float:
    """Longest a run may hold its container, from the moment the job is sent."""
    return (
        upload_budget_s(request)
        + request.limits.run_timeout_s
        + START_GRACE_S
        + COLLECT_BUDGET_S
        + REAP_MARGIN_S
    )


@dataclass(frozen=True, slots=True)
class ContainerKey:
    """Everything a container is created with; a warm container fits requests with its key."""

    image: str
    gpu: bool
    runtime: str | None
    memory_limit_bytes: int
    nano_cpus: int
    pids_limit: int
    workspace_bytes: int
    tmp_bytes: int
    max_open_files: int
    network_enabled: bool
    #: The Docker network of a sandbox with network (``None``: the default bridge).
    network: str | None = None
    #: Environment that goes with the network (the egress proxy's address).
    network_env: tuple[str, ...] = ()


def container_key(
    image: str,
    limits: Limits,
    *,
    gpu: bool,
    runtime: str | None,
    network: SandboxNetwork | None = None,
) -> ContainerKey:
    """The container-shaping part of ``limits`` (not the per-run ones such as the timeout).

    ``network`` (the configured ``RCE_NETWORK_MODE``) names the network a sandbox with
    ``limits.network_enabled`` joins; without it such a sandbox joins the default bridge.
    """
    joined = network if network is not None and network.enabled else None
    return ContainerKey(
        image=image,
        gpu=gpu,
        runtime=runtime,
        memory_limit_bytes=limits.memory_limit_bytes,
        nano_cpus=limits.nano_cpus,
        pids_limit=limits.pids_limit,
        workspace_bytes=limits.workspace_bytes,
        tmp_bytes=limits.tmp_bytes,
        max_open_files=limits.max_open_files,
        network_enabled=limits.network_enabled,
        network=joined.name if joined and limits.network_enabled else None,
        network_env=joined.env if joined and limits.network_enabled else (),
    )


def labels(
    *, exec_id: str, deadline_s: float, pooled: bool, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The labels every sandbox carries; ``org.rce.deadline`` is when it becomes an orphan."""
    now = time.time()
    out = dict(extra or {})
    out.update(
        {
            LABEL_SERVICE: SERVICE,
            LABEL_EXEC_ID: exec_id[:128],
            LABEL_CREATED: str(int(now)),
            LABEL_DEADLINE: str(int(now + deadline_s) + 1),
        }
    )
    if pooled:
        out[LABEL_POOL] = "1"
    return out


def _tmpfs(size: int, extra: str, *, exec_: bool = False) -> str:
    return f"rw,nosuid,nodev,{'exec' if exec_ else 'noexec'},size={size},{extra}"


def is_gvisor(runtime: str | None) -> bool:
    """True for gVisor's runtimes (``runsc``, ``runsc-net``, or another ``runsc-*``)."""
    return runtime is not None and (runtime == "runsc" or runtime.startswith("runsc-"))


def pid_limits(key: ContainerKey) -> tuple[int, list[dict[str, Any]]]:
    """``PidsLimit`` and the pid-related ``Ulimits`` of a sandbox.

    Under runc the pids cgroup is the limit. Under gVisor the limit is the ``nproc``
    rlimit (enforced per sandbox by gVisor's kernel) and the cgroup a larger host bound
    (``GVISOR_HOST_PIDS_FACTOR``). Under runc ``nproc`` is never set: the kernel counts
    it per host uid, across every sandbox of uid 1000.
    """
    if not is_gvisor(key.runtime):
        return key.pids_limit, []
    nproc = {"Name": "nproc", "Soft": key.pids_limit, "Hard": key.pids_limit}
    return key.pids_limit * GVISOR_HOST_PIDS_FACTOR, [nproc]


def network_mode(key: ContainerKey) -> str:
    """``HostConfig.NetworkMode``: ``none`` unless the sandbox has a network."""
    if not key.network_enabled:
        return "none"
    return key.network or "bridge"


def host_config(key: ContainerKey) -> dict[str, Any]:
    """The ``HostConfig`` of a sandbox: every limit and every hardening."""
    fsize = max(key.workspace_bytes, key.tmp_bytes)
    pids_limit, pid_ulimits = pid_limits(key)
    config: dict[str, Any] = {
        "NetworkMode": network_mode(key),
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Privileged": False,
        "ReadonlyRootfs": True,
        "Tmpfs": {
            WORKDIR: _tmpfs(key.workspace_bytes, "uid=1000,gid=1000,mode=0755"),
            "/tmp": _tmpfs(key.tmp_bytes, "mode=1777"),
            BUILD_DIR: _tmpfs(BUILD_TMPFS_BYTES, "uid=1000,gid=1000,mode=0700", exec_=True),
        },
        "Memory": key.memory_limit_bytes,
        "MemorySwap": key.memory_limit_bytes,
        "NanoCpus": key.nano_cpus,
        "PidsLimit": pids_limit,
        "Ulimits": [
            {"Name": "nofile", "Soft": key.max_open_files, "Hard": key.max_open_files},
            {"Name": "fsize", "Soft": fsize, "Hard": fsize},
            {"Name": "core", "Soft": 0, "Hard": 0},
            *pid_ulimits,
        ],
        # No init process: the agent is PID 1, reaps orphans itself and, being not
        # dumpable, cannot be reached through /proc/1 by the program (an init of the
        # sandbox uid would expose the reply channel as /proc/1/fd/1).
        "Init": False,
        "IpcMode": "private",
        "Binds": [],
        "Mounts": [],
        "Devices": [],
        "VolumesFrom": [],
        "AutoRemove": False,
        # Replies (which carry output files) must not be copied to the engine's logs.
        "LogConfig": {"Type": "none", "Config": {}},
    }
    if key.runtime:
        config["Runtime"] = key.runtime
    if key.gpu:
        config["DeviceRequests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return config


def create_body(
    key: ContainerKey, *, container_labels: dict[str, str], warm: Flavour | None = None
) -> dict[str, Any]:
    """The JSON body of ``POST /containers/create`` for one sandbox (``warm``: pooled)."""
    return {
        "Image": key.image,
        "Cmd": list(AGENT_CMD),
        "User": SANDBOX_USER,
        "WorkingDir": WORKDIR,
        "Env": ([f"{PRELOAD_ENV}={warm.value}"] if warm is not None else [])
        + list(key.network_env),
        "Labels": container_labels,
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        # stdin stays open when an attach ends: the job's end is framed, so no EOF is
        # needed, and a programmatic run (runner.docker_ptc) takes any pooled
        # container and is attached to again for each round of tool results.
        "StdinOnce": False,
        "Tty": False,
        "NetworkDisabled": network_mode(key) == "none",
        "HostConfig": host_config(key),
    }
