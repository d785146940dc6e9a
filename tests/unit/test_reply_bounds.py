"""The host's reply reader bounds what an exec's outputs may cost: in all, no more than
the workspace holds; in memory, a fixed budget per reply (the rest spooled to disk)."""

from __future__ import annotations

import io
import json

import pytest

from runner.base import Language, Limits, RunRequest
from runner.protocol import (
    DATA,
    FILE,
    FRAME,
    RESULT,
    SPOOL_MEMORY_PER_REPLY,
    ProtocolError,
    ReplyReader,
)


def frame(kind: bytes, payload: bytes) -> bytes:
    return FRAME.pack(kind, len(payload)) + payload


def reply_with(files: dict[str, int]) -> io.BytesIO:
    out = b""
    for name, size in files.items():
        out += frame(FILE, json.dumps({"name": name, "size": size}).encode())
        remaining = size
        while remaining:
            chunk = min(remaining, 1024 * 1024)
            out += frame(DATA, b"x" * chunk)
            remaining -= chunk
    return io.BytesIO(out + frame(RESULT, json.dumps({"exit_code": 0}).encode()))


def request(workspace_bytes: int) -> RunRequest:
    limits = Limits(workspace_bytes=workspace_bytes, max_file_bytes=10 * 1024**2, max_files=50)
    return RunRequest(Language.PYTHON, "x", limits=limits)


def test_outputs_over_the_workspace_are_refused() -> None:
    """A reply whose files add up to more than the workspace is forged: refused."""
    source = reply_with({"a.bin": 600, "b.bin": 600})
    with pytest.raises(ProtocolError, match="workspace"):
        ReplyReader(source, request(1000)).read()


def test_outputs_within_the_workspace_are_read() -> None:
    """Files that fit are read, whole."""
    reply = ReplyReader(reply_with({"a.bin": 400, "b.bin": 400}), request(1000)).read()
    assert [(o.name, o.size, len(o.data.read())) for o in reply.outputs] == [
        ("a.bin", 400, 400),
        ("b.bin", 400, 400),
    ]
    reply.discard_outputs()


def test_memory_budget_per_reply() -> None:
    """Past the per-reply memory budget, every further output goes straight to disk."""
    files = {f"f{i}.bin": 1024 * 1024 for i in range(8)}
    reply = ReplyReader(reply_with(files), request(64 * 1024**2)).read()
    in_memory = sum(o.size for o in reply.outputs if not getattr(o.data, "_rolled", True))
    assert in_memory <= SPOOL_MEMORY_PER_REPLY
    assert any(getattr(o.data, "_rolled", False) for o in reply.outputs)
    reply.discard_outputs()
