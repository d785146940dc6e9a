"""How big each warm pool should be: pure functions over measured figures.

Little's law: a pool that must hand a ready container to every arrival needs, while
arrivals come at ``rate`` per second and each container takes ``prepare_s`` seconds
to prepare, ``rate × prepare_s`` containers in preparation at any time, and as many
ready to cover the arrivals during one preparation. ``plan`` turns that into a
target per flavour:

- ``want = ceil(HEADROOM × rate × prepare_s + BURST_HEADROOM × shortfall)``, at
  least the flavour's floor (its ``RCE_POOL_SIZE`` / ``RCE_POOL_DATA_SIZE``, always
  honoured). ``shortfall`` is the size of a recent burst the pool could not serve
  from stock: the requests of a streak (from ``SHORTFALL_WINDOW_S`` before its
  first request that found the pool empty, for as long as such requests recur
  within ``SHORTFALL_WINDOW_S`` of each other, at most ``STREAK_MAX_S`` of them),
  remembered for about ``SHORTFALL_MEMORY_S`` (``ShortfallMeter``). A streak, not a
  fixed window: a burst slowed by its own waits spreads over more than the window,
  and the same burst served from stock comes in a fraction of it. A burst faster
  than the host can prepare sandboxes drains any pool sized from the rate alone,
  and refills step aside while requests are served (``runner.activity``) until the
  stock falls to the arrivals of one preparation; holding the whole of the last
  burst and that reserve serves the next one from stock, with no refill competing
  with it;
- everything above the floors shares the memory budget: when the flavours want more
  than it holds, each gets its growth above the floor scaled down alike (the light
  flavour's share is rounded first, being the cheap one);
- ``parallel = ceil(rate × prepare_s)`` containers may be prepared at once (the
  number "in service" by Little's law), at least 1 and at most ``max_parallel``.

``RateMeter`` estimates the arrival rate: two exponentially decaying counters, a
short one that follows a burst within about a second and a long one that remembers
it for a minute; the estimate is the larger. ``Ewma`` smooths measured durations.
Nothing here reads a clock or touches an engine: callers pass the time in.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

#: Ready stock kept, in multiples of the arrivals during one preparation: covers the
#: Poisson spread of arrivals and the growth of a burst while the pool catches up.
HEADROOM = 2.0
#: Time constants of the rate estimate (seconds): a fast one and a slow one.
SHORT_TAU_S = 2.0
LONG_TAU_S = 60.0
#: Stock kept for a burst, in multiples of its size: the burst itself and the reserve
#: below which refills no longer step aside (about a preparation's arrivals: 6-10 at
#: 30-50 execs/s and 0.2 s preparations, a sixth of a 60-exec burst).
BURST_HEADROOM = 1.2
#: Requests this long before a streak's first miss count with it, and a streak goes
#: on while misses recur within this long of each other.
SHORTFALL_WINDOW_S = 10.0
#: A streak counts the requests of at most its last this many seconds (at least
#: ``SHORTFALL_WINDOW_S``: the requests before a streak's first miss count).
STREAK_MAX_S = 60.0
#: Most recent requests kept for counting (beyond any pool a budget allows).
MAX_BURST_EVENTS = 10_000
#: Time constant of the memory of the largest shortfall (seconds).
SHORTFALL_MEMORY_S = 600.0
#: Containers above the target are kept this long after their preparation, so a
#: pool grown by a burst still holds them for the next burst.
SHRINK_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class Demand:
    """What one flavour's pool observed."""

    #: Arrivals per second (a ``RateMeter`` estimate).
    rate: float
    #: Seconds to prepare one container (an ``Ewma`` of measured preparations).
    prepare_s: float
    #: The configured size: never planned below.
    floor: int
    #: Host memory one ready container holds, in MB.
    entry_mb: float
    #: Requests that recently found the pool empty (a ``ShortfallMeter`` estimate).
    shortfall: float = 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    """A pool's target size and how many containers it may prepare at once."""

    target: int
    parallel: int


def wanted(demand: Demand) -> int:
    """Ready containers wanted for ``demand``, before the budget (at least the floor)."""
    little = HEADROOM * max(demand.rate, 0.0) * max(demand.prepare_s, 0.0)
    need = math.ceil(little + BURST_HEADROOM * max(demand.shortfall, 0.0) - 1e-9)
    return max(demand.floor, need)


def parallel_fills(demand: Demand, max_parallel: int) -> int:
    """Preparations to run at once: the number in service, ``rate × prepare_s``."""
    in_service = math.ceil(max(demand.rate, 0.0) * max(demand.prepare_s, 0.0) - 1e-9)
    return max(1, min(max_parallel, in_service))


def plan(demands: Mapping[str, Demand], *, budget_mb: float, max_parallel: int) -> dict[str, Plan]:
    """A ``Plan`` per flavour: the floors, then growth within ``budget_mb`` in total."""
    floors_mb = sum(d.floor * d.entry_mb for d in demands.values())
    spare_mb = max(0.0, budget_mb - floors_mb)
    extra = {name: wanted(d) - d.floor for name, d in demands.items()}
    extra_mb = sum(extra[name] * d.entry_mb for name, d in demands.items())
    scale = 1.0 if extra_mb <= spare_mb else spare_mb / extra_mb
    targets: dict[str, int] = {}
    # Cheapest first, so rounding down leaves its remainder to the dearer ones.
    for name, d in sorted(demands.items(), key=lambda item: item[1].entry_mb):
        grant = math.floor(extra[name] * scale + 1e-9)
        if d.entry_mb > 0:
            grant = min(grant, math.floor(spare_mb / d.entry_mb + 1e-9))
        spare_mb -= grant * d.entry_mb
        targets[name] = d.floor + max(grant, 0)
    return {
        name: Plan(targets[name], parallel_fills(d, max_parallel)) for name, d in demands.items()
    }


def reserve(rate: float, prepare_s: float) -> int:
    """Ready (or already preparing) entries below which a pool refills even while the
    host serves runs: the arrivals expected during one preparation, at least 1."""
    return max(1, math.ceil(max(rate, 0.0) * max(prepare_s, 0.0) - 1e-9))


def excess(ready_ages_s: list[float], target: int) -> int:
    """How many of the ready containers (their ages, oldest first) to destroy: those
    above ``target`` that are older than ``SHRINK_AFTER_S``, oldest first."""
    over = len(ready_ages_s) - target
    if over <= 0:
        return 0
    return sum(1 for age in ready_ages_s[:over] if age > SHRINK_AFTER_S)


def wait_worthwhile(remaining_s: float, alternative_s: float) -> bool:
    """Whether to wait for a container still being prepared (``remaining_s`` to go)
    rather than take the alternative (a cold start) that costs ``alternative_s``."""
    return remaining_s < alternative_s


class RateMeter:
    """Arrivals per second: the larger of a short and a long decaying average."""

    __slots__ = ("_at", "_long", "_short")

    def __init__(self) -> None:
        self._short = 0.0
        self._long = 0.0
        self._at: float | None = None

    def _decay(self, now: float) -> None:
        if self._at is not None and now > self._at:
            dt = now - self._at
            self._short *= math.exp(-dt / SHORT_TAU_S)
            self._long *= math.exp(-dt / LONG_TAU_S)
        if self._at is None or now > self._at:
            self._at = now

    def record(self, now: float) -> None:
        """One arrival at ``now``."""
        self._decay(now)
        self._short += 1.0 / SHORT_TAU_S
        self._long += 1.0 / LONG_TAU_S

    def rate(self, now: float) -> float:
        """The estimate at ``now``."""
        self._decay(now)
        return max(self._short, self._long)


class ShortfallMeter:
    """The most requests of one streak, decaying with ``SHORTFALL_MEMORY_S``.

    A streak starts at a request that found the pool empty and counts every request
    from ``SHORTFALL_WINDOW_S`` before it (the burst's requests served from stock
    before the miss); it goes on while misses recur within ``SHORTFALL_WINDOW_S``
    of each other, and counts the requests of its last ``STREAK_MAX_S`` at most.
    So a burst slowed by waiting for sandboxes counts whole, however long it took.
    """

    __slots__ = ("_at", "_events", "_missed_at", "_peak", "_streak_from")

    def __init__(self) -> None:
        self._events: deque[float] = deque(maxlen=MAX_BURST_EVENTS)
        self._peak = 0.0
        self._at: float | None = None
        self._missed_at = float("-inf")
        self._streak_from = float("-inf")

    def _decay(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._peak *= math.exp(-(now - self._at) / SHORTFALL_MEMORY_S)
        if self._at is None or now > self._at:
            self._at = now
        cutoff = now - STREAK_MAX_S
        while self._events and self._events[0] < cutoff:
            self._events.popleft()

    def record(self, now: float, *, missed: bool = True) -> None:
        """One request at ``now``; ``missed``: it found no ready entry."""
        self._decay(now)
        self._events.append(now)
        if missed:
            if now - self._missed_at > SHORTFALL_WINDOW_S:
                self._streak_from = now - SHORTFALL_WINDOW_S
            self._missed_at = now
        if now - self._missed_at <= SHORTFALL_WINDOW_S:
            # Only the last STREAK_MAX_S are kept (``_decay``): the streak's count.
            count = len(self._events) - bisect.bisect_left(self._events, self._streak_from)
            self._peak = max(self._peak, float(count))

    def value(self, now: float) -> float:
        """The estimate at ``now``."""
        self._decay(now)
        return self._peak


class Ewma:
    """An exponentially weighted moving average, starting from a prior."""

    __slots__ = ("alpha", "samples", "value")

    def __init__(self, prior: float, alpha: float = 0.3) -> None:
        self.value = prior
        self.alpha = alpha
        self.samples = 0

    def add(self, sample: float) -> None:
        # The first measurement replaces the prior outright.
        self.value = (
            sample if self.samples == 0 else self.value + self.alpha * (sample - self.value)
        )
        self.samples += 1
