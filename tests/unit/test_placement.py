"""Placement over several engines: the pure policy, then the adapter with fakes."""

from __future__ import annotations

import threading

import pytest

from core.errors import (
    InvalidRequest,
    Overloaded,
    SandboxLost,
    SandboxStartFailed,
    SandboxUnavailable,
)
from runner.base import Language, RunRequest, RunResult
from runner.fake import FakeSandbox
from runner.fake_ptc import FakeProgramSandbox
from runner.multi import Member, MultiEngineProgramSandbox, MultiEngineSandbox
from runner.placement import Placement, engine_id, join_ref, parse_engines, split_ref
from runner.ptc import FinishedEvent, ProgramJob, ResultsFrame, ToolCallsEvent

REQ = RunRequest(Language.PYTHON, "print(1)")

# ------------------------------------------------------------------ parsing


def test_parse_engines_names_and_digests() -> None:
    specs = parse_engines(" unix:///var/run/a.sock , b=tcp://h2:2376,, ")
    assert [s.url for s in specs] == ["unix:///var/run/a.sock", "tcp://h2:2376"]
    assert specs[0].id == engine_id("unix:///var/run/a.sock")
    assert specs[1].id == "b"
    # The id of an unnamed engine is the same on every replica that lists it.
    assert engine_id("tcp://h2:2376") == engine_id(" tcp://h2:2376 ")
    assert engine_id("tcp://h2:2376") != engine_id("tcp://h3:2376")
    assert parse_engines("") == ()


@pytest.mark.parametrize(
    "text",
    ["h2:2375", "ftp://x", "Bad Name=tcp://h:1", "tcp://h:1,tcp://h:1", "a=tcp://h:1,a=tcp://g:1"],
)
def test_parse_engines_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_engines(text)


def test_refs_name_their_engine() -> None:
    ref = join_ref("e1", "rce-sbx-ptc-abc-123")
    assert split_ref(ref) == ("e1", "rce-sbx-ptc-abc-123")
    with pytest.raises(InvalidRequest):
        split_ref("rce-sbx-ptc-abc-123")


# ------------------------------------------------------------- pure policy


def test_least_in_flight_wins_then_rotates() -> None:
    placement = Placement(["a", "b", "c"])
    first = [placement.acquire() for _ in range(3)]
    assert sorted(first) == ["a", "b", "c"]  # one each before any gets a second
    placement.release("b")
    assert placement.acquire() == "b"


def test_ties_prefer_warm_sandboxes() -> None:
    placement = Placement(["a", "b"])
    placement.set_warm("b", 2)
    assert placement.acquire() == "b"
    placement.release("b")
    placement.set_warm("b", 0)
    placement.set_warm("a", 1)
    assert placement.acquire() == "a"


def test_a_down_engine_leaves_and_rejoins() -> None:
    placement = Placement(["a", "b"])
    assert placement.mark_down("a", "ping failed")
    assert not placement.mark_down("a", "again")
    assert {placement.acquire() for _ in range(4)} == {"b"}
    assert placement.mark_up("a")
    assert placement.acquire() == "a"


def test_no_healthy_engine_is_unavailable() -> None:
    placement = Placement(["a"])
    placement.mark_down("a", "connection refused")
    with pytest.raises(SandboxUnavailable, match="connection refused"):
        placement.acquire()


def test_capacity_per_engine() -> None:
    placement = Placement(["a", "b"], max_in_flight=1)
    assert {placement.acquire(), placement.acquire()} == {"a", "b"}
    with pytest.raises(Overloaded):
        placement.acquire()
    placement.release("a")
    assert placement.acquire() == "a"


def test_placement_is_consistent_under_threads() -> None:
    placement = Placement(["a", "b", "c"])

    def work() -> None:
        for _ in range(200):
            placement.release(placement.acquire())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s.in_flight == 0 for s in placement.snapshot())


# ------------------------------------------------------------ the adapter


class _Probe:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def _multi(count: int = 3) -> tuple[MultiEngineSandbox, list[FakeSandbox], list[_Probe]]:
    fakes = [FakeSandbox(RunResult(stdout=f"on {i}", stderr="", exit_code=0)) for i in range(count)]
    probes = [_Probe() for _ in range(count)]
    members = [Member(f"n{i}", fakes[i], probes[i]) for i in range(count)]
    return MultiEngineSandbox(members, start_probing=False), fakes, probes


def test_runs_spread_over_engines() -> None:
    multi, fakes, _ = _multi()
    outs = {multi.run(REQ).stdout for _ in range(3)}
    assert outs == {"on 0", "on 1", "on 2"}
    assert [len(f.ran) for f in fakes] == [1, 1, 1]


def test_an_engine_failing_its_probe_leaves_and_rejoins() -> None:
    multi, fakes, probes = _multi()
    probes[1].error = SandboxUnavailable("no engine answers")
    multi.probe_all()
    for _ in range(6):
        multi.run(REQ)
    assert len(fakes[1].ran) == 0
    assert multi.stats()["engines_healthy"] == 2
    probes[1].error = None
    multi.probe_all()
    for _ in range(3):
        multi.run(REQ)
    assert len(fakes[1].ran) >= 1
    assert multi.stats()["engines_healthy"] == 3


def test_a_failure_before_the_run_starts_is_placed_again() -> None:
    multi, fakes, _ = _multi(2)
    fakes[0].error = SandboxUnavailable("connection refused")
    fakes[1].error = None
    results = [multi.run(REQ).stdout for _ in range(3)]
    assert results == ["on 1"] * 3
    assert not multi.placement.is_healthy("n0")  # left the rotation on use


def test_a_run_lost_mid_way_is_a_503_and_not_repeated() -> None:
    multi, fakes, _ = _multi(2)
    for fake in fakes:
        fake.error = SandboxLost("the engine stopped answering mid-run")
    with pytest.raises(SandboxLost):
        multi.run(REQ)
    assert sum(len(f.ran) for f in fakes) == 1
    assert sum(multi.placement.is_healthy(e) for e in ("n0", "n1")) == 1


def test_an_engine_refusal_does_not_take_it_out() -> None:
    multi, fakes, _ = _multi(1)
    fakes[0].error = SandboxStartFailed("refused: bad limits")
    with pytest.raises(SandboxStartFailed):
        multi.run(REQ)
    assert multi.placement.is_healthy("n0")


def test_ping_is_ready_while_one_engine_is_healthy() -> None:
    multi, _, probes = _multi(2)
    probes[0].error = SandboxUnavailable("down")
    multi.ping()
    probes[1].error = SandboxUnavailable("down too")
    with pytest.raises(SandboxUnavailable, match="down too"):
        multi.ping()


def test_reap_and_close_reach_every_engine() -> None:
    multi, fakes, probes = _multi()
    probes[2].error = SandboxUnavailable("down")
    multi.probe_all()
    multi.reap()
    assert [f.reaped for f in fakes] == [1, 1, 0]
    multi.close()
    assert all(f.closed for f in fakes)


# ---------------------------------------------------- programmatic runs


def _programs() -> tuple[MultiEngineSandbox, MultiEngineProgramSandbox, list[FakeProgramSandbox]]:
    done = RunResult(stdout="done", stderr="", exit_code=0)
    programs = [FakeProgramSandbox([[("lookup", {"q": 1})]], done) for _ in range(2)]
    members = [Member(f"n{i}", FakeSandbox(), _Probe(), programs[i]) for i in range(len(programs))]
    multi = MultiEngineSandbox(members, start_probing=False)
    return multi, MultiEngineProgramSandbox(multi), programs


JOB = ProgramJob((), "nonce", "principal", 60.0, "req-1")


def test_a_continuation_resumes_on_the_engine_its_token_names() -> None:
    multi, programs, fakes = _programs()
    ref, event = programs.start(REQ, JOB)
    assert isinstance(event, ToolCallsEvent)
    engine, name = split_ref(ref)
    holder = fakes[int(engine[1:])]
    assert holder.container == name
    # Another replica with the same engine list resolves the same engine.
    other = MultiEngineProgramSandbox(multi)
    frame = ResultsFrame(1, "nonce", "req-2", ())
    ref2, finished = other.resume(ref, REQ, frame, 60.0)
    assert isinstance(finished, FinishedEvent)
    assert split_ref(ref2)[0] == engine
    assert holder.frames == [frame]


def test_a_paused_run_on_a_lost_engine_is_a_clear_503() -> None:
    multi, programs, _ = _programs()
    ref, _ = programs.start(REQ, JOB)
    multi.placement.mark_down(split_ref(ref)[0], "connection refused")
    with pytest.raises(SandboxLost, match="out of the rotation"):
        programs.resume(ref, REQ, ResultsFrame(1, "n", "req-2", ()), 60.0)
    with pytest.raises(SandboxLost, match="does not list"):
        programs.resume("nX/rce-sbx-ptc-x-1", REQ, ResultsFrame(1, "n", "r", ()), 60.0)


def test_cancel_asks_every_engine() -> None:
    _, programs, fakes = _programs()
    ref, _ = programs.start(REQ, JOB)
    assert programs.cancel("req-1", "principal") == "cancelled"
    assert all(f.cancels == [("req-1", "principal")] for f in fakes)
    assert programs.cancel("nobody", "principal") == "unknown"
    del ref
