"""The adapters one app instance uses, built once from ``Settings``."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from handler.admission import ExecGate
from handler.auth import Authenticator
from handler.metrics import Metrics
from handler.settings import Settings
from runner.base import Sandbox
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
    """The Docker sandbox on the engine at ``DOCKER_HOST`` (or the local socket)."""
    from runner.docker import DockerSandbox

    return DockerSandbox.from_settings(
        image=settings.sandbox_image,
        gpu=settings.gpu_enabled,
        runtime=settings.runtime,
        pool_size=settings.pool_size,
        pool_data_size=settings.pool_data_size,
        pool_budget_mb=settings.pool_memory_budget_mb,
        pool_parallel_fills=settings.pool_parallel_fills,
        limits=settings.limits(),
        max_run_timeout_s=settings.max_run_timeout_s,
        labels=settings.container_label_map(),
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
    #: ``/ready``'s probes run here, never on the exec slots or the shared threadpool.
    probe_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="rce-ready")
    )

    def startup_warnings(self) -> list[str]:
        """Things an operator must hear about at start-up."""
        warnings = list(self.auth.warnings)
        if self.settings.network_enabled:
            warnings.append("RCE_NETWORK_ENABLED=true: sandboxes can reach the network")
        return warnings

    def close(self) -> None:
        """Release adapters (drains the warm pool) and the exec and probe threads."""
        self.exec_gate.close()
        self.probe_executor.shutdown(wait=False, cancel_futures=True)
        self.sandbox.close()


def _sandbox_stats(sandbox: Sandbox) -> Any:
    stats = getattr(sandbox, "stats", None)
    return stats if callable(stats) else None


def build_services(
    settings: Settings, *, store: SessionStore | None = None, sandbox: Sandbox | None = None
) -> Services:
    """Build real adapters for whatever is not given."""
    store = store if store is not None else build_store(settings)
    sandbox = sandbox if sandbox is not None else build_sandbox(settings)
    gate = ExecGate(
        settings.max_concurrent_execs, settings.exec_queue_size, settings.exec_queue_timeout_s
    )
    return Services(
        settings=settings,
        store=store,
        sandbox=sandbox,
        auth=Authenticator(settings),
        metrics=Metrics(_sandbox_stats(sandbox), gate),
        exec_gate=gate,
        policy=ExecPolicy(
            limits=settings.limits(),
            max_run_timeout_s=settings.max_run_timeout_s,
            max_code_bytes=settings.max_code_bytes,
        ),
    )
