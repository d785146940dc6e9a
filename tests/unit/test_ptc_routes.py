"""``/exec/programmatic`` through the app on fakes: the auth gate, exec admission for a
first request and for a continuation, a duplicate request id, cancel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handler.app import create_app
from handler.settings import Settings
from runner.base import RunResult
from runner.fake import FakeSandbox
from runner.fake_ptc import FakeProgramSandbox
from runner.ptc import Event, ProgramJob
from storage.memory import InMemorySessionStore

KEY = "ptc-routes-key-0123456789"
H = {"X-API-Key": KEY, "User-Id": "u1"}
FIRST = {"code": "print(await t())", "tools": [{"name": "t"}]}


class GatedProgramSandbox(FakeProgramSandbox):
    """A scripted program sandbox whose start and resume block until released."""

    def __init__(self) -> None:
        super().__init__([[("t", {})]], RunResult("done\n", "", 0))
        self.release = threading.Event()
        self.inside = threading.Semaphore(0)

    def start(self, request: Any, job: ProgramJob) -> tuple[str, Event]:
        self.inside.release()
        assert self.release.wait(30)
        return super().start(request, job)


@pytest.fixture(name="programs")
def _programs() -> Iterator[GatedProgramSandbox]:
    programs = GatedProgramSandbox()
    yield programs
    programs.release.set()


@pytest.fixture(name="client")
def _client(programs: GatedProgramSandbox) -> Iterator[TestClient]:
    settings = Settings(
        api_keys=KEY,
        log_json=False,
        max_concurrent_execs=1,
        exec_queue_size=0,
        exec_queue_timeout_s=30,
        ptc_token_secret="ptc-routes-secret-0123456789",
    )
    app = create_app(
        settings,
        store=InMemorySessionStore(),
        sandbox=FakeSandbox(),
        program_sandbox=programs,
        maintenance=False,
    )
    with TestClient(app) as client:
        yield client


def test_no_credentials_is_a_401_before_the_body(client: TestClient) -> None:
    for path in ("/exec/programmatic", "/v1/exec/programmatic", "/exec/programmatic/cancel"):
        answer = client.post(path, content=b"{not json")
        assert answer.status_code == 401, (path, answer.text)


def test_first_requests_and_continuations_take_an_exec_slot(
    client: TestClient, programs: GatedProgramSandbox
) -> None:
    """One slot, no queue: while a first request runs, another first request and a
    continuation are both refused with Retry-After; a paused program holds no slot."""
    programs.release.set()
    paused = client.post("/exec/programmatic", json=FIRST, headers=H).json()
    assert paused["status"] == "tool_call_required", paused
    programs.release.clear()
    holder = threading.Thread(
        target=client.post, args=("/exec/programmatic",), kwargs={"json": FIRST, "headers": H}
    )
    holder.start()
    assert programs.inside.acquire(timeout=10) and programs.inside.acquire(timeout=10)
    try:
        busy = client.post("/exec/programmatic", json=FIRST, headers=H)
        assert busy.status_code == 429 and busy.headers.get("Retry-After"), busy.text
        token = paused["continuation_token"]
        results = [{"call_id": paused["tool_calls"][0]["id"], "result": 1, "is_error": False}]
        body = {"continuation_token": token, "tool_results": results}
        cont = client.post("/exec/programmatic", json=body, headers=H)
        assert cont.status_code == 429, cont.text
    finally:
        programs.release.set()
        holder.join(10)


def test_a_request_id_in_use_is_a_409(client: TestClient, programs: GatedProgramSandbox) -> None:
    programs.release.set()
    headers = {**H, "X-LibreChat-Code-Request-ID": "req-1"}
    first = client.post("/exec/programmatic", json=FIRST, headers=headers)
    assert first.json()["status"] == "tool_call_required", first.text
    again = client.post("/exec/programmatic", json=FIRST, headers=headers)
    assert again.status_code == 409, again.text
    cancel = client.post("/exec/programmatic/cancel", json={"request_id": "req-1"}, headers=H)
    assert (cancel.status_code, cancel.json()) == (202, {"status": "cancellation_requested"})
