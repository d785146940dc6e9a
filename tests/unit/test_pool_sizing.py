"""The warm pools' sizing policy: pure functions over rates, budgets and prepare times."""

from __future__ import annotations

import math

import pytest

from runner import pool_sizing
from runner.pool_sizing import Demand, Ewma, Plan, RateMeter, excess, plan, wanted

LIGHT_MB, DATA_MB = 15.0, 110.0


def light(rate: float, prepare_s: float = 0.25, floor: int = 2) -> Demand:
    return Demand(rate=rate, prepare_s=prepare_s, floor=floor, entry_mb=LIGHT_MB)


def data(rate: float, prepare_s: float = 1.8, floor: int = 2) -> Demand:
    return Demand(rate=rate, prepare_s=prepare_s, floor=floor, entry_mb=DATA_MB)


class TestWanted:
    def test_no_traffic_keeps_the_floor(self) -> None:
        assert wanted(light(0.0)) == 2
        assert wanted(light(0.0, floor=0)) == 0

    def test_littles_law_with_headroom(self) -> None:
        # 20 arrivals/s, 0.25 s to prepare: 5 in preparation, twice that kept ready.
        assert wanted(light(20.0)) == math.ceil(pool_sizing.HEADROOM * 5)
        assert wanted(data(2.0)) == math.ceil(pool_sizing.HEADROOM * 3.6)

    def test_never_below_the_floor(self) -> None:
        assert wanted(light(1.0, floor=6)) == 6

    def test_slower_preparation_needs_more(self) -> None:
        assert wanted(light(10.0, prepare_s=0.5)) > wanted(light(10.0, prepare_s=0.25))


class TestPlan:
    def test_within_budget_everyone_gets_what_it_wants(self) -> None:
        got = plan({"light": light(20.0), "data": data(1.0)}, budget_mb=1024, max_parallel=4)
        assert got["light"].target == wanted(light(20.0))
        assert got["data"].target == wanted(data(1.0))

    def test_the_budget_caps_growth_above_the_floors(self) -> None:
        demands = {"light": light(100.0), "data": data(10.0)}
        got = plan(demands, budget_mb=500, max_parallel=4)
        used = sum(got[n].target * d.entry_mb for n, d in demands.items())
        assert used <= 500
        assert got["light"].target > 2 and got["data"].target >= 2

    def test_floors_are_kept_even_beyond_the_budget(self) -> None:
        got = plan(
            {"light": light(50.0, floor=3), "data": data(5.0, floor=4)}, budget_mb=0, max_parallel=4
        )
        assert got == {"light": Plan(3, 4), "data": Plan(4, 4)}

    def test_shortage_is_shared_in_proportion(self) -> None:
        # Both want far more than fits: each gets about the same share of its wish.
        demands = {"light": light(100.0, floor=0), "data": data(10.0, floor=0)}
        got = plan(demands, budget_mb=1000, max_parallel=4)
        share_light = got["light"].target / wanted(demands["light"])
        share_data = got["data"].target / wanted(demands["data"])
        assert abs(share_light - share_data) < 0.1
        assert got["light"].target * LIGHT_MB + got["data"].target * DATA_MB <= 1000

    def test_parallel_fills_follow_the_number_in_service(self) -> None:
        assert plan({"l": light(0.0)}, budget_mb=100, max_parallel=4)["l"].parallel == 1
        assert plan({"l": light(8.0)}, budget_mb=100, max_parallel=4)["l"].parallel == 2
        assert plan({"l": light(80.0)}, budget_mb=100, max_parallel=4)["l"].parallel == 4

    def test_an_empty_plan(self) -> None:
        assert plan({}, budget_mb=100, max_parallel=4) == {}


class TestExcess:
    def test_nothing_above_target(self) -> None:
        assert excess([500.0, 500.0], 2) == 0

    def test_only_old_entries_above_target_go(self) -> None:
        old = pool_sizing.SHRINK_AFTER_S + 1
        assert excess([old, old, 1.0, 1.0], 2) == 2
        assert excess([old, 1.0, 1.0, 1.0], 2) == 1
        assert excess([1.0, 1.0, 1.0], 1) == 0


class TestWaitRule:
    @pytest.mark.parametrize(
        ("remaining", "alternative", "wait"),
        [(0.05, 0.2, True), (0.3, 0.2, False), (0.2, 0.2, False), (0.0, 0.0, False)],
    )
    def test_wait_only_when_faster(self, remaining: float, alternative: float, wait: bool) -> None:
        assert pool_sizing.wait_worthwhile(remaining, alternative) is wait


class TestRateMeter:
    def test_steady_arrivals_converge_to_their_rate(self) -> None:
        meter = RateMeter()
        for i in range(400):
            meter.record(i * 0.1)  # 10 per second for 40 s
        assert 9.0 < meter.rate(40.0) < 11.0

    def test_a_burst_is_seen_within_a_second_and_fades(self) -> None:
        meter = RateMeter()
        for i in range(30):
            meter.record(100.0 + i / 30)  # 30 per second for 1 s
        assert meter.rate(101.0) > 10.0
        assert meter.rate(400.0) < 0.1

    def test_no_arrivals_no_rate(self) -> None:
        assert RateMeter().rate(5.0) == 0.0

    def test_time_going_backwards_is_ignored(self) -> None:
        meter = RateMeter()
        meter.record(10.0)
        meter.record(9.0)
        assert meter.rate(10.0) > 0


class TestEwma:
    def test_first_sample_replaces_the_prior_then_it_smooths(self) -> None:
        avg = Ewma(1.0, alpha=0.5)
        avg.add(3.0)
        assert avg.value == 3.0
        avg.add(1.0)
        assert avg.value == 2.0 and avg.samples == 2


class TestShortfall:
    def test_a_recent_shortfall_is_held_in_stock(self) -> None:
        calm = light(1.0, floor=2)
        short = Demand(rate=1.0, prepare_s=0.25, floor=2, entry_mb=LIGHT_MB, shortfall=40.0)
        assert wanted(calm) == 2
        assert wanted(short) == math.ceil(0.5 + pool_sizing.BURST_HEADROOM * 40)
        # 300 MB, 30 of them the floor's: 18 more light sandboxes.
        assert plan({"l": short}, budget_mb=300, max_parallel=4)["l"].target == 2 + 18

    def test_the_meter_counts_a_window_and_remembers_its_peak(self) -> None:
        meter = pool_sizing.ShortfallMeter()
        for i in range(30):
            meter.record(100.0 + i * 0.1)  # 30 within 3 s
        assert meter.value(103.0) == pytest.approx(30, rel=0.01)
        # Arrivals spread wider than the window do not add up.
        for i in range(5):
            meter.record(200.0 + i * pool_sizing.SHORTFALL_WINDOW_S)
        assert meter.value(250.0) < 30
        assert meter.value(250.0) > 20  # still remembered
        assert meter.value(100.0 + 10 * pool_sizing.SHORTFALL_MEMORY_S) < 1


class TestBurstShortfall:
    def test_a_miss_counts_the_whole_burst_so_far(self) -> None:
        meter = pool_sizing.ShortfallMeter()
        for i in range(40):  # 40 requests in 4 s, served from stock
            meter.record(100.0 + i * 0.1, missed=False)
        assert meter.value(104.0) == 0.0  # never short: nothing to hold
        meter.record(104.0)  # the 41st found the pool empty
        assert meter.value(104.0) == pytest.approx(41, rel=0.01)

    def test_requests_after_a_miss_count_with_the_burst(self) -> None:
        meter = pool_sizing.ShortfallMeter()
        meter.record(100.0)  # the first found the pool empty
        for i in range(1, 60):  # the rest of the burst was served from stock
            meter.record(100.0 + i * 0.05, missed=False)
        assert meter.value(103.0) == pytest.approx(60, rel=0.01)
        # Served from stock long after the miss, the requests no longer count.
        for i in range(100):
            meter.record(200.0 + i * 0.01, missed=False)
        assert meter.value(202.0) == pytest.approx(60, rel=0.2)

    def test_a_burst_slowed_by_its_waits_counts_whole(self) -> None:
        # 60 requests over 18 s, every third finding the pool empty: a burst that
        # waited for its sandboxes. Served from stock, the same burst takes 2 s.
        meter = pool_sizing.ShortfallMeter()
        for i in range(60):
            meter.record(100.0 + i * 0.3, missed=i % 3 == 0)
        assert pool_sizing.SHORTFALL_WINDOW_S < 18.0
        assert meter.value(118.0) == pytest.approx(60, rel=0.01)

    def test_a_streak_ends_when_misses_stop_recurring(self) -> None:
        meter = pool_sizing.ShortfallMeter()
        meter.record(100.0)
        # One request a second for 30 s, all served from stock: the streak that the
        # first miss started counts the window after it, not the 30 s.
        for i in range(1, 31):
            meter.record(100.0 + i, missed=False)
        window = pool_sizing.SHORTFALL_WINDOW_S
        assert meter.value(130.0) == pytest.approx(window + 1, abs=1.0)
        # A new miss starts a new streak: the requests of the window before it.
        meter.record(131.0)
        assert meter.value(131.0) == pytest.approx(window + 1, abs=1.0)

    def test_a_streak_counts_its_last_minute_at_most(self) -> None:
        meter = pool_sizing.ShortfallMeter()
        for i in range(1000):  # 10 a second for 100 s, every request short
            meter.record(100.0 + i * 0.1)
        assert meter.value(200.0) == pytest.approx(10 * pool_sizing.STREAK_MAX_S, rel=0.02)

    def test_requests_outside_the_window_do_not_count(self) -> None:
        meter = pool_sizing.ShortfallMeter()
        for i in range(20):
            meter.record(100.0 + i * 0.1, missed=False)
        meter.record(100.0 + pool_sizing.SHORTFALL_WINDOW_S + 5.0)
        assert meter.value(100.0 + pool_sizing.SHORTFALL_WINDOW_S + 5.0) == pytest.approx(1.0)
