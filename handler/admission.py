"""Bounded load for execs: a fixed number run, a bounded number wait, the rest are refused.

``ExecGate.run(fn)`` runs ``fn`` on one of the gate's own ``RCE_MAX_CONCURRENT_EXECS``
threads. When every slot is busy the call waits in a FIFO queue of at most
``RCE_EXEC_QUEUE_SIZE`` entries for at most ``RCE_EXEC_QUEUE_TIMEOUT_S``; a full queue
raises ``ExecQueueFull`` (429) at once and a timeout raises ``ExecQueueTimeout`` (503),
both with a ``Retry-After``.

Execs run on these dedicated threads, never on the event loop's shared threadpool, so
a saturated exec path cannot starve ``/health``, ``/ready`` or downloads. A slot is
released when the work *ends*, not when its caller stops waiting (a client that
disconnects does not free a slot its sandbox still uses).

The gate is loop-agnostic (a lock and futures resolved with ``call_soon_threadsafe``),
so one instance serves whatever event loop the server or a test client runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import ExecQueueFull, ExecQueueTimeout

T = TypeVar("T")


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


def _wake(waiter: _Waiter) -> None:
    if not waiter.future.done():
        waiter.future.set_result(None)


class ExecGate:
    """Admits up to ``concurrency`` execs, queues ``queue_size`` more (see module doc)."""

    def __init__(self, concurrency: int, queue_size: int, queue_timeout_s: float) -> None:
        self._concurrency = concurrency
        self._queue_size = queue_size
        self._timeout_s = queue_timeout_s
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[_Waiter] = deque()
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="rce-exec")
        self.rejected_full = 0
        self.rejected_timeout = 0

    @property
    def running(self) -> int:
        """Execs holding a slot now."""
        return self._running

    @property
    def queued(self) -> int:
        """Execs waiting for a slot now."""
        return len(self._waiters)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a slot, in the caller's context (request id for the logs)."""
        await self._acquire()
        try:
            work = self._executor.submit(contextvars.copy_context().run, fn)
        except BaseException:
            self._release()
            raise
        work.add_done_callback(self._release_after)
        return await asyncio.wrap_future(work)

    def close(self) -> None:
        """Stop taking work; running execs finish on their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _release_after(self, _: Future[Any]) -> None:
        self._release()

    async def _acquire(self) -> None:
        waiter = self._enqueue()
        if waiter is None:
            return
        try:
            await asyncio.wait_for(waiter.future, self._timeout_s)
        except TimeoutError:
            if not self._abandon(waiter):
                return  # the slot arrived as the wait ended: keep it
            self.rejected_timeout += 1
            raise ExecQueueTimeout(
                f"no exec slot became free within {self._timeout_s:g} s "
                "(RCE_EXEC_QUEUE_TIMEOUT_S); retry later",
                retry_after_s=max(1, round(self._timeout_s / 4)),
            ) from None
        except BaseException:
            if not self._abandon(waiter):
                self._release()  # granted but the caller is gone: pass the slot on
            raise

    def _enqueue(self) -> _Waiter | None:
        with self._lock:
            if self._running < self._concurrency and not self._waiters:
                self._running += 1
                return None
            if len(self._waiters) >= self._queue_size:
                self.rejected_full += 1
                raise ExecQueueFull(
                    f"all {self._concurrency} exec slots are busy and {self._queue_size} "
                    "execs are already waiting (RCE_MAX_CONCURRENT_EXECS, RCE_EXEC_QUEUE_SIZE); "
                    "retry later",
                    retry_after_s=1,
                )
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
            return waiter

    def _abandon(self, waiter: _Waiter) -> bool:
        """Leave the queue; False when the waiter was granted a slot meanwhile."""
        with self._lock:
            if waiter.granted:
                return False
            self._waiters.remove(waiter)
            return True

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                # Hand the slot straight to the oldest waiter: ``running`` is unchanged.
                waiter = self._waiters.popleft()
                waiter.granted = True
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter)
                    return
                except RuntimeError:  # its event loop is closed: nobody waits there
                    continue
            self._running -= 1
