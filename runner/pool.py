"""A warm pool of single-use entries (pre-started sandbox containers).

``WarmPool`` keeps up to ``size`` ready entries for one key (the image and the
container-shaping limits). ``take(key)`` hands out a ready entry at most once and
never waits: when none is ready, or the key differs, it returns ``None`` and the
caller starts cold. A key change drains the pool and rebuilds it for the new key.
A background thread refills the pool after every take, recycles entries idle for
longer than ``max_idle_s`` (before the deadline their labels carry) and backs off
when creation fails. ``close()`` stops it and destroys every entry.

The pool knows nothing about Docker: it is given ``create(key) -> entry`` (blocks
until the entry is ready) and ``destroy(entry)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
E = TypeVar("E")

log = logging.getLogger(__name__)

_TICK_S = 1.0
_MAX_BACKOFF_S = 60.0


@dataclass(slots=True)
class _Ready(Generic[E]):
    entry: E
    since: float


class WarmPool(Generic[K, E]):
    """Single-use warm entries for one key at a time; thread-safe."""

    def __init__(
        self,
        *,
        size: int,
        create: Callable[[K], E],
        destroy: Callable[[E], None],
        max_idle_s: float,
        healthy: Callable[[E], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        parallel_fills: int | None = None,
    ) -> None:
        """``parallel_fills`` bounds the entries created at once (default: size, at most 4)."""
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.size = size
        self._create = create
        self._destroy = destroy
        self._healthy = healthy or (lambda _entry: True)
        self._max_idle_s = max_idle_s
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: deque[_Ready[E]] = deque()
        self._pending = 0
        self._key: K | None = None
        self._generation = 0
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self._workers = ThreadPoolExecutor(
            max_workers=max(1, parallel_fills or min(size, 4)), thread_name_prefix="rce-pool-fill"
        )
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- public

    def start(self, key: K) -> None:
        """Begin filling the pool for ``key`` (idempotent)."""
        with self._cond:
            if self._closed or self.size == 0:
                return
            if self._key != key:
                self._rekey_locked(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._maintain, name="rce-pool", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def take(self, key: K) -> E | None:
        """A ready entry for ``key``, removed from the pool, or None (never waits)."""
        stale: list[E] = []
        found: E | None = None
        with self._cond:
            if self._closed or self.size == 0:
                return None
            if self._key != key:
                stale.extend(self._rekey_locked(key))
            now = self._clock()
            while self._ready:
                item = self._ready.popleft()
                if now - item.since > self._max_idle_s or not self._healthy(item.entry):
                    stale.append(item.entry)
                    continue
                found = item.entry
                break
            self._cond.notify_all()
        if self._thread is None:
            self.start(key)
        for entry in stale:
            self._destroy_quietly(entry)
        return found

    def wait_ready(self, count: int | None = None, timeout_s: float = 60.0) -> bool:
        """Block until ``count`` (default: all) entries are ready; False on timeout."""
        want = self.size if count is None else count
        end = self._clock() + timeout_s
        with self._cond:
            while len(self._ready) < want:
                remaining = end - self._clock()
                if remaining <= 0 or self._closed:
                    return False
                self._cond.wait(min(remaining, _TICK_S))
            return True

    def stats(self) -> dict[str, int]:
        """Ready and pending (being created) counts."""
        with self._cond:
            return {"ready": len(self._ready), "pending": self._pending, "size": self.size}

    def close(self) -> None:
        """Stop refilling and destroy every entry. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            entries = [item.entry for item in self._ready]
            self._ready.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        # Queued fills never start; one in progress finishes and destroys its entry.
        self._workers.shutdown(wait=True, cancel_futures=True)
        for entry in entries:
            self._destroy_quietly(entry)

    @property
    def closed(self) -> bool:
        return self._closed

    # -------------------------------------------------------------- internal

    def _rekey_locked(self, key: K) -> list[E]:
        self._key = key
        self._generation += 1
        self._failures = 0
        self._retry_at = 0.0
        drained = [item.entry for item in self._ready]
        self._ready.clear()
        return drained

    def _maintain(self) -> None:
        while True:
            stale: list[E] = []
            with self._cond:
                if self._closed:
                    return
                now = self._clock()
                while self._ready and now - self._ready[0].since > self._max_idle_s:
                    stale.append(self._ready.popleft().entry)
                missing = self.size - len(self._ready) - self._pending
                key, generation = self._key, self._generation
                if key is None or now < self._retry_at:
                    missing = 0
                self._pending += max(missing, 0)
            for entry in stale:
                self._destroy_quietly(entry)
            for _ in range(max(missing, 0)):
                assert key is not None
                self._workers.submit(self._fill, key, generation)
            with self._cond:
                if not self._closed:
                    self._cond.wait(_TICK_S)

    def _fill(self, key: K, generation: int) -> None:
        with self._cond:
            if self._closed:
                self._pending -= 1
                return
        try:
            entry = self._create(key)
        except Exception as exc:
            with self._cond:
                self._pending -= 1
                if self._closed:
                    return
                self._failures += 1
                backoff = min(_MAX_BACKOFF_S, 2.0 ** min(self._failures, 6))
                self._retry_at = self._clock() + backoff
            log.warning("warm pool: could not start an entry (%s); retry in %.0f s", exc, backoff)
            return
        keep = False
        with self._cond:
            self._pending -= 1
            if not self._closed and generation == self._generation:
                self._ready.append(_Ready(entry, self._clock()))
                self._failures = 0
                keep = True
            self._cond.notify_all()
        if not keep:
            self._destroy_quietly(entry)

    def _destroy_quietly(self, entry: E) -> None:
        try:
            self._destroy(entry)
        except Exception:
            log.exception("warm pool: could not destroy an entry")
