"""The warm pool: the generic ``WarmPool`` on plain objects, then ``DockerSandbox``'s pool.

The generic part needs no engine and is fast; the ``docker`` part checks the pool's
containers on the real engine: single use, refill, re-keying on limit changes,
idle recycling, going cold when empty, and a clean ``close()``.
"""

from __future__ import annotations

import itertools
import secrets
import shlex
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from prometheus_client import generate_latest

from handler.metrics import Metrics
from runner import _docker_config as cfg
from runner import pool_sizing
from runner.base import Language, Limits, RunRequest
from runner.docker import DEFAULT_POOL_BUDGET_MB, DockerSandbox, entry_mb
from runner.pool import WarmPool
from tests.support.docker_plugin import (
    TEST_RUNTIME,
    UNDER_GVISOR,
    execute,
    our_containers,
    wait_until_gone,
)

REPO = Path(__file__).resolve().parents[2]
#: Prints whether pandas was imported before the program's first line ran.
PRELOADED = "import sys\nprint('pandas' in sys.modules)\n"


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

    def test_close_during_a_fill_destroys_its_entry_and_cancels_queued_fills(self) -> None:
        factory = Factory(delay_s=0.5)
        pool = WarmPool(
            size=3,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            parallel_fills=1,
        )
        pool.start("k")
        assert wait_for(lambda: factory.attempts == 1)
        pool.close()  # one fill in progress, two queued
        assert factory.attempts == 1
        assert len(factory.created) == 1 and factory.created[0].destroyed
        assert pool.stats()["ready"] == 0

    def test_parallel_fills_bound_concurrent_creation(self) -> None:
        active, peak = 0, 0
        lock = threading.Lock()

        def create(key: str) -> Entry:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.1)
            with lock:
                active -= 1
            return Entry(key, 0)

        pool: WarmPool[str, Entry] = WarmPool(
            size=4, create=create, destroy=lambda e: None, max_idle_s=60, parallel_fills=1
        )
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            assert peak == 1
        finally:
            pool.close()

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

    def test_arrivals_grow_the_target_and_the_pool_follows(self) -> None:
        factory = Factory(delay_s=0.05)
        pool = WarmPool(
            size=1,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            parallel_fills=4,
            prepare_prior_s=0.5,
        )
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            for _ in range(20):
                pool.record_arrival()
            demand = pool.demand()
            assert demand.rate > 5 and demand.floor == 1
            pool.set_plan(pool_sizing.plan({"x": demand}, budget_mb=1e9, max_parallel=4)["x"])
            target = pool.stats()["target"]
            assert target > 1
            assert pool.wait_ready(timeout_s=5)
            assert pool.stats()["ready"] == target
        finally:
            pool.close()

    def test_an_on_demand_pool_of_floor_0_fills_only_with_demand(self) -> None:
        factory = Factory()
        pool = WarmPool(
            size=0,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            on_demand=True,
        )
        disabled = make_pool(Factory(), size=0)
        try:
            assert pool.take("k") is None  # a miss: nothing ready, nothing created yet
            time.sleep(0.3)
            assert factory.attempts == 0 and pool.stats()["target"] == 0
            pool.record_arrival()
            pool.set_plan(
                pool_sizing.plan({"x": pool.demand()}, budget_mb=1e9, max_parallel=4)["x"]
            )
            assert pool.stats()["target"] >= 1
            assert wait_for(lambda: pool.stats()["ready"] >= 1)
            assert pool.take("k") is not None
            disabled.record_arrival()
            assert disabled.take("k") is None and disabled.stats()["target"] == 0
        finally:
            pool.close()
            disabled.close()

    def test_a_take_waits_for_a_nearly_ready_entry_when_that_is_faster(self) -> None:
        factory = Factory(delay_s=0.3)
        pool = WarmPool(
            size=1,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            prepare_prior_s=0.3,
        )
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            assert pool.take("k") is not None
            assert wait_for(lambda: pool.stats()["pending"] == 1)
            started = time.monotonic()
            # A cold start would cost 1 s: waiting for the refill (<= 0.3 s) is faster.
            entry = pool.take("k", alternative_s=1.0)
            assert entry is not None and time.monotonic() - started < 0.9
            assert pool.stats()["waited"] == 1 and pool.stats()["hits"] == 2
        finally:
            pool.close()

    def test_a_take_goes_cold_when_waiting_is_slower(self) -> None:
        factory = Factory(delay_s=2.0)
        pool = WarmPool(
            size=1,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            prepare_prior_s=2.0,
        )
        pool.start("k")
        try:
            assert wait_for(lambda: pool.stats()["pending"] == 1)
            started = time.monotonic()
            # The entry needs about 2 s more; a cold start costs 0.2 s.
            assert pool.take("k", alternative_s=0.2) is None
            assert time.monotonic() - started < 0.1
            assert pool.stats()["misses"] == 1 and pool.stats()["waited"] == 0
        finally:
            pool.close()

    def test_entries_above_a_lowered_target_are_destroyed_once_old(self) -> None:
        now = [1000.0]
        factory = Factory()
        pool = WarmPool(
            size=1,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=1e6,
            clock=lambda: now[0],
        )
        pool.start("k")
        try:
            pool.set_plan(pool_sizing.Plan(target=3, parallel=3))
            assert pool.wait_ready(timeout_s=5)
            assert pool.stats()["ready"] == 3
            pool.set_plan(pool_sizing.Plan(target=1, parallel=1))
            time.sleep(1.5)  # a maintenance round: still young, kept
            assert pool.stats()["ready"] == 3
            now[0] += pool_sizing.SHRINK_AFTER_S + 1
            assert wait_for(lambda: pool.stats()["ready"] == 1, timeout_s=5)
            assert len(factory.destroyed) == 2
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
        # No budget above the floor: exactly two, however fast the runs come.
        box = make_sandbox(pool_size=2, pool_limits=Limits(), labels=case, pool_budget_mb=0)
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
        # The used ones go once the runs pause (their removal steps aside for runs).
        used = {i.name for i in listed}
        assert wait_for(lambda: not used & set(self.case_containers(docker_client, case)), 10)
        now = set(self.case_containers(docker_client, case))
        assert len(now) == 2 and not now & used

    def test_a_warm_light_sandbox_forked_its_programs_process_before_the_job(
        self, make_sandbox: Callable[..., DockerSandbox], case: dict[str, str]
    ) -> None:
        """The program's process (Python run in it, bash exec'ed by it) started with
        the agent, while the pool prepared the container, not when the job came: its
        start time is the agent's (``/proc/<pid>/stat``, clock ticks), though the job
        comes seconds later."""
        box = make_sandbox(pool_size=1, pool_limits=Limits(), labels=case, pool_budget_mb=0)
        started = (
            "import os\n"
            "tick = os.sysconf('SC_CLK_TCK')\n"
            "def start(pid):\n"
            "    return int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[19])\n"
            "print(round((start(os.getpid()) - start(1)) / tick, 2))\n"
        )
        programs = [
            (Language.PYTHON, started),
            (
                Language.BASH,
                f"exec python3 -c {shlex.quote(started)}",
            ),
        ]
        for lang, code in programs:
            assert box.wait_pool_ready(120)
            time.sleep(2.5)
            result = execute(box, code, lang=lang)
            assert result.exit_code == 0, result
            assert float(result.stdout) < 1.0, (lang, result.stdout)

    def test_an_empty_pool_waits_no_longer_than_a_cold_start(
        self, make_sandbox: Callable[..., DockerSandbox], case: dict[str, str]
    ) -> None:
        """With the pool just emptied, the next run takes the refill if it is ready,
        waits for it while under way (when measured faster), or starts cold."""
        box = make_sandbox(pool_size=1, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        box.run(RunRequest(language=Language.PYTHON, code="print(1)"))
        before = box.stats()
        started = time.monotonic()
        result = box.run(RunRequest(language=Language.PYTHON, code="print(2)"))
        assert result.stdout == "2\n" and time.monotonic() - started < 3
        after = box.stats()
        hits = after["pool_hits"] - before["pool_hits"]
        waited = after["pool_waited_light"] - before["pool_waited_light"]
        missed = after["pool_misses"] - before["pool_misses"]
        assert (hits, waited, missed) in ((1, 0, 0), (1, 1, 0), (0, 0, 1))

    def test_a_burst_grows_the_pool_within_the_budget_and_metrics_show_it(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        """Back-to-back runs raise the light pool's target above its floor, never past
        the memory budget (the floor's light sandbox and three more: 60 MB under runc,
        124 under gVisor), and /metrics reports target, size, hits and misses per
        flavour."""
        budget = 4 * entry_mb(cfg.Flavour.LIGHT, TEST_RUNTIME)
        box = make_sandbox(
            pool_size=1, pool_data_size=0, pool_limits=Limits(), labels=case, pool_budget_mb=budget
        )
        assert box.wait_pool_ready(120)
        targets = []
        with ThreadPoolExecutor(3) as workers:
            runs = [
                workers.submit(box.run, RunRequest(language=Language.PYTHON, code="print(7)"))
                for _ in range(18)
            ]
            for run in runs:
                assert run.result().stdout == "7\n"
                targets.append(box.stats()["pool_target_light"])
        assert max(targets) > 1
        assert max(targets) <= 4
        stats = box.stats()
        assert stats["pool_hits_light"] + stats["pool_misses_light"] == 18
        assert stats["pool_hits_light"] >= 1
        time.sleep(1.5)  # the refills the burst started
        warm = our_containers(
            docker_client, **{"org.rce.test-case": case["org.rce.test-case"], "org.rce.pool": "1"}
        )
        assert len(warm) <= 4
        text = generate_latest(Metrics(sandbox_stats=box.stats).registry).decode()
        for line in (
            f"rce_pool_target_light {float(box.stats()['pool_target_light'])}",
            "rce_pool_size_light ",
            f"rce_pool_hits_light_total {float(stats['pool_hits_light'])}",
            f"rce_pool_misses_light_total {float(stats['pool_misses_light'])}",
            "rce_pool_target_data 0.0",
            f"rce_pool_budget_mb {float(int(budget))}",
        ):
            assert line in text

    def test_changed_limits_rebuild_the_pool(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        # No budget above the floor: the miss does not grow the pool.
        box = make_sandbox(pool_size=1, pool_limits=Limits(), labels=case, pool_budget_mb=0)
        assert box.wait_pool_ready(120)
        old = set(self.case_containers(docker_client, case))
        result = box.run(
            RunRequest(language=Language.PYTHON, code="print(3)", limits=Limits(pids_limit=64))
        )
        assert result.stdout == "3\n"
        assert box.wait_pool_ready(120)
        end = time.monotonic() + 10
        # Left: the new warm container only (the old one drained, the cold run's removed).
        while len(current := set(self.case_containers(docker_client, case))) != 1 or old & current:
            assert time.monotonic() < end, f"the old warm container was not drained: {current}"
            time.sleep(0.2)
        [name] = current
        host = docker_client.api.inspect_container(name)["HostConfig"]
        ulimits = {u["Name"]: u["Soft"] for u in host["Ulimits"]}
        if UNDER_GVISOR:  # the limit is gVisor's nproc; the cgroup leaves room for gVisor
            assert ulimits["nproc"] == 64
            assert host["PidsLimit"] == 64 * cfg.GVISOR_HOST_PIDS_FACTOR
        else:
            assert host["PidsLimit"] == 64

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

    def test_code_importing_data_libraries_takes_a_data_container(
        self, make_sandbox: Callable[..., DockerSandbox], case: dict[str, str]
    ) -> None:
        box = make_sandbox(pool_size=1, pool_data_size=1, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        data = execute(box, PRELOADED + "import pandas as pd\nprint(pd.Series([1, 2]).sum())\n")
        assert data.stdout == "True\n3\n", data.stderr
        assert box.wait_pool_ready(120)
        light = execute(box, PRELOADED)
        assert light.stdout == "False\n", light.stderr
        bash = execute(box, "python3 -c 'import sys; print(len(sys.argv))'", lang=Language.BASH)
        assert bash.stdout == "1\n", bash.stderr

    def test_light_code_never_takes_a_data_container(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        box = make_sandbox(pool_size=1, pool_data_size=1, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        [warm_data] = [
            name
            for name in self.case_containers(docker_client, case)
            if "RCE_AGENT_PRELOAD=data"
            in docker_client.api.inspect_container(name)["Config"]["Env"]
        ]
        results = [box.run(RunRequest(language=Language.PYTHON, code=PRELOADED)) for _ in range(3)]
        assert [r.stdout for r in results] == ["False\n"] * 3
        # The LIGHT pool ran dry: the request went cold or waited for the light
        # container being prepared (when measured faster), never to DATA.
        stats = box.stats()
        assert stats["pool_misses"] + stats["pool_waited_light"] >= 1, stats
        assert warm_data in self.case_containers(docker_client, case)
        assert box.stats()["pool_size_data"] == 1

    def test_r_and_js_fall_back_to_a_light_container_then_get_a_pool_of_their_own(
        self, make_sandbox: Callable[..., DockerSandbox], case: dict[str, str]
    ) -> None:
        """The r and node pools start empty (floor 0) and grow with their requests
        (within the production default budget)."""
        box = make_sandbox(
            pool_size=1, pool_limits=Limits(), labels=case, pool_budget_mb=DEFAULT_POOL_BUDGET_MB
        )
        assert box.wait_pool_ready(120)
        stats = box.stats()
        assert (stats["pool_target_r"], stats["pool_target_node"]) == (0, 0)
        for lang, flavour in ((Language.R, "r"), (Language.JAVASCRIPT, "node")):
            code = "cat('hi\\n')" if lang is Language.R else "console.log('hi')"
            first = box.run(RunRequest(language=lang, code=code))
            assert (first.exit_code, first.stdout) == (0, "hi\n"), first.stderr
            assert box.stats()[f"pool_hits_{flavour}"] == 0

            def grown(key: str = f"pool_size_{flavour}") -> bool:
                return bool(box.stats()[key] >= 1)

            assert wait_for(grown, 60)
            second = box.run(RunRequest(language=lang, code=code))
            assert (second.exit_code, second.stdout) == (0, "hi\n"), second.stderr
            assert box.stats()[f"pool_hits_{flavour}"] == 1

    def test_data_code_falls_back_to_a_light_container(
        self, make_sandbox: Callable[..., DockerSandbox], case: dict[str, str]
    ) -> None:
        box = make_sandbox(pool_size=1, pool_limits=Limits(), labels=case)
        assert box.wait_pool_ready(120)
        result = execute(box, PRELOADED + "import numpy\nprint(numpy.arange(4).sum())\n")
        assert result.stdout == "False\n6\n", result.stderr

    @pytest.mark.parametrize("moment", ["while_filling", "when_full"])
    def test_a_process_exiting_without_close_leaves_no_container(
        self,
        docker_client: docker.DockerClient,
        sandbox_image: str,
        case: dict[str, str],
        moment: str,
    ) -> None:
        """A server stopped before its shutdown hook ran: its warm containers (ready,
        starting or being created) still go with it."""
        script = textwrap.dedent(
            f"""
            import time
            from runner.base import Limits
            from runner.docker import DockerSandbox

            box = DockerSandbox(
                image={sandbox_image!r}, labels={case!r}, pool_size=1, pool_data_size=2,
                pool_limits=Limits(),
            )
            if {moment == "when_full"}:
                assert box.wait_pool_ready(120)
            time.sleep(0.3)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert self.case_containers(docker_client, case) == []

    def test_reaper_removes_containers_never_started(
        self,
        docker_client: docker.DockerClient,
        sandbox_image: str,
        make_sandbox: Callable[..., DockerSandbox],
        case: dict[str, str],
    ) -> None:
        now = int(time.time())

        def create(created_at: int) -> str:
            name = f"rce-sbx-{secrets.token_hex(8)}"
            labels = {
                **case,
                "org.rce.service": "rce",
                "org.rce.created-at": str(created_at),
                "org.rce.deadline": str(now + 3600),
            }
            docker_client.api.create_container(
                sandbox_image, ["true"], name=name, labels=labels, network_disabled=True
            )
            return name

        stale, fresh = create(now - 1000), create(now)
        try:
            assert isinstance(make_sandbox().reap(), int)
            left = set(self.case_containers(docker_client, case))
            assert stale not in left and fresh in left
        finally:
            docker_client.api.remove_container(fresh, force=True)
