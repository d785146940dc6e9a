"""Bounded exec admission, on fakes: slots, a bounded queue, 429/503 with Retry-After,
and ops routes that answer while every exec slot is blocked."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from core.errors import ExecQueueFull, ExecQueueTimeout
from handler.admission import ExecGate
from handler.app import create_app
from handler.settings import Settings
from runner.base import RunRequest, RunResult
from runner.fake import FakeSandbox
from storage.memory import InMemorySessionStore

KEY = "admission-key-0123456789"
H = {"X-API-Key": KEY}


class Blocker:
    """A sandbox run that blocks until released; counts how many are running."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def __call__(self, _: RunRequest) -> RunResult:
        self.started.release()
        assert self.release.wait(30), "never released"
        return RunResult("done\n", "", 0)


class TestExecGate:
    def test_admits_queues_and_refuses(self) -> None:
        """1 slot + 1 queue place: the third concurrent call is ExecQueueFull at once."""
        gate = ExecGate(1, 1, 5)
        release = threading.Event()

        async def scenario() -> list[object]:
            first = asyncio.ensure_future(gate.run(lambda: release.wait(5)))
            await asyncio.sleep(0.05)
            second = asyncio.ensure_future(gate.run(lambda: "second"))
            await asyncio.sleep(0.05)
            assert (gate.running, gate.queued) == (1, 1)
            with pytest.raises(ExecQueueFull) as full:
                await gate.run(lambda: "third")
            assert full.value.retry_after_s >= 1
            release.set()
            return list(await asyncio.gather(first, second))

        assert asyncio.run(scenario()) == [True, "second"]
        assert (gate.running, gate.queued, gate.rejected_full) == (0, 0, 1)
        gate.close()

    def test_queue_timeout(self) -> None:
        """A queued call that waits past the timeout is ExecQueueTimeout; it leaves the queue."""
        gate = ExecGate(1, 4, 0.2)
        release = threading.Event()

        async def scenario() -> None:
            first = asyncio.ensure_future(gate.run(lambda: release.wait(5)))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(ExecQueueTimeout):
                await gate.run(lambda: "late")
            assert 0.15 < time.monotonic() - started < 2
            assert gate.queued == 0
            release.set()
            await first

        asyncio.run(scenario())
        assert (gate.running, gate.rejected_timeout) == (0, 1)
        gate.close()

    def test_slot_freed_when_work_ends_not_when_caller_leaves(self) -> None:
        """A cancelled caller's work keeps its slot until it really finishes."""
        gate = ExecGate(1, 0, 1)
        release = threading.Event()

        async def scenario() -> None:
            task = asyncio.ensure_future(gate.run(lambda: release.wait(5)))
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.sleep(0.05)
            assert gate.running == 1
            with pytest.raises(ExecQueueFull):
                await gate.run(lambda: None)
            release.set()
            for _ in range(100):
                if gate.running == 0:
                    break
                await asyncio.sleep(0.01)
            assert await gate.run(lambda: "next") == "next"

        asyncio.run(scenario())
        gate.close()

    def test_fifo_handoff(self) -> None:
        """Waiters get slots in arrival order."""
        gate = ExecGate(1, 10, 5)
        release = threading.Event()
        order: list[int] = []

        async def scenario() -> None:
            first = asyncio.ensure_future(gate.run(lambda: release.wait(5)))
            await asyncio.sleep(0.02)
            waiters = []
            for i in range(5):
                waiters.append(asyncio.ensure_future(gate.run(lambda i=i: order.append(i))))
                await asyncio.sleep(0.01)
            release.set()
            await asyncio.gather(first, *waiters)

        asyncio.run(scenario())
        assert order == [0, 1, 2, 3, 4]
        gate.close()


@pytest.fixture(name="blocker")
def _blocker() -> Iterator[Blocker]:
    blocker = Blocker()
    yield blocker
    blocker.release.set()


@pytest.fixture(name="client")
def _client(blocker: Blocker) -> Iterator[TestClient]:
    settings = Settings(
        api_keys=KEY,
        log_json=False,
        max_concurrent_execs=2,
        exec_queue_size=1,
        exec_queue_timeout_s=30,
    )
    app = create_app(
        settings, store=InMemorySessionStore(), sandbox=FakeSandbox(blocker), maintenance=False
    )
    with TestClient(app) as client:
        yield client


class TestSaturatedApi:
    def test_full_queue_is_429_and_ops_stay_fast(
        self, client: TestClient, blocker: Blocker
    ) -> None:
        """2 running + 1 queued: the next exec is a 429 with Retry-After in the error shape;
        /health, /ready and /metrics answer fast meanwhile."""
        with ThreadPoolExecutor(3) as pool:
            pending = [
                pool.submit(client.post, "/exec", headers=H, json={"code": "x"}) for _ in range(3)
            ]
            for _ in range(2):
                assert blocker.started.acquire(timeout=10)
            deadline = time.monotonic() + 5
            while "rce_exec_queued 1.0" not in client.get("/metrics", headers=H).text:
                assert time.monotonic() < deadline, "the third exec never queued"
                time.sleep(0.02)
            r = client.post("/exec", headers=H, json={"code": "x"})
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1
            body = r.json()
            assert body["error"] == "exec_queue_full" and body["status"] == 429
            assert body["request_id"]
            for path in ("/health", "/ready"):
                started = time.monotonic()
                assert client.get(path, headers=H).status_code == 200
                assert time.monotonic() - started < 1.0
            metrics = client.get("/metrics", headers=H).text
            assert "rce_exec_running 2.0" in metrics
            assert 'rce_exec_rejected_total{reason="queue_full"} 1.0' in metrics
            blocker.release.set()
            assert [p.result(timeout=10).status_code for p in pending] == [200, 200, 200]

    def test_queue_timeout_is_503(self, blocker: Blocker) -> None:
        """A queued exec that waits past RCE_EXEC_QUEUE_TIMEOUT_S is a 503 with Retry-After."""
        settings = Settings(
            api_keys=KEY,
            log_json=False,
            max_concurrent_execs=1,
            exec_queue_size=1,
            exec_queue_timeout_s=0.3,
        )
        app = create_app(
            settings, store=InMemorySessionStore(), sandbox=FakeSandbox(blocker), maintenance=False
        )
        with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/exec", headers=H, json={"code": "x"})
            assert blocker.started.acquire(timeout=10)
            r = client.post("/exec", headers=H, json={"code": "x"})
            assert r.status_code == 503
            assert r.json()["error"] == "exec_queue_timeout"
            assert int(r.headers["retry-after"]) >= 1
            blocker.release.set()
            assert first.result(timeout=10).status_code == 200
