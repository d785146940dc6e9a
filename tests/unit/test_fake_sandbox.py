"""``FakeSandbox`` records what it was asked and returns what it was told."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from core.errors import SandboxUnavailable
from runner.base import InputFile, Language, RunRequest, RunResult, Sandbox, SkippedFile
from runner.fake import FakeSandbox


def streamed(name: str, data: bytes) -> tuple[InputFile, list[str]]:
    events: list[str] = []

    def chunks() -> Iterator[bytes]:
        events.append("opened")
        try:
            yield data[:2]
            yield data[2:]
        finally:
            events.append("closed")

    return InputFile(name, len(data), hashlib.sha256(data).hexdigest(), chunks), events


def test_it_is_a_sandbox() -> None:
    sandbox: Sandbox = FakeSandbox()
    assert sandbox.run(RunRequest(language=Language.PYTHON, code="")).exit_code == 0


def test_records_requests_and_the_bytes_of_every_input() -> None:
    fake = FakeSandbox(RunResult(stdout="4\n", stderr="", exit_code=0))
    item, events = streamed("d/in.txt", b"hello")
    request = RunRequest(language=Language.PYTHON, code="print(2+2)", files=(item,))
    result = fake.run(request)
    assert result.stdout == "4\n"
    assert fake.ran == [request] and fake.ran_code == ["print(2+2)"]
    assert fake.written_files == {"d/in.txt": b"hello"}
    assert events == ["opened", "closed"]


def test_produces_outputs_deletions_and_skips_each_run_afresh() -> None:
    fake = FakeSandbox(
        outputs={"out/plot.png": b"\x89PNG"},
        deleted=["old.csv"],
        skipped=[SkippedFile("big.bin", "too large")],
    )
    for _ in range(2):
        result = fake.run(RunRequest(language=Language.BASH, code="true"))
        [out] = result.outputs
        assert (out.name, out.size, out.data.read()) == ("out/plot.png", 4, b"\x89PNG")
        assert out.sha256 == hashlib.sha256(b"\x89PNG").hexdigest()
        assert result.deleted == ["old.csv"]
        assert result.skipped == [SkippedFile("big.bin", "too large")]
        result.close()


def test_result_can_depend_on_the_request() -> None:
    fake = FakeSandbox(lambda r: RunResult(stdout=r.code.upper(), stderr="", exit_code=1))
    assert fake.run(RunRequest(language=Language.PYTHON, code="abc")).stdout == "ABC"


def test_scripted_errors_ping_reap_and_close() -> None:
    item, events = streamed("a", b"data")
    fake = FakeSandbox(error=SandboxUnavailable("down"), ping_error=SandboxUnavailable("down"))
    with pytest.raises(SandboxUnavailable):
        fake.run(RunRequest(language=Language.PYTHON, code="", files=(item,)))
    assert fake.written_files == {"a": b"data"} and events == ["opened", "closed"]
    with pytest.raises(SandboxUnavailable):
        fake.ping()
    fake.reap_result = 3
    assert fake.reap() == 3 and fake.reaped == 1
    fake.close()
    assert fake.closed
