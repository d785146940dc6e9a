"""Background engine work steps aside while runs are being served.

A warm run costs the host about 20 ms; the work it leaves behind costs far more:
refilling its pool (create, attach and start a container, the agent's start-up; about
0.4 CPU-second of engine work for a light container, more for a data one) and
removing the used container. Done at once, that work shares the cores with the next
run of a burst and makes it several times slower. ``Activity`` counts the runs in
flight and says how long background work should still wait: while runs come one
at a time (a client sending its execs back to back), until the host is quiet again
(no run for ``QUIET_AFTER_S``); not at all while more than one runs at once
(sustained concurrent load: the work must keep pace with it, and holding it back
would only borrow from the pools' stock). ``Deferred`` holds queued work (container
removals) back that long, within bounds:

- while a run is served, an item waits until the backlog exceeds ``max_backlog`` or
  the oldest item is ``max_delay_s`` old, then goes at once;
- once quiet, the backlog is drained with ``workers`` in parallel;
- ``close()`` does everything left before returning.

The warm pools use ``Activity.quiet_in`` the same way for their refills
(``runner.pool``). Nothing here touches an engine: work is a callable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The host counts as quiet this long after the last run ended (longer than the gap
#: between two execs of a client sending them back to back).
QUIET_AFTER_S = 0.15
#: Deferred items: the backlog above which they go at once, and their longest wait.
MAX_BACKLOG = 64
MAX_DELAY_S = 20.0


class Activity:
    """Runs in flight, and when the host will be quiet; thread-safe."""

    def __init__(
        self, *, quiet_after_s: float = QUIET_AFTER_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.quiet_after_s = quiet_after_s
        self._clock = clock
        self.condition = threading.Condition()
        self._in_flight = 0
        self._last_end = float("-inf")

    def begin(self) -> None:
        """One run starts."""
        with self.condition:
            self._in_flight += 1

    def end(self) -> None:
        """One run ended (wakes the work waiting for a quiet host)."""
        with self.condition:
            self._in_flight = max(0, self._in_flight - 1)
            self._last_end = self._clock()
            self.condition.notify_all()

    @property
    def in_flight(self) -> int:
        with self.condition:
            return self._in_flight

    def quiet_in(self) -> float:
        """Seconds background work should still wait: until the host is quiet while
        one run is in flight (``quiet_after_s``, at least) or just ended; 0 when quiet
        or while several runs are in flight."""
        with self.condition:
            return self._quiet_in_locked()

    def _quiet_in_locked(self) -> float:
        if self._in_flight > 1:
            return 0.0
        if self._in_flight:
            return self.quiet_after_s
        return max(0.0, self._last_end + self.quiet_after_s - self._clock())


class Deferred(Generic[T]):
    """Items of background work done when the host is quiet; see the module docstring."""

    def __init__(
        self,
        work: Callable[[T], None],
        activity: Activity,
        *,
        workers: int = 4,
        max_backlog: int = MAX_BACKLOG,
        max_delay_s: float = MAX_DELAY_S,
        name: str = "rce-deferred",
    ) -> None:
        self._work = work
        self._activity = activity
        self._clock = activity._clock
        self._cond = activity.condition
        self._max_backlog = max_backlog
        self._max_delay_s = max_delay_s
        self._queue: deque[tuple[float, T]] = deque()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: T) -> None:
        """Queue ``item``; ``RuntimeError`` once closed."""
        with self._cond:
            if self._closed:
                raise RuntimeError("closed")
            self._queue.append((self._clock(), item))
            self._cond.notify_all()

    def now(self, item: T) -> None:
        """Queue ``item`` ahead of the rest, to be done at once."""
        with self._cond:
            if self._closed:
                raise RuntimeError("closed")
            self._queue.appendleft((float("-inf"), item))
            self._cond.notify_all()

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        """Do every queued item, then stop. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    def _due_in_locked(self) -> float:
        """Seconds until the head of the queue may go (0: now)."""
        if self._closed or len(self._queue) > self._max_backlog:
            return 0.0
        age = self._clock() - self._queue[0][0]
        return max(0.0, min(self._activity._quiet_in_locked(), self._max_delay_s - age))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._queue:
                        if self._closed:
                            return
                        self._cond.wait()
                        continue
                    due_in = self._due_in_locked()
                    if due_in <= 0:
                        break
                    self._cond.wait(due_in)
                _, item = self._queue.popleft()
            try:
                self._work(item)
            except Exception:
                log.exception("deferred work failed")
