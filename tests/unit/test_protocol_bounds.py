"""The host's reply parser is bounded: malformed, huge or deep replies are clean errors."""

from __future__ import annotations

import io
import json

import pytest

from runner.base import Language, Limits, RunRequest
from runner.protocol import (
    FRAME,
    MAX_JSON_DEPTH,
    ProtocolError,
    ReplyReader,
    build_result,
    parse_json_frame,
    reply_budget,
)

LIMITS = Limits(max_output_bytes=1000, max_files=2, max_file_bytes=4096)
REQUEST = RunRequest(language=Language.PYTHON, code="", limits=LIMITS)


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return FRAME.pack(kind, len(payload)) + payload


def result(**fields: object) -> bytes:
    return frame(b"R", json.dumps({"exit_code": 0, **fields}).encode())


def read(raw: bytes) -> object:
    return ReplyReader(io.BytesIO(raw), REQUEST).read()


class _Endless:
    """A source that never ends: a frame repeated forever."""

    def __init__(self, unit: bytes) -> None:
        self.unit = unit
        self.buffer = b""

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self.unit * 1024
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def test_a_well_formed_reply_parses() -> None:
    reply = ReplyReader(io.BytesIO(frame(b"O", b"hi") + result()), REQUEST).read()
    assert bytes(reply.stdout.data) == b"hi" and reply.result == {"exit_code": 0}


@pytest.mark.parametrize(
    "raw",
    [
        frame(b"R", b"[" * 100_000 + b"]" * 100_000),  # deeper than the C parser allows
        frame(b"R", b'{"a":' * 50 + b"1" + b"}" * 50),  # parses, but too deep
        frame(b"R", b"\xff\xfe"),  # not UTF-8
        frame(b"R", b"[1, 2]"),  # not an object
        frame(b"F", b'{"name": "a", "size": 99999}'),
        frame(b"O", b""),  # empty data frames are refused
        frame(b"F", b'{"name": "a", "size": 2}') + frame(b"D", b"") + frame(b"D", b"xx"),
        frame(b"Z", b"x"),
        frame(b"O", b"x")[:3],
        FRAME.pack(b"R", 1 << 31),
    ],
)
def test_malformed_replies_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        read(raw)


def test_an_output_name_the_policy_refuses_is_skipped_not_fatal() -> None:
    """A text name that breaks the name policy loses only that file: its data is read
    and dropped, the skip names the reason, and the rest of the reply stands."""
    raw = (
        frame(b"F", b'{"name": "../x", "size": 1}')
        + frame(b"D", b"x")
        + frame(b"O", b"hi")
        + result()
    )
    reply = ReplyReader(io.BytesIO(raw), REQUEST).read()
    assert reply.outputs == [] and bytes(reply.stdout.data) == b"hi"
    [skip] = reply.skipped
    assert skip.name == "../x" and ".." in skip.reason
    assert reply.result == {"exit_code": 0}


def test_an_endless_stream_of_tiny_frames_stops_at_the_frame_budget() -> None:
    _, frames = reply_budget(LIMITS)
    reader = ReplyReader(_Endless(frame(b"P")), REQUEST)
    with pytest.raises(ProtocolError, match="frame budget"):
        reader.read()
    assert frames < 10_000


def test_an_endless_stream_of_bytes_stops_at_the_byte_budget() -> None:
    size, _ = reply_budget(LIMITS)
    big = frame(b"F", b'{"name": "a", "size": 4096}') + frame(b"D", b"x" * 4096)
    reader = ReplyReader(_Endless(big), REQUEST)
    with pytest.raises(ProtocolError):
        reader.read()
    assert size < 1 << 30


def test_depth_limit_accepts_what_the_agent_sends() -> None:
    value = {"skipped": [["a", "b"]], "deleted": ["x"], "notices": []}
    assert parse_json_frame(json.dumps(value).encode()) == value
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]
    assert parse_json_frame(json.dumps({"a": deep}).encode())
    with pytest.raises(ProtocolError):
        parse_json_frame(json.dumps({"a": [deep]}).encode())


@pytest.mark.parametrize(
    "fields",
    [
        {"exit_code": "x", "timed_out": "yes", "deleted": 5, "skipped": [[1, 2]]},
        {"exit_code": 10**30, "notices": [{"a": 1}], "error": 3, "stdout_bytes": -1},
        {"skipped": [["\x00", "r"]] * 5000, "skipped_more": "x"},
    ],
)
def test_odd_result_fields_still_build_a_result(fields: dict[str, object]) -> None:
    reply = ReplyReader(io.BytesIO(result(**fields)), REQUEST).read()
    built = build_result(reply, REQUEST, duration_s=0.0)
    assert isinstance(built.exit_code, int) and isinstance(built.stderr, str)
