"""Background work steps aside for runs: ``Activity``, ``Deferred`` and the pools' hold-back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from runner import pool_sizing
from runner.activity import Activity, Deferred
from runner.pool import WarmPool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


class TestActivity:
    def test_quiet_only_a_while_after_the_last_run(self) -> None:
        clock = Clock()
        activity = Activity(quiet_after_s=0.2, clock=clock)
        assert activity.quiet_in() == 0.0
        activity.begin()
        assert activity.quiet_in() == 0.2 and activity.in_flight == 1
        clock.now += 5
        assert activity.quiet_in() == 0.2  # it still runs
        activity.end()
        assert abs(activity.quiet_in() - 0.2) < 1e-9
        clock.now += 0.15
        assert abs(activity.quiet_in() - 0.05) < 1e-9
        clock.now += 0.05
        assert activity.quiet_in() == 0.0

    def test_several_runs_at_once_hold_nothing_back(self) -> None:
        activity = Activity(quiet_after_s=0.2)
        activity.begin()
        activity.begin()
        assert activity.quiet_in() == 0.0  # sustained load: the work keeps pace
        activity.end()
        assert activity.quiet_in() == 0.2

    def test_more_ends_than_begins_never_go_negative(self) -> None:
        activity = Activity(quiet_after_s=0.0)
        activity.end()
        assert activity.in_flight == 0


class Recorder:
    def __init__(self) -> None:
        self.done: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, item: int) -> None:
        with self.lock:
            self.done.append(item)


class TestDeferred:
    def test_waits_while_runs_are_in_flight_then_drains(self) -> None:
        activity = Activity(quiet_after_s=0.05)
        work = Recorder()
        deferred = Deferred(work, activity, workers=2, max_backlog=10, max_delay_s=60)
        try:
            activity.begin()
            for i in range(3):
                deferred.submit(i)
            time.sleep(0.3)
            assert work.done == [] and deferred.backlog == 3
            activity.end()
            assert wait_for(lambda: sorted(work.done) == [0, 1, 2])
        finally:
            deferred.close()

    def test_urgent_items_go_at_once_even_while_busy(self) -> None:
        activity = Activity(quiet_after_s=0.05)
        work = Recorder()
        deferred = Deferred(work, activity, workers=1, max_backlog=10, max_delay_s=60)
        try:
            activity.begin()
            deferred.submit(1)
            deferred.now(2)
            assert wait_for(lambda: work.done == [2])
            time.sleep(0.2)
            assert work.done == [2]
        finally:
            activity.end()
            deferred.close()

    def test_a_backlog_above_its_bound_goes_while_busy(self) -> None:
        activity = Activity(quiet_after_s=0.05)
        work = Recorder()
        deferred = Deferred(work, activity, workers=2, max_backlog=3, max_delay_s=60)
        try:
            activity.begin()
            for i in range(5):
                deferred.submit(i)
            assert wait_for(lambda: deferred.backlog == 3)
            time.sleep(0.2)
            assert sorted(work.done) == [0, 1]  # the oldest, down to the bound
        finally:
            activity.end()
            deferred.close()

    def test_old_items_go_while_busy(self) -> None:
        activity = Activity(quiet_after_s=0.05)
        work = Recorder()
        deferred = Deferred(work, activity, workers=1, max_backlog=10, max_delay_s=0.2)
        try:
            activity.begin()
            deferred.submit(7)
            assert wait_for(lambda: work.done == [7], timeout_s=2.0)
        finally:
            activity.end()
            deferred.close()

    def test_close_does_everything_left_and_refuses_more(self) -> None:
        activity = Activity(quiet_after_s=60)
        work = Recorder()
        deferred = Deferred(work, activity, workers=2, max_backlog=10, max_delay_s=60)
        activity.begin()
        for i in range(4):
            deferred.submit(i)
        deferred.close()
        assert sorted(work.done) == [0, 1, 2, 3]
        try:
            deferred.submit(9)
        except RuntimeError:
            pass
        else:
            raise AssertionError("a closed Deferred accepted work")
        deferred.close()  # idempotent

    def test_a_failing_item_does_not_stop_the_rest(self) -> None:
        activity = Activity(quiet_after_s=0.0)
        work = Recorder()

        def flaky(item: int) -> None:
            if item == 0:
                raise RuntimeError("boom")
            work(item)

        deferred = Deferred(flaky, activity, workers=1)
        deferred.submit(0)
        deferred.submit(1)
        deferred.close()
        assert work.done == [1]


class Factory:
    def __init__(self) -> None:
        self.created = 0
        self.lock = threading.Lock()

    def create(self, key: str) -> int:
        with self.lock:
            self.created += 1
            return self.created

    def destroy(self, entry: int) -> None:
        pass


class TestPoolHoldBack:
    def test_reserve_is_the_arrivals_during_one_preparation(self) -> None:
        assert pool_sizing.reserve(0.0, 0.3) == 1
        assert pool_sizing.reserve(10.0, 0.3) == 3
        assert pool_sizing.reserve(2.0, 1.8) == 4

    def test_refills_wait_for_a_quiet_host_while_stock_is_above_the_reserve(self) -> None:
        activity = Activity(quiet_after_s=0.05)
        factory = Factory()
        pool: WarmPool[str, int] = WarmPool(
            size=5,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            hold_back_s=activity.quiet_in,
        )
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            activity.begin()
            assert pool.take("k") is not None
            assert pool.take("k") is not None
            time.sleep(0.3)
            assert pool.stats()["ready"] == 3 and factory.created == 5  # held back
            activity.end()
            assert pool.wait_ready(timeout_s=5)  # quiet: refilled
            assert factory.created == 7
        finally:
            activity.end()
            pool.close()

    def test_a_pool_down_to_its_reserve_refills_even_while_busy(self) -> None:
        activity = Activity(quiet_after_s=0.05)
        factory = Factory()
        pool: WarmPool[str, int] = WarmPool(
            size=3,
            create=factory.create,
            destroy=factory.destroy,
            max_idle_s=60,
            hold_back_s=activity.quiet_in,
        )
        pool.start("k")
        try:
            assert pool.wait_ready(timeout_s=5)
            activity.begin()
            for _ in range(3):
                assert pool.take("k") is not None
            assert wait_for(lambda: factory.created > 3)  # empty: refilled while busy
        finally:
            activity.end()
            pool.close()
