"""The in-sandbox relay of programmatic tool calling, outside Docker: the tools'
bash functions, the stopped clock while tools run, the wait cap, rounds and
cancels. Host events go to fd 1 (captured here)."""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

import pytest
from rce_agent.ptc import Relay, bash_functions


def _job(**ptc: Any) -> dict[str, Any]:
    base = {
        "tools": [{"name": "get-weather", "py": "get_weather", "sh": "get_weather"}],
        "nonce": "n0",
        "principal": "p1",
        "wait_cap_s": 5.0,
        "request_id": "r0",
    }
    return {"ptc": {**base, **ptc}}


def _events(out: str) -> list[dict[str, Any]]:
    data, events = out.encode("latin-1"), []
    while data:
        kind, size = struct.unpack(">cI", data[:5])
        assert kind == b"T"
        events.append(json.loads(data[5 : 5 + size]))
        data = data[5 + size :]
    return events


@pytest.fixture
def relay(tmp_path: Any) -> Relay:
    return Relay(_job(), str(tmp_path / "ptc"))


class TestProgramShape:
    def test_python_runs_under_the_ptc_runtime_with_the_tools(self, relay: Relay) -> None:
        env: dict[str, str] = {}
        argv = relay.program("py", "/var/rce/job/main.py", ["python3"], ["a"], env)
        assert argv[0] == "python3" and argv[2:] == ["run", "/var/rce/job/main.py", "a"]
        assert argv[1].endswith("rce_agent/ptc.py")
        assert json.loads(env["RCE_PTC_TOOLS"]) == [["get-weather", "get_weather"]]
        assert env["RCE_PTC_SOCKET"] == relay.socket_path

    def test_bash_gets_one_function_per_tool(self, relay: Relay) -> None:
        env: dict[str, str] = {}
        argv = relay.program("bash", None, ["bash", "main.sh"], [], env)
        assert argv == ["bash", "main.sh"] and env["BASH_ENV"] == relay.tools_file
        with open(relay.tools_file, encoding="utf-8") as fh:
            assert "get_weather() {" in fh.read()

    def test_a_quote_in_a_tool_name_stays_quoted(self) -> None:
        text = bash_functions([("it's", "its", "its")])
        assert "call 'it'\\''s'" in text


class TestClock:
    def test_the_deadline_moves_while_the_host_runs_tools(self, relay: Relay) -> None:
        assert relay.deadline(100.0, 10.0) == 100.0
        relay.waiting_since = 10.0
        assert relay.deadline(100.0, 12.0) == pytest.approx(102.0)
        relay.waiting_since = None
        assert relay.deadline(102.0, 13.0) == 102.0  # running again: the clock runs

    def test_the_wait_cap_ends_the_run(self, relay: Relay) -> None:
        relay.deadline(100.0, 10.0)
        relay.waiting_since = 10.0
        assert relay.deadline(100.0, 14.0) == pytest.approx(104.0)
        assert relay.wake_in(14.0) == pytest.approx(1.0, abs=0.01)  # wakes for the cap
        assert relay.deadline(100.0, 15.5) == 15.5 and relay.expired
        assert relay.notices() == ["rce: no tool results came within 5 s (RCE_PTC_MAX_WAIT_S)"]


class TestRounds:
    def _paused(self, relay: Relay) -> socket.socket:
        a, b = socket.socketpair()
        conn = type("C", (), {})()
        from rce_agent.ptc import _Conn

        conn = _Conn(b)
        relay._on_message(conn, b'{"op": "call", "id": 7, "name": "get-weather", "input": {}}')
        relay._on_message(conn, b'{"op": "flush"}')
        relay._maybe_flush()
        return a

    def test_calls_go_out_together_and_results_come_back(
        self, relay: Relay, capfd: pytest.CaptureFixture[str]
    ) -> None:
        program = self._paused(relay)
        results = {"round": 1, "nonce": "n1", "request_id": "r1", "results": []}
        results["results"] = [{"call_id": "call_1_1", "result": "sunny", "is_error": False}]
        relay._on_results(results)
        assert json.loads(program.recv(1000)) == {
            "id": 7,
            "result": "sunny",
            "is_error": False,
            "error_message": None,
        }
        events = _events(capfd.readouterr().out)
        assert events[0]["event"] == "tool_calls" and events[0]["round"] == 1
        assert events[0]["calls"] == [{"id": "call_1_1", "name": "get-weather", "input": {}}]
        assert events[1] == {"nonce": "n1", "event": "accepted"}

    def test_a_replayed_round_or_request_id_is_refused(
        self, relay: Relay, capfd: pytest.CaptureFixture[str]
    ) -> None:
        self._paused(relay)
        relay._on_results({"round": 1, "nonce": "n1", "request_id": "r0", "results": []})
        relay._on_results({"round": 0, "nonce": "n2", "request_id": "r2", "results": []})
        events = _events(capfd.readouterr().out)[1:]
        assert [e.get("reason") for e in events] == ["duplicate_request_id", "stale_round"]
        assert relay.waiting_since is not None  # still paused

    def test_cancel_checks_the_request_and_its_principal(
        self, relay: Relay, capfd: pytest.CaptureFixture[str]
    ) -> None:
        relay._on_cancel({"request_id": "other", "principal": "p1", "nonce": "a"})
        relay._on_cancel({"request_id": "r0", "principal": "p2", "nonce": "b"})
        relay._on_cancel({"request_id": "r0", "principal": "p1", "nonce": "c"})
        states = [e["state"] for e in _events(capfd.readouterr().out)]
        assert states == ["unknown", "foreign", "cancelled"] and relay.cancelled
        assert relay.deadline(100.0, 1.0) == 1.0  # ends the run now


def test_module_is_stdlib_only() -> None:
    """The module runs in the image, as a script too: standard library only."""
    import ast

    import rce_agent.ptc as ptc

    with open(ptc.__file__, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    roots = {
        (n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in (n.names if isinstance(n, ast.Import) else [n])
    }
    import sys

    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots
    assert os.path.basename(ptc.__file__) == "ptc.py"
