"""A warm pool of single-use entries (pre-started sandbox containers).

``WarmPool`` keeps ``target`` ready entries for one key (the image and the
container-shaping limits). ``size`` is the floor: the target is never below it; a
pool of floor 0 is disabled unless ``on_demand`` (it then holds entries only while
its requests come). The
owner sets the target from the observed demand (``set_plan``, see
``runner.pool_sizing``); the pool measures what that needs: the arrival rate
(``record_arrival``) and the time one entry takes to prepare.

``take(key)`` hands out a ready entry at most once. When none is ready it may wait
for one being prepared, if its expected remaining preparation time is shorter than
the alternative the caller names (``alternative_s``, the cost of a cold start);
otherwise, or when the key differs, it returns ``None`` and the caller starts cold.
A key change drains the pool and rebuilds it for the new key. A background thread
refills the pool up to its target, preparing up to ``parallel`` entries at once,
destroys ready entries above the target once they are older than
``pool_sizing.SHRINK_AFTER_S``, recycles entries idle for longer than
``max_idle_s`` (before the deadline their labels carry) and backs off when creation
fails. ``close()`` stops it and destroys every entry.

Refills step aside for the runs being served (``runner.activity``): while the owner's
``hold_back_s()`` says the host is busy, the pool starts no preparation as long as it
holds more ready entries than its reserve (``pool_sizing.reserve``: the arrivals
expected during one preparation); it catches up once the host is quiet, or as soon as
its stock falls to the reserve.

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

from runner import pool_sizing
from runner.pool_sizing import Demand, Ewma, Plan, RateMeter, ShortfallMeter

K = TypeVar("K")
E = TypeVar("E")

log = logging.getLogger(__name__)

_TICK_S = 1.0
_MAX_BACKOFF_S = 60.0
#: Entries prepared at once by default (the planner may ask for fewer).
MAX_PARALLEL_FILLS = 4


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
        entry_mb: float = 0.0,
        prepare_prior_s: float = 0.5,
        on_tick: Callable[[], None] | None = None,
        on_demand: bool = False,
        hold_back_s: Callable[[], float] | None = None,
    ) -> None:
        """``parallel_fills`` bounds the entries prepared at once (default: size, at
        least 1, at most ``MAX_PARALLEL_FILLS``; the plan may lower it). ``entry_mb``
        is the memory one ready entry holds; ``prepare_prior_s`` the preparation time
        assumed until one is measured; ``on_tick`` runs on every maintenance round
        (the owner re-plans there). ``on_demand`` enables a pool of size 0: its target
        follows its demand only. ``hold_back_s`` says how long until the host is quiet
        (0: now): refills above the reserve wait for it."""
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.size = size
        self.enabled = size > 0 or on_demand
        self.entry_mb = entry_mb
        self._create = create
        self._destroy = destroy
        self._healthy = healthy or (lambda _entry: True)
        self._max_idle_s = max_idle_s
        self._clock = clock
        self._on_tick = on_tick
        self._hold_back_s = hold_back_s or (lambda: 0.0)
        self._cond = threading.Condition()
        self._ready: deque[_Ready[E]] = deque()
        self._pending = 0
        #: Start times of the preparations under way, by fill number.
        self._preparing: dict[int, float] = {}
        self._fill_numbers = 0
        self._waiters = 0
        self._key: K | None = None
        self._generation = 0
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self._max_parallel = max(1, parallel_fills or min(max(size, 1), MAX_PARALLEL_FILLS))
        self._target = size
        self._parallel = self._max_parallel
        self._rate = RateMeter()
        self._shortfall = ShortfallMeter()
        self._prepare = Ewma(prepare_prior_s)
        self._hits = 0
        self._misses = 0
        self._waited = 0
        self._workers = ThreadPoolExecutor(
            max_workers=self._max_parallel, thread_name_prefix="rce-pool-fill"
        )
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- public

    def start(self, key: K) -> None:
        """Begin filling the pool for ``key`` (idempotent)."""
        with self._cond:
            if self._closed or not self.enabled:
                return
            if self._key != key:
                self._rekey_locked(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._maintain, name="rce-pool", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def record_arrival(self) -> None:
        """Count one request that wants an entry of this pool (for the rate)."""
        with self._cond:
            self._rate.record(self._clock())

    def demand(self) -> Demand:
        """What this pool observed, for ``pool_sizing.plan``."""
        with self._cond:
            now = self._clock()
            return Demand(
                rate=self._rate.rate(now),
                prepare_s=self._prepare.value,
                floor=self.size,
                entry_mb=self.entry_mb,
                shortfall=self._shortfall.value(now),
            )

    def set_plan(self, plan: Plan) -> None:
        """Adopt a target (never below ``size``) and a parallelism (at most the bound)."""
        with self._cond:
            if not self.enabled:
                return
            grew = plan.target > self._target or plan.parallel > self._parallel
            self._target = max(self.size, plan.target)
            self._parallel = max(1, min(self._max_parallel, plan.parallel))
            if grew:
                self._cond.notify_all()

    @property
    def prepare_s(self) -> float:
        """The measured time to prepare one entry (a moving average)."""
        with self._cond:
            return self._prepare.value

    def take(self, key: K, *, alternative_s: float = 0.0) -> E | None:
        """A ready entry for ``key``, removed from the pool, or None.

        With none ready, waits for one being prepared when its expected remaining
        preparation time is below ``alternative_s``, and for at most that long.
        """
        stale: list[E] = []
        found: E | None = None
        with self._cond:
            if self._closed or not self.enabled:
                return None
            if self._key != key:
                stale.extend(self._rekey_locked(key))
            found = self._pop_ready_locked(stale)
            self._shortfall.record(self._clock(), missed=found is None)
            if found is None and alternative_s > 0:
                found = self._wait_for_fill_locked(key, alternative_s, stale)
            if found is None:
                self._misses += 1
            else:
                self._hits += 1
            self._cond.notify_all()
        if self._thread is None:
            self.start(key)
        for entry in stale:
            self._destroy_quietly(entry)
        return found

    def wait_ready(self, count: int | None = None, timeout_s: float = 60.0) -> bool:
        """Block until ``count`` (default: all) entries are ready; False on timeout."""
        end = self._clock() + timeout_s
        with self._cond:
            while len(self._ready) < (self._target if count is None else count):
                remaining = end - self._clock()
                if remaining <= 0 or self._closed:
                    return False
                self._cond.wait(min(remaining, _TICK_S))
            return True

    def stats(self) -> dict[str, int]:
        """Ready, pending (being prepared), floor and target counts; hits and misses."""
        with self._cond:
            return {
                "ready": len(self._ready),
                "pending": self._pending,
                "size": self.size,
                "target": self._target if self.enabled else 0,
                "hits": self._hits,
                "misses": self._misses,
                "waited": self._waited,
            }

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

    def _pop_ready_locked(self, stale: list[E]) -> E | None:
        now = self._clock()
        while self._ready:
            item = self._ready.popleft()
            if now - item.since > self._max_idle_s or not self._healthy(item.entry):
                stale.append(item.entry)
                continue
            return item.entry
        return None

    def _remaining_locked(self) -> float | None:
        """Expected time until the next entry no other waiter counts on is ready."""
        started = sorted(self._preparing.values())
        if len(started) <= self._waiters:
            return None
        elapsed = self._clock() - started[self._waiters]
        return max(0.0, self._prepare.value - elapsed)

    def _wait_for_fill_locked(self, key: K, alternative_s: float, stale: list[E]) -> E | None:
        remaining = self._remaining_locked()
        if remaining is None or not pool_sizing.wait_worthwhile(remaining, alternative_s):
            return None
        end = self._clock() + alternative_s
        generation = self._generation
        self._waiters += 1
        try:
            while not self._closed and generation == self._generation and self._key == key:
                left = end - self._clock()
                if left <= 0 or not self._preparing:
                    return None
                self._cond.wait(left)
                found = self._pop_ready_locked(stale)
                if found is not None:
                    self._waited += 1
                    return found
            return None
        finally:
            self._waiters -= 1

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
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:
                    log.exception("warm pool: re-planning failed")
            try:
                hold_back_s = self._hold_back_s()
            except Exception:
                log.exception("warm pool: could not tell whether the host is busy")
                hold_back_s = 0.0
            stale: list[E] = []
            wait_s = _TICK_S
            with self._cond:
                if self._closed:
                    return
                now = self._clock()
                while self._ready and now - self._ready[0].since > self._max_idle_s:
                    stale.append(self._ready.popleft().entry)
                ages = [now - item.since for item in self._ready]
                for _ in range(pool_sizing.excess(ages, self._target)):
                    stale.append(self._ready.popleft().entry)
                missing = self._target - len(self._ready) - self._pending
                missing = min(missing, self._parallel - self._pending)
                key, generation = self._key, self._generation
                if key is None or now < self._retry_at:
                    missing = 0
                if missing > 0 and hold_back_s > 0:
                    reserve = pool_sizing.reserve(self._rate.rate(now), self._prepare.value)
                    if len(self._ready) + self._pending > reserve:
                        missing = 0  # the host is serving runs: refill once it is quiet
                        wait_s = min(_TICK_S, hold_back_s)
                self._pending += max(missing, 0)
            for entry in stale:
                self._destroy_quietly(entry)
            for _ in range(max(missing, 0)):
                assert key is not None
                self._workers.submit(self._fill, key, generation)
            with self._cond:
                if not self._closed:
                    self._cond.wait(wait_s)

    def _fill(self, key: K, generation: int) -> None:
        with self._cond:
            if self._closed:
                self._pending -= 1
                self._cond.notify_all()
                return
            self._fill_numbers += 1
            number = self._fill_numbers
            started = self._clock()
            self._preparing[number] = started
        try:
            entry = self._create(key)
        except Exception as exc:
            with self._cond:
                self._pending -= 1
                del self._preparing[number]
                self._cond.notify_all()
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
            del self._preparing[number]
            if not self._closed and generation == self._generation:
                now = self._clock()
                self._prepare.add(now - started)
                self._ready.append(_Ready(entry, now))
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
