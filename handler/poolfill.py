"""Log the first fill of the warm pools at start-up: "pool light 1/2 ready" ...

Filling a pool starts containers (a DATA one also imports numpy, pandas and
matplotlib), so the first fill takes seconds; these lines show it progressing. It
reads the sandbox's ``stats()`` only, and stops once every pool is full, at
``timeout_s``, or when told to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class PoolFillReporter:
    """A thread that logs each pool's ready count as it grows, until all are full."""

    def __init__(
        self,
        stats: Callable[[], dict[str, Any]],
        targets: dict[str, int],
        *,
        timeout_s: float = 300.0,
        interval_s: float = 0.25,
    ) -> None:
        self._stats = stats
        self._targets = {name: size for name, size in targets.items() if size > 0}
        self._timeout_s = timeout_s
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rce-pool-fill-log", daemon=True)

    def start(self) -> None:
        """Begin reporting (nothing to do without a pool)."""
        if self._targets:
            self._thread.start()

    def stop(self) -> None:
        """Stop reporting."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        started = time.monotonic()
        shown = dict.fromkeys(self._targets, 0)
        while not self._stop.is_set():
            stats = self._stats()
            for name, target in self._targets.items():
                ready = min(int(stats.get(f"pool_size_{name}", 0)), target)
                if ready > shown[name]:
                    shown[name] = ready
                    log.info(
                        "pool %s %d/%d ready (%.1f s)",
                        name,
                        ready,
                        target,
                        time.monotonic() - started,
                    )
            if all(shown[n] >= t for n, t in self._targets.items()):
                log.info("warm pools full (%.1f s)", time.monotonic() - started)
                return
            if time.monotonic() - started > self._timeout_s:
                log.warning("warm pools not full after %.0f s: %s", self._timeout_s, shown)
                return
            self._stop.wait(self._interval_s)
