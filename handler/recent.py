"""A bounded, in-memory ring of this process's recent execs, for the status page.

Per-replica operations data: each API process keeps its own last ``capacity``
records and nothing is persisted or shared (``/metrics`` is the fleet-wide view).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExecRecord:
    """One finished exec: language, outcome (ok, nonzero, timeout, oom, error), seconds."""

    language: str
    outcome: str
    seconds: float
    at: float


@dataclass(frozen=True, slots=True)
class ExecSummary:
    """Count and latency percentiles of one (language, outcome) group."""

    language: str
    outcome: str
    count: int
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class RecentExecs:
    """The last ``capacity`` exec records; thread-safe."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._ring: deque[ExecRecord] = deque(maxlen=capacity)

    def record(self, language: str, outcome: str, seconds: float) -> None:
        """Remember one finished exec (the oldest record falls out when full)."""
        with self._lock:
            self._ring.append(ExecRecord(language, outcome, seconds, time.time()))

    def records(self) -> list[ExecRecord]:
        """A snapshot, oldest first."""
        with self._lock:
            return list(self._ring)

    def summary(self) -> list[ExecSummary]:
        """Per (language, outcome): count, p50 and p99 in ms, sorted by language."""
        groups: dict[tuple[str, str], list[float]] = {}
        for item in self.records():
            groups.setdefault((item.language, item.outcome), []).append(item.seconds)
        return [
            ExecSummary(
                lang, outcome, len(s), percentile(s, 0.5) * 1000, percentile(s, 0.99) * 1000
            )
            for (lang, outcome), s in sorted(groups.items())
        ]
