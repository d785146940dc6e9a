"""The warm pool: the generic ``WarmPool`` on plain objects, then ``DockerSandbox``'s pool.

The generic part needs no engine and is fast; the ``docker`` part checks the pool's
containers on the real engine: single use, refill, re-keying on limit changes,
idle recycling, going cold when empty, and a clean ``close()``.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import docker
import pytest

from runner.base import Language, Limits, RunRequest
from runner.docker import DockerSandbox
from runner.pool import WarmPool
from tests.support.docker_plugin import execute, our_containers, wait_until_gone


@dataclass(eq=False)
class Entry:
    key: str
    number: int
    destroyed: bool = False


class Factory:
    """Creates numbered entries (optionally slowly or failing) and records destruction."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.created: list[Entry] = []
        self.destroyed: list[Entry] = []
        self.attempts = 0
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    def create(self, key: str) -> Entry:
        with self._lock:
            self.attempts += 1
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("engine down")
        entry = Entry(key, next(self._numbers))
        with self._lock:
            self.created.append(entry)
        return entry

    def destroy(self, entry: Entry) -> None:
        entry.destroyed = True
        with self._lock:
            self.destroyed.append(entry)


def make_pool(factory: Factory, size: int = 2, max_idle_s: float = 60.0) -> WarmPool[str, Entry]:
    return WarmPool(
        size=size, create=factory.create, destroy=factory.destroy, max_idle_s=max_idle_s
    )


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


class TestWarmPool:
    def test_fills_to_size_and_hands_out_each_entry_once(self) -> None:
        factory = Factory()
        pool = make_pool(factory)
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            first, second = pool.take("k"), pool.take("k")
            assert first is not None and second is not None and first is not second
            assert pool.wait_ready(timeout_s=5)  # refilled
            taken = {id(pool.take("k")), id(pool.take("k"))}
            assert id(first) not in taken and id(second) not in taken
        finally:
            pool.close()

    def test_take_never_waits_for_a_slow_refill(self) -> None:
        factory = Factory(delay_s=1.0)
        pool = make_pool(factory, size=1)
        pool.start("k")
        try:
            started = time.monotonic()
            assert pool.take("k") is None
            assert time.monotonic() - started < 0.1
        finally:
            pool.close()

    def test_a_new_key_drains_and_rebuilds(self) -> None:
        factory = Factory()
        pool = make_pool(factory)
        pool.start("old")
        try:
            assert pool.wait_ready(timeout_s=5)
            old = list(factory.created)
            assert pool.take("new") is None  # the caller goes cold
            assert all(e.destroyed for e in old)
            assert pool.wait_ready(timeout_s=5)
            entry = pool.take("new")
            assert entry is not None and entry.key == "new"
        finally:
            pool.close()

    def test_idle_entries_are_recycled(self) -> None:
        factory = Factory()
        pool = make_pool(factory, size=1, max_idle_s=0.3)
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            first = factory.created[0]
            assert wait_for(lambda: first.destroyed, timeout_s=5)
            assert pool.wait_ready(timeout_s=5)
            entry = pool.take("k")
            assert entry is not None and entry is not first
        finally:
            pool.close()

    def test_failures_back_off(self) -> None:
        factory = Factory(fail=True)
        pool = make_pool(factory, size=1)
        pool.start("k")
        try:
            time.sleep(2.5)
            assert 1 <= factory.attempts <= 3
            assert pool.take("k") is None
        finally:
            pool.close()

    def test_close_destroys_everything_and_is_idempotent(self) -> None:
        factory = Factory(delay_s=0.2)
        pool = make_pool(factory, size=3)
        pool.start("k")
        assert pool.wait_ready(timeout_s=5)
        pool.close()
        pool.close()
        assert len(factory.created) >= 3
        assert all(e.destroyed for e in factory.created)
        assert pool.take("k") is None

    def test_unhealthy_entries_are_skipped(self) -> None:
        factory = Factory()
        pool = WarmPool(
            size=2,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            healthy=lambda e: e.number % 2 == 1,
        )
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            entry = pool.take("k")
            assert entry is not None and entry.number % 2 == 1
            assert any(e.number % 2 == 0 and e.destroyed for e in factory.created)
        finally:
            pool.close()


@pytest.mark.docker
class TestDockerPool:
    @pytest.fixture
    def case(self, run_labels: dict[str, str]) -> dict[str, str]:
        """Labels that single out this test's containers."""
        return {**run_labels, "org.rce.test-case": secrets.token_hex(6)}

    def case_containers(self, client: docker.DockerClient, case: dict[str, str]) -> list[str]:
        return [
            c.name
            for c in our_containers(client, **{"org.rce.test-case": case["org.rce.test-case"]})
        ]

    def test_warm_containers_are_labelled_single_use_and_refilled(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        box = make_sandbox(pool_size=2, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        listed = our_containers(docker_client, **{"org.rce.test-case": case["org.rce.test-case"]})
        assert len(listed) == 2
        for item in listed:
            assert item.name.startswith("rce-sbx-") and item.state == "running"
            assert item.labels["org.rce.pool"] == "1"
            assert int(item.labels["org.rce.deadline"]) > time.time() + 600
        first = execute(box, "import os; open('mark', 'w').write('x'); print(os.getpid())")
        second = execute(box, "import os; print(os.listdir('.'))")
        assert first.exit_code == 0 and second.stdout == "[]\n"
        first.close()
        assert box.wait_pool_ready(120)
        now = set(self.case_containers(docker_client, case))
        assert len(now) == 2 and not now & {i.name for i in listed}

    def test_an_empty_pool_goes_cold_without_waiting(
        self, make_sandbox: Callable[..., DockerSandbox], case: dict[str, str]
    ) -> None:
        box = make_sandbox(pool_size=1, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        box.run(RunRequest(language=Language.PYTHON, code="print(1)"))
        misses = box.stats()["pool_misses"]
        started = time.monotonic()
        result = box.run(RunRequest(language=Language.PYTHON, code="print(2)"))
        assert result.stdout == "2\n" and time.monotonic() - started < 3
        assert box.stats()["pool_misses"] == misses + 1

    def test_changed_limits_rebuild_the_pool(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        box = make_sandbox(pool_size=1, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        old = set(self.case_containers(docker_client, case))
        result = box.run(
            RunRequest(language=Language.PYTHON, code="print(3)", limits=Limits(pids_limit=64))
        )
        assert result.stdout == "3\n"
        assert box.wait_pool_ready(120)
        end = time.monotonic() + 10
        while old & set(self.case_containers(docker_client, case)):
            assert time.monotonic() < end, "the old warm container was not drained"
            time.sleep(0.2)
        [name] = self.case_containers(docker_client, case)
        assert docker_client.api.inspect_container(name)["HostConfig"]["PidsLimit"] == 64

    def test_idle_warm_containers_are_recycled(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        box = make_sandbox(pool_size=1, pool_limits=Limits(), pool_max_idle_s=2, labels=case)
        assert box.wait_pool_ready(120)
        first = set(self.case_containers(docker_client, case))
        end = time.monotonic() + 30
        while first & set(self.case_containers(docker_client, case)):
            assert time.monotonic() < end, "the idle warm container was never recycled"
            time.sleep(0.3)
        assert box.wait_pool_ready(120)

    def test_close_removes_the_warm_containers(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        box = make_sandbox(pool_size=2, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        box.close()
        assert (
            wait_until_gone(docker_client, 10, **{"org.rce.test-case": case["org.rce.test-case"]})
            == []
        )
        assert box.stats()["pool_size"] == 0
