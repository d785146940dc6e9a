"""Placement over several Docker engines: which engine runs the next exec.

A pure policy, with no I/O: ``Placement`` tracks, per engine, whether it is in the
rotation, how many runs this process has in flight on it, and how many warm
sandboxes it has ready. ``acquire()`` picks a healthy engine with capacity, the
one with the least in-flight work (ties: the most warm sandboxes ready, then the
one picked least recently) and counts the run until ``release()``.

An engine leaves the rotation on a failed health check or a failure on use
(``mark_down``) and rejoins on the first successful check (``mark_up``). The
adapter (``runner.multi``) does the pinging; this module only keeps the books.

Engines are named by an id every replica derives from its own engine list: the
configured name (``name=url``) or a digest of the URL. A continuation token names
its engine by this id, so any replica resumes the run on the engine that holds it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from core.errors import InvalidRequest, Overloaded, SandboxUnavailable

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://", "http://", "https://")


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """One engine of ``RCE_DOCKER_HOSTS``: its id and its Docker URL."""

    id: str
    url: str


def engine_id(url: str) -> str:
    """The id of an unnamed engine: a stable digest of its URL (same on every replica)."""
    return "e" + hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:10]


def parse_engines(text: str) -> tuple[EngineSpec, ...]:
    """The engines of a comma-separated list of ``url`` or ``name=url`` items.

    ``ValueError`` names the first bad item: an unknown scheme, a bad name, or a
    repeated id or URL.
    """
    specs: list[EngineSpec] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or "://" in name:
            name, url = "", item
        name, url = name.strip(), url.strip()
        if not url.startswith(_SCHEMES):
            raise ValueError(f"engine {item!r}: the URL must start with one of {_SCHEMES}")
        if name and not _NAME.fullmatch(name):
            raise ValueError(f"engine {item!r}: a name is 1-32 of [a-z0-9_-]")
        spec = EngineSpec(name or engine_id(url), url)
        if any(s.id == spec.id or s.url == spec.url for s in specs):
            raise ValueError(f"engine {item!r} is listed twice")
        specs.append(spec)
    return tuple(specs)


def join_ref(engine: str, container: str) -> str:
    """The run reference a continuation token carries: ``"<engine>/<container>"``."""
    return f"{engine}/{container}"


def split_ref(ref: str) -> tuple[str, str]:
    """``(engine id, container)`` of a run reference; ``InvalidRequest`` without an engine."""
    engine, sep, container = ref.partition("/")
    if not sep or not engine or not container:
        raise InvalidRequest("the continuation token does not name a Docker engine")
    return engine, container


@dataclass(slots=True)
class _Engine:
    id: str
    healthy: bool = True
    in_flight: int = 0
    warm_ready: int = 0
    last_pick: int = 0
    down_since: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EngineState:
    """What ``Placement.snapshot()`` reports about one engine."""

    id: str
    healthy: bool
    in_flight: int
    warm_ready: int
    reason: str


class Placement:
    """The books of placement over engines ``ids``; thread-safe, no I/O."""

    def __init__(
        self,
        ids: Sequence[str],
        *,
        max_in_flight: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``max_in_flight`` caps this process's runs per engine (0: no cap)."""
        if not ids:
            raise ValueError("placement needs at least one engine")
        if len(set(ids)) != len(ids):
            raise ValueError("engine ids must be unique")
        self._engines = {i: _Engine(i) for i in ids}
        self._max = max_in_flight
        self._clock = clock
        self._picks = 0
        self._lock = threading.Lock()

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._engines)

    def acquire(self, *, exclude: Iterable[str] = ()) -> str:
        """The engine for the next run, counted in flight until ``release``.

        ``SandboxUnavailable`` when no engine (outside ``exclude``) is healthy;
        ``Overloaded`` when every healthy one is at ``max_in_flight``.
        """
        skip = set(exclude)
        with self._lock:
            healthy = [e for e in self._engines.values() if e.healthy and e.id not in skip]
            if not healthy:
                down = "; ".join(
                    f"{e.id}: {e.reason or 'down'}" for e in self._engines.values() if not e.healthy
                )
                raise SandboxUnavailable(
                    "no healthy Docker engine is in the rotation" + (f" ({down})" if down else "")
                )
            free = [e for e in healthy if not self._max or e.in_flight < self._max]
            if not free:
                raise Overloaded(
                    f"every healthy Docker engine runs {self._max} execs of this replica "
                    "(RCE_ENGINE_MAX_EXECS); retry shortly"
                )
            best = min(free, key=lambda e: (e.in_flight, -e.warm_ready, e.last_pick))
            self._picks += 1
            best.last_pick = self._picks
            best.in_flight += 1
            if best.warm_ready > 0:
                best.warm_ready -= 1  # the run is likely to take one
            return best.id

    def hold(self, engine: str) -> None:
        """Count a run on a given engine (a continuation) until ``release``."""
        with self._lock:
            self._engines[engine].in_flight += 1

    def release(self, engine: str) -> None:
        with self._lock:
            item = self._engines[engine]
            item.in_flight = max(0, item.in_flight - 1)

    def is_healthy(self, engine: str) -> bool:
        with self._lock:
            item = self._engines.get(engine)
            return item is not None and item.healthy

    def knows(self, engine: str) -> bool:
        return engine in self._engines

    def mark_down(self, engine: str, reason: str) -> bool:
        """Take ``engine`` out of the rotation; True if it was in it."""
        with self._lock:
            item = self._engines[engine]
            was = item.healthy
            item.healthy = False
            item.reason = reason[:300]
            if was:
                item.down_since = self._clock()
            return was

    def mark_up(self, engine: str, *, warm_ready: int | None = None) -> bool:
        """Put ``engine`` (back) in the rotation; True if it was out of it."""
        with self._lock:
            item = self._engines[engine]
            was_down = not item.healthy
            item.healthy = True
            item.reason = ""
            item.down_since = None
            if warm_ready is not None:
                item.warm_ready = max(0, warm_ready)
            return was_down

    def set_warm(self, engine: str, ready: int) -> None:
        with self._lock:
            self._engines[engine].warm_ready = max(0, ready)

    def snapshot(self) -> tuple[EngineState, ...]:
        with self._lock:
            return tuple(
                EngineState(e.id, e.healthy, e.in_flight, e.warm_ready, e.reason)
                for e in self._engines.values()
            )
