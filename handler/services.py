"""The adapters one app instance uses, built once from ``Settings``."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from handler.admission import ExecGate
from handler.auth import Authenticator
from handler.metrics import Metrics
from handler.recent import RecentExecs
from handler.settings import Settings
from runner.base import Sandbox
from runner.ptc import ProgramPolicy, ProgramPorts, ProgramSandbox
from runner.service import ExecPolicy
from storage.base import SessionStore

log = logging.getLogger(__name__)


def build_store(settings: Settings) -> SessionStore:
    """The session store ``RCE_STORAGE`` names."""
    from storage.factory import open_store

    return open_store(
        settings.storage,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        access_key=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
        secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
        ttl_hours=settings.session_ttl_hours,
        manage_lifecycle=settings.s3_manage_lifecycle,
    )


def build_sandbox(settings: Settings) -> Sandbox:
    """The Docker sandbox on the engine at ``DOCKER_HOST`` (or the local socket), or,
    when ``RCE_DOCKER_HOSTS`` lists engines, one per engine behind the placement."""
    from runner.docker import DockerSandbox

    def docker_sandbox(client: Any = None) -> DockerSandbox:
        return DockerSandbox.from_settings(
            image=settings.sandbox_image,
            gpu=settings.gpu_enabled,
            runtime=settings.sandbox_runtime(),
            network=settings.sandbox_network(),
            pool_size=settings.pool_size,
            pool_data_size=settings.pool_data_size,
            pool_r_size=settings.pool_r_size,
            pool_node_size=settings.pool_node_size,
            pool_java_size=settings.pool_java_size,
            pool_budget_mb=settings.pool_memory_budget_mb,
            pool_parallel_fills=settings.pool_parallel_fills,
            limits=settings.limits(),
            client=client,
            max_run_timeout_s=settings.max_run_timeout_s,
            labels=settings.container_label_map(),
        )

    engines = settings.engines()
    if not engines:
        return docker_sandbox()
    from runner._docker_client import client_factory, probe
    from runner.docker_ptc import DockerProgramSandbox
    from runner.multi import Member, MultiEngineSandbox

    members = []
    for engine in engines:
        sandbox = docker_sandbox(client_factory(engine.url))
        check = probe(engine.url, settings.sandbox_image, settings.engine_probe_timeout_s)
        members.append(Member(engine.id, sandbox, check, DockerProgramSandbox(sandbox)))
    return MultiEngineSandbox(
        members,
        max_in_flight=settings.engine_max_execs,
        probe_interval_s=settings.engine_probe_interval_s,
    )


@dataclass
class Services:
    """Everything a request handler needs."""

    settings: Settings
    store: SessionStore
    sandbox: Sandbox
    auth: Authenticator
    metrics: Metrics
    exec_gate: ExecGate
    policy: ExecPolicy = field(default_factory=ExecPolicy)
    #: This process's recent execs, for the status page.
    recent: RecentExecs = field(default_factory=RecentExecs)
    #: ``/ready``'s probes run here, never on the exec slots or the shared threadpool.
    probe_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="rce-ready")
    )
    #: Programmatic tool calling; None when the sandbox cannot pause programs.
    programs: ProgramPorts | None = None

    def startup_warnings(self) -> list[str]:
        """Things an operator must hear about at start-up."""
        warnings = list(self.auth.warnings)
        if self.settings.ptc_secret() is None:
            warnings.append(
                "RCE_PTC_TOKEN_SECRET is not set: continuation tokens use a per-process key, "
                "so a continuation must reach the replica that started the program"
            )
        mode = self.settings.mode.value
        if mode == "open":
            warnings.append("RCE_NETWORK_MODE=open: sandboxes can reach the internet")
        elif mode == "allowlist":
            warnings.append(
                "RCE_NETWORK_MODE=allowlist: sandboxes reach "
                f"{self.settings.network_allowlist} through the egress proxy"
            )
        return warnings

    def close(self) -> None:
        """Release adapters (drains the warm pool) and the exec and probe threads."""
        self.exec_gate.close()
        self.probe_executor.shutdown(wait=False, cancel_futures=True)
        self.sandbox.close()


def _sandbox_stats(sandbox: Sandbox) -> Any:
    stats = getattr(sandbox, "stats", None)
    return stats if callable(stats) else None


def _program_sandbox(sandbox: Sandbox) -> ProgramSandbox | None:
    from runner.docker import DockerSandbox
    from runner.docker_ptc import DockerProgramSandbox
    from runner.multi import MultiEngineProgramSandbox, MultiEngineSandbox

    if isinstance(sandbox, MultiEngineSandbox):
        return MultiEngineProgramSandbox(sandbox)
    return DockerProgramSandbox(sandbox) if isinstance(sandbox, DockerSandbox) else None


def build_programs(
    settings: Settings, store: SessionStore, sandbox: ProgramSandbox | None, policy: ExecPolicy
) -> ProgramPorts | None:
    """The ports of programmatic tool calling (None without a ``ProgramSandbox``)."""
    import secrets

    from core.continuation import TokenSigner

    if sandbox is None:
        return None
    return ProgramPorts(
        store=store,
        sandbox=sandbox,
        signer=TokenSigner(settings.ptc_secret() or secrets.token_bytes(32)),
        policy=ProgramPolicy(
            exec_policy=policy,
            max_tools=settings.ptc_max_tools,
            max_wait_s=settings.ptc_max_wait_s,
            max_round_trips=settings.ptc_max_round_trips,
            max_result_bytes=settings.ptc_max_result_bytes,
            max_results_bytes=settings.ptc_max_results_bytes,
        ),
    )


def build_services(
    settings: Settings,
    *,
    store: SessionStore | None = None,
    sandbox: Sandbox | None = None,
    program_sandbox: ProgramSandbox | None = None,
) -> Services:
    """Build real adapters for whatever is not given."""
    store = store if store is not None else build_store(settings)
    sandbox = sandbox if sandbox is not None else build_sandbox(settings)
    gate = ExecGate(
        settings.max_concurrent_execs, settings.exec_queue_size, settings.exec_queue_timeout_s
    )
    policy = ExecPolicy(
        limits=settings.limits(),
        max_run_timeout_s=settings.max_run_timeout_s,
        max_code_bytes=settings.max_code_bytes,
    )
    programs = build_programs(settings, store, program_sandbox or _program_sandbox(sandbox), policy)
    return Services(
        settings=settings,
        store=store,
        sandbox=sandbox,
        auth=Authenticator(settings),
        metrics=Metrics(_sandbox_stats(sandbox), gate),
        exec_gate=gate,
        policy=policy,
        programs=programs,
    )
