"""Prometheus metrics of the service (served at ``/metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from handler.admission import ExecGate

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300)


class _SandboxCollector(Collector):
    """Reads the sandbox's own counters: per warm pool its ready size, target, entries
    being prepared, hits and misses; container starts and failures."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        for key, value in sorted(self._stats().items()):
            if key.startswith(("pool_size", "pool_target", "pool_pending", "pool_budget")):
                yield GaugeMetricFamily(f"rce_{key}", f"warm pool: {key}", value=float(value))
            else:
                yield CounterMetricFamily(f"rce_{key}", f"sandbox: {key}", value=float(value))


class _GateCollector(Collector):
    """Exec admission: slots in use, queue depth, refusals by reason."""

    def __init__(self, gate: ExecGate) -> None:
        self._gate = gate

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        gate = self._gate
        yield GaugeMetricFamily("rce_exec_running", "execs holding a slot", value=gate.running)
        yield GaugeMetricFamily("rce_exec_queued", "execs waiting for a slot", value=gate.queued)
        rejected = CounterMetricFamily(
            "rce_exec_rejected", "execs refused by admission", labels=["reason"]
        )
        rejected.add_metric(["queue_full"], gate.rejected_full)
        rejected.add_metric(["queue_timeout"], gate.rejected_timeout)
        yield rejected


class Metrics:
    """The service's metrics, in their own registry (one per app)."""

    def __init__(
        self,
        sandbox_stats: Callable[[], dict[str, Any]] | None = None,
        exec_gate: ExecGate | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.exec_seconds = Histogram(
            "rce_exec_duration_seconds",
            "exec latency by language and outcome",
            ["language", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bytes_restored = Counter(
            "rce_bytes_restored", "bytes restored into sandboxes", registry=self.registry
        )
        self.bytes_synced = Counter(
            "rce_bytes_synced", "bytes synced from sandboxes to the store", registry=self.registry
        )
        self.storage_errors = Counter(
            "rce_storage_errors",
            "session store failures by class",
            ["error"],
            registry=self.registry,
        )
        self.sandbox_errors = Counter(
            "rce_sandbox_errors",
            "container engine failures by class",
            ["error"],
            registry=self.registry,
        )
        if sandbox_stats is not None:
            self.registry.register(_SandboxCollector(sandbox_stats))
        if exec_gate is not None:
            self.registry.register(_GateCollector(exec_gate))
