"""The programmatic tool calling use cases on fakes (``FakeProgramSandbox``)."""

from __future__ import annotations

import pytest

from core.continuation import TokenSigner
from core.errors import AccessDenied, Conflict, InvalidRequest, PayloadTooLarge
from core.identity import Caller
from runner.base import Language, RunResult
from runner.fake import _spool
from runner.fake_ptc import FakeProgramSandbox
from runner.ptc import (
    ProgramPolicy,
    ProgramPorts,
    ProgramRequest,
    ToolResult,
    bash_name,
    cancel_program,
    continue_program,
    python_name,
    start_program,
    tool_specs,
    workspace_session_id,
)
from storage.memory import InMemorySessionStore

ME = Caller("t", "me")
TOOLS = ({"name": "get-weather"}, {"name": "explode"})


def _ports(rounds: list[list[tuple[str, object]]], **policy: object) -> ProgramPorts:
    result = RunResult(stdout="done\n", stderr="", exit_code=0, outputs=[_spool("out.txt", b"x")])
    return ProgramPorts(
        store=InMemorySessionStore(),
        sandbox=FakeProgramSandbox(rounds, result),
        signer=TokenSigner(b"k" * 32),
        policy=ProgramPolicy(**policy),  # type: ignore[arg-type]
    )


def _start(ports: ProgramPorts, tools: tuple[dict[str, str], ...] = TOOLS):
    request = ProgramRequest(Language.PYTHON, "print(1)", tools, request_id="req-1")
    return start_program(request, ME, ports)


class TestNames:
    @pytest.mark.parametrize(
        ("name", "py", "sh"),
        [
            ("get-weather", "get_weather", "get_weather"),
            ("web search", "web_search", "web_search"),
            ("a.b", "ab", "a_b"),
            ("3d", "_3d", "_3d"),
            ("class", "class_tool", "class"),
            ("done", "done", "done_tool"),
        ],
    )
    def test_maps_names_as_the_client_does(self, name: str, py: str, sh: str) -> None:
        assert (python_name(name), bash_name(name)) == (py, sh)

    def test_refuses_more_than_the_tool_cap(self) -> None:
        with pytest.raises(InvalidRequest, match="at most 100 tools"):
            tool_specs([{"name": f"t{i}"} for i in range(101)], 100)

    def test_refuses_clashing_names(self) -> None:
        with pytest.raises(InvalidRequest, match="map to one name"):
            tool_specs([{"name": "a-b"}, {"name": "a b"}], 100)


class TestProgramRuns:
    def test_first_answer_lists_every_call_of_the_round(self) -> None:
        """Calls made together come back together, with a token."""
        ports = _ports([[("get-weather", {"city": "a"}), ("get-weather", {"city": "b"})]])
        answer = _start(ports)
        assert answer.status == "tool_call_required"
        assert [c.input for c in answer.tool_calls] == [{"city": "a"}, {"city": "b"}]
        assert answer.continuation_token

    def test_continuation_delivers_results_and_completes_with_synced_files(self) -> None:
        """Results reach the sandbox; the end syncs outputs to the session."""
        ports = _ports([[("get-weather", {})]])
        first = _start(ports)
        results = [ToolResult(first.tool_calls[0].id, {"t": 1})]
        done = continue_program(first.continuation_token or "", results, ME, "req-2", ports)
        assert done.status == "completed"
        assert done.outcome is not None and [f.name for f in done.outcome.files] == ["out.txt"]
        sandbox = ports.sandbox
        assert isinstance(sandbox, FakeProgramSandbox)
        assert sandbox.frames[0].results == tuple(results)
        assert ports.store.list(done.outcome.session_id)[0].name == "out.txt"

    def test_a_replayed_token_is_refused(self) -> None:
        ports = _ports([[("get-weather", {})], [("get-weather", {})]])
        first = _start(ports)
        token = first.continuation_token or ""
        continue_program(token, [], ME, "req-2", ports)
        with pytest.raises(Conflict):
            continue_program(token, [], ME, "req-3", ports)

    def test_another_callers_continuation_is_refused(self) -> None:
        ports = _ports([[("get-weather", {})]])
        first = _start(ports)
        with pytest.raises(AccessDenied):
            continue_program(first.continuation_token or "", [], Caller("t", "x"), "", ports)

    def test_an_unregistered_tool_ends_the_run_with_the_clients_error(self) -> None:
        ports = _ports([[("rm-rf", {})]])
        answer = _start(ports)
        assert (answer.status, answer.error) == (
            "error",
            "Sandbox requested an unregistered tool: rm-rf",
        )
        sandbox = ports.sandbox
        assert isinstance(sandbox, FakeProgramSandbox) and sandbox.discarded

    def test_the_round_trip_cap_ends_the_run(self) -> None:
        ports = _ports([[("explode", {})]] * 30, max_round_trips=20)
        answer = _start(ports)
        for _ in range(19):
            answer = continue_program(answer.continuation_token or "", [], ME, "", ports)
        assert answer.status == "tool_call_required"
        answer = continue_program(answer.continuation_token or "", [], ME, "", ports)
        assert answer.status == "error" and "Exceeded maximum round trips (20)" in (
            answer.error or ""
        )

    def test_an_oversized_result_becomes_an_error_for_the_program(self) -> None:
        ports = _ports([[("explode", {})]], max_result_bytes=1024)
        first = _start(ports)
        big = [ToolResult(first.tool_calls[0].id, "x" * 5000)]
        continue_program(first.continuation_token or "", big, ME, "", ports)
        sandbox = ports.sandbox
        assert isinstance(sandbox, FakeProgramSandbox)
        delivered = sandbox.frames[0].results[0]
        assert delivered.is_error and "RCE_PTC_MAX_RESULT_BYTES" in (delivered.error_message or "")

    def test_results_over_the_total_cap_are_a_413(self) -> None:
        ports = _ports([[("explode", {})]], max_result_bytes=4096, max_results_bytes=4096)
        first = _start(ports)
        many = [ToolResult(str(i), "x" * 3000) for i in range(3)]
        with pytest.raises(PayloadTooLarge, match="RCE_PTC_MAX_RESULTS_BYTES"):
            continue_program(first.continuation_token or "", many, ME, "", ports)

    def test_a_timed_out_program_answers_the_clients_time_limit_error(self) -> None:
        ports = _ports([])
        sandbox = ports.sandbox
        assert isinstance(sandbox, FakeProgramSandbox)
        sandbox.result = RunResult(stdout="", stderr="killed\n", exit_code=137, timed_out=True)
        answer = _start(ports)
        assert (answer.status, answer.error) == ("error", "Time limit exceeded")


class TestCancel:
    def test_cancels_the_callers_run(self) -> None:
        ports = _ports([[("explode", {})]])
        _start(ports)
        assert cancel_program("req-1", ME, ports) == "cancellation_requested"

    def test_another_callers_request_is_a_403(self) -> None:
        ports = _ports([[("explode", {})]])
        _start(ports)
        with pytest.raises(AccessDenied):
            cancel_program("req-1", Caller("t", "other"), ports)

    def test_unknown_is_already_completed_and_a_bad_id_is_a_400(self) -> None:
        ports = _ports([])
        assert cancel_program("nope", ME, ports) == "already_completed"
        with pytest.raises(InvalidRequest):
            cancel_program("bad id!", ME, ports)


def test_workspace_sessions_are_per_caller() -> None:
    signer = TokenSigner(b"k" * 32)
    instance = "ab" * 32
    mine = workspace_session_id(ME, "project-1", instance, signer)
    assert mine == workspace_session_id(ME, "project-1", instance, signer)
    assert mine != workspace_session_id(Caller("t", "x"), "project-1", instance, signer)
    with pytest.raises(InvalidRequest):
        workspace_session_id(ME, "project-1", "not-hex", signer)
