"""Host side of the sandbox agent's wire protocol (``runner/agent/rce_agent/wire.py``).

The job goes to the agent as a JSON header followed by a tar stream of the input
files in length-prefixed chunks ended by an empty one; the reply comes back as typed
frames (1-byte kind, u32 length, payload).
Nothing in a reply is trusted: every frame length, name, size and count is checked
here against the request's ``Limits``, outputs are spooled to temporary files with
their sha256 recomputed, and memory stays bounded whatever the container sends.

This module is pure Python (no Docker): the Docker adapter supplies a ``ByteSource``
(the demultiplexed stdout of the attach stream) and a ``ByteSink`` (its stdin).
"""

from __future__ import annotations

import hashlib
import json
import struct
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from core.errors import InvalidRequest, StorageError
from core.names import MAX_DISPLAY_CHARS, check_name, name_problem
from runner.base import InputFile, Limits, OutputFile, RunRequest, RunResult, SkippedFile

JOB_MAGIC = b"RCEJ"
FRAME = struct.Struct(">cI")
READY, STDOUT, STDERR, FILE, DATA, RESULT = b"P", b"O", b"E", b"F", b"D", b"R"
#: Largest data frame (stdout, stderr or file data) the host accepts.
MAX_DATA_FRAME = 1024 * 1024
#: Largest JSON frame: a file header, or the result with its name lists.
MAX_FILE_HEADER = 64 * 1024
MAX_RESULT_FRAME = 8 * 1024 * 1024
#: Longest skipped-file name the agent may report (longer ones are cut).
MAX_NAME_BYTES = 4096
#: Deepest JSON nesting accepted in a frame (the agent's are at most 3 deep).
MAX_JSON_DEPTH = 8
#: Frames and bytes beyond what an honest reply can hold, on top of its payload budget.
REPLY_SLACK_FRAMES = 1000
REPLY_SLACK_BYTES = 1024 * 1024
MAX_SKIPPED = 1000
MAX_NOTICES = 20
SPOOL_MAX_MEMORY = 1024 * 1024
#: Memory all of one reply's output files may use together before they go to disk.
SPOOL_MEMORY_PER_REPLY = 4 * 1024 * 1024
_COPY_CHUNK = 256 * 1024


class ProtocolError(Exception):
    """The container's reply broke the protocol; the reply is discarded."""


class ByteSource(Protocol):
    """Where a reply is read from: up to ``size`` bytes, ``b""`` at EOF."""

    def read(self, size: int) -> bytes: ...


class ByteSink(Protocol):
    """Where a job is written to: all of ``data`` or an ``OSError``."""

    def write(self, data: bytes) -> int: ...


# ----------------------------------------------------------------- messages


def timeout_notice(limits: Limits) -> str:
    """The stderr line of a run killed at its time limit."""
    return (
        f"rce: killed after exceeding the run time limit of {limits.run_timeout_s:g} s "
        "(RCE_RUN_TIMEOUT_S)"
    )


def oom_notice(limits: Limits) -> str:
    """The stderr line of a run killed by the memory limit."""
    mib = limits.memory_limit_bytes / (1024 * 1024)
    return f"rce: killed: out of memory (limit {mib:g} MiB, RCE_MEM_LIMIT)"


def truncation_notice(limits: Limits) -> str:
    """The marker line appended to a stdout or stderr cut at its cap."""
    return f"[rce: output truncated at {limits.max_output_bytes} bytes (RCE_MAX_OUTPUT_BYTES)]"


# --------------------------------------------------------------------- names


def output_name_problem(name: object) -> str | None:
    """Why the agent's output name ``name`` breaks the one name policy
    (``core.names``), or None. Text that fails is a skip; anything else is forged."""
    return name_problem(name)


# ----------------------------------------------------------------------- job


def encode_job_header(request: RunRequest, *, linger_s: float = 0.0) -> bytes:
    """The job header the agent reads first: magic, length, JSON. ``linger_s`` > 0
    asks the agent to wait that long for its removal after the reply instead of
    exiting (``rce_agent.supervise.linger``)."""
    names = [check_name(f.name) for f in request.files]
    if len(set(names)) != len(names):
        raise InvalidRequest("the same file name is given twice")
    limits = request.limits
    header: dict[str, object] = {
        "lang": request.language.value,
        "code": request.code,
        "args": list(request.args),
        "files": [{"name": f.name, "sha256": f.sha256} for f in request.files],
        "limits": {
            "run_timeout_s": limits.run_timeout_s,
            "max_output_bytes": limits.max_output_bytes,
            "max_file_bytes": limits.max_file_bytes,
            "max_files": limits.max_files,
        },
    }
    if linger_s > 0:
        header["linger_s"] = linger_s
    body = json.dumps(header, ensure_ascii=True).encode("ascii")
    return JOB_MAGIC + struct.pack(">I", len(body)) + body


class _ExactReader:
    """A file object over an ``InputFile`` stream that must yield exactly ``size`` bytes."""

    def __init__(self, item: InputFile) -> None:
        self._item = item
        opened = item.open()
        # The store may have replaced the file since the request was planned: an
        # opener that knows the size of the version it opened says so (InputFile).
        size = getattr(opened, "size", None)
        self.size = size if isinstance(size, int) else item.size
        self._chunks: Iterator[bytes] = iter(opened)
        self._buffer = b""
        self.delivered = 0

    def read(self, size: int = -1) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.delivered += len(data)
        if len(data) < size and self.delivered < self.size:
            raise StorageError(
                f"input file {self._item.name!r} ended after {self.delivered} of {self.size} bytes"
            )
        return data

    def check_exhausted(self) -> None:
        """Raise ``StorageError`` if the stream holds more than ``size`` bytes."""
        if self._buffer or next(self._chunks, b""):
            raise StorageError(f"input file {self._item.name!r} is longer than {self.size} bytes")

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def write_input_tar(files: Iterable[InputFile], sink: ByteSink) -> None:
    """Stream the input files as a tar into ``sink``, one chunk at a time."""
    now = int(time.time())
    # tarfile's stream mode only ever calls write() on its file object.
    with tarfile.open(fileobj=cast("IO[bytes]", sink), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = _COPY_CHUNK  # type: ignore[attr-defined]  # a TarFile option the stubs omit
        for item in files:
            reader = _ExactReader(item)
            info = tarfile.TarInfo(item.name)
            info.size = reader.size
            info.mode = 0o644
            info.mtime = now
            info.uid = info.gid = 1000
            try:
                tar.addfile(info, cast("IO[bytes]", reader))  # read() is all it uses
                reader.check_exhausted()
            finally:
                reader.close()


class ChunkedSink:
    """Frames what is written to it as u32-length chunks (the job's input tar)."""

    def __init__(self, sink: ByteSink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        if data:
            self._sink.write(struct.pack(">I", len(data)) + bytes(data))
        return len(data)


def write_job_files(files: Iterable[InputFile], sink: ByteSink) -> None:
    """The job's input files as the agent reads them: a tar in u32-length chunks, ended
    by a zero length (the agent needs no EOF: stdin stays open, see ``StdinOnce``)."""
    write_input_tar(files, ChunkedSink(sink))
    sink.write(struct.pack(">I", 0))


# --------------------------------------------------------------------- reply


class _Capped:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]


@dataclass
class Reply:
    """What was read from the agent, validated. ``result`` is None if the reply ended early."""

    stdout: _Capped
    stderr: _Capped
    outputs: list[OutputFile] = field(default_factory=list)
    #: Outputs the host refused by name (their data was read and dropped).
    skipped: list[SkippedFile] = field(default_factory=list)
    result: dict[str, Any] | None = None

    def discard_outputs(self) -> None:
        for out in self.outputs:
            out.data.close()
        self.outputs.clear()


def read_exact(source: ByteSource, size: int) -> bytes:
    """Exactly ``size`` bytes, or fewer at EOF."""
    parts: list[bytes] = []
    while size > 0:
        chunk = source.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def read_frame_header(source: ByteSource) -> tuple[bytes, int] | None:
    """The next frame's kind and length, or None at a clean EOF."""
    head = read_exact(source, FRAME.size)
    if not head:
        return None
    if len(head) < FRAME.size:
        raise ProtocolError("reply ended inside a frame header")
    kind, size = FRAME.unpack(head)
    return kind, size


def _read_payload(source: ByteSource, size: int, limit: int) -> bytes:
    if size > limit:
        raise ProtocolError(f"frame of {size} bytes is over the {limit} byte limit")
    data = read_exact(source, size)
    if len(data) < size:
        raise ProtocolError("reply ended inside a frame")
    return data


def json_depth(value: object) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_frame(raw: bytes) -> dict[str, Any]:
    """A JSON object frame, or ``ProtocolError`` (invalid, too deep, not an object)."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"invalid JSON frame: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise ProtocolError("JSON frame is not an object")
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ProtocolError(f"JSON frame nests deeper than {MAX_JSON_DEPTH}")
    return value


def _read_json(source: ByteSource, size: int, limit: int) -> dict[str, Any]:
    return parse_json_frame(_read_payload(source, size, limit))


def reply_budget(limits: Limits) -> tuple[int, int]:
    """(bytes, frames) an honest reply to a run with ``limits`` never exceeds.

    Payload: both capped streams, every output file with its header, the result. The
    agent sends data in 256 KiB frames; 4 KiB is assumed, and some slack added.
    """
    payload = (
        2 * limits.max_output_bytes
        + limits.max_files * (limits.max_file_bytes + MAX_FILE_HEADER)
        + MAX_RESULT_FRAME
    )
    frames = payload // 4096 + 2 * limits.max_files + REPLY_SLACK_FRAMES
    return payload + frames * FRAME.size + REPLY_SLACK_BYTES, frames


class _Budget:
    """Counts a reply's bytes and frames; ``ProtocolError`` past ``reply_budget``."""

    def __init__(self, source: ByteSource, limits: Limits) -> None:
        self._source = source
        self.max_bytes, self.max_frames = reply_budget(limits)
        self.bytes = 0
        self.frames = 0

    def read(self, size: int) -> bytes:
        data = self._source.read(size)
        self.bytes += len(data)
        if self.bytes > self.max_bytes:
            raise ProtocolError(f"reply is over its {self.max_bytes} byte budget")
        return data

    def frame(self) -> None:
        self.frames += 1
        if self.frames > self.max_frames:
            raise ProtocolError(f"reply is over its {self.max_frames} frame budget")


class ReplyReader:
    """Reads and checks one reply against the request that caused it."""

    def __init__(self, source: ByteSource, request: RunRequest) -> None:
        self._budget = _Budget(source, request.limits)
        self._source: ByteSource = self._budget
        self._limits = request.limits
        self._names: set[str] = set()
        self._output_bytes = 0
        self._spool_memory_left = SPOOL_MEMORY_PER_REPLY
        self.reply = Reply(
            stdout=_Capped(request.limits.max_output_bytes),
            stderr=_Capped(request.limits.max_output_bytes),
        )

    def read(self) -> Reply:
        """Read frames up to the result (or EOF). Raises ``ProtocolError`` or ``OSError``."""
        try:
            self._read_frames()
        except BaseException:
            self.reply.discard_outputs()
            raise
        return self.reply

    def _read_frames(self) -> None:
        while True:
            header = read_frame_header(self._source)
            if header is None:
                return
            kind, size = header
            self._budget.frame()
            if kind == READY:
                _read_payload(self._source, size, 0)
            elif kind in (STDOUT, STDERR):
                if size == 0:
                    raise ProtocolError("empty data frame")
                data = _read_payload(self._source, size, MAX_DATA_FRAME)
                (self.reply.stdout if kind == STDOUT else self.reply.stderr).feed(data)
            elif kind == FILE:
                self._read_file(_read_json(self._source, size, MAX_FILE_HEADER))
            elif kind == RESULT:
                self.reply.result = _read_json(self._source, size, MAX_RESULT_FRAME)
                return
            else:
                raise ProtocolError(f"unknown frame kind {kind!r}")

    def _spool(self, size: int) -> IO[bytes]:
        """A spool whose memory share comes out of the reply's budget (disk beyond)."""
        in_memory = min(SPOOL_MAX_MEMORY, self._spool_memory_left, size)
        self._spool_memory_left -= in_memory
        # max_size=0 would never roll over: at least 1 byte means "disk almost at once".
        return tempfile.SpooledTemporaryFile(max_size=max(1, in_memory))

    def _read_file(self, meta: dict[str, Any]) -> None:
        name, size = meta.get("name"), meta.get("size")
        limits = self._limits
        if not isinstance(name, str) or name in self._names:
            raise ProtocolError(f"output file name {str(name)[:200]!r} is not acceptable")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(f"output file {name[:200]!r} has an invalid size")
        if size > limits.max_file_bytes or len(self.reply.outputs) >= limits.max_files:
            raise ProtocolError(f"output file {name[:200]!r} is over the file limits")
        # The workspace cannot hold more than its size: a reply claiming more is forged.
        self._output_bytes += size
        if self._output_bytes > limits.workspace_bytes:
            raise ProtocolError("output files total more than the workspace size")
        self._names.add(name)
        problem = output_name_problem(name)
        if problem is not None:
            # A name the program chose (a deep path, a control character) costs only
            # that file: its data is read and dropped, and the skip says why.
            self._read_data(name, size, None)
            if len(self.reply.skipped) < MAX_SKIPPED:
                display = name[:MAX_DISPLAY_CHARS].encode("utf-8", "replace").decode("utf-8")
                display = display.replace("\x00", "\ufffd")
                self.reply.skipped.append(SkippedFile(name=display, reason=problem))
            return
        spool = self._spool(size)
        self.reply.outputs.append(OutputFile(name=name, size=size, sha256="", data=spool))  # type: ignore[arg-type]
        self.reply.outputs[-1].sha256 = self._read_data(name, size, spool)

    def _read_data(self, name: str, size: int, spool: IO[bytes] | None) -> str:
        """Read ``size`` bytes of DATA frames into ``spool`` (or drop them); the digest."""
        digest = hashlib.sha256()
        remaining = size
        while remaining > 0:
            header = read_frame_header(self._source)
            if header is None or header[0] != DATA:
                raise ProtocolError(f"output file {name[:200]!r} is incomplete")
            self._budget.frame()
            if header[1] == 0:
                raise ProtocolError("empty data frame")
            data = _read_payload(self._source, header[1], min(MAX_DATA_FRAME, remaining))
            digest.update(data)
            if spool is not None:
                spool.write(data)
            remaining -= len(data)
        if spool is not None:
            spool.seek(0)
        return digest.hexdigest()


# -------------------------------------------------------------------- result


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _with_line(text: str, line: str) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{text}{line}\n"


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _clean_skipped(raw: object, more: object) -> list[SkippedFile]:
    skipped: list[SkippedFile] = []
    if isinstance(raw, list):
        for item in raw[:MAX_SKIPPED]:
            if (
                isinstance(item, list)
                and len(item) == 2
                and all(isinstance(part, str) for part in item)
            ):
                name = item[0][:MAX_NAME_BYTES].replace("\x00", "\ufffd")
                skipped.append(SkippedFile(name=name, reason=item[1][:300]))
    extra = _int(more, 0)
    if extra > 0:
        skipped.append(SkippedFile(name="...", reason=f"and {extra} more files were skipped"))
    return skipped


def build_result(
    reply: Reply,
    request: RunRequest,
    *,
    duration_s: float,
    failure: str | None = None,
    timed_out: bool = False,
    oom_killed: bool = False,
) -> RunResult:
    """The ``RunResult`` for a reply; ``failure`` explains a reply that never completed."""
    limits = request.limits
    result = reply.result if failure is None else None
    stdout, stderr = reply.stdout, reply.stderr
    if result is not None:
        stdout_total = max(_int(result.get("stdout_bytes"), 0), stdout.total)
        stderr_total = max(_int(result.get("stderr_bytes"), 0), stderr.total)
        exit_code = _int(result.get("exit_code"), 1)
        timed_out = result.get("timed_out") is True
        oom_killed = result.get("oom_killed") is True and not timed_out
        input_names = {f.name for f in request.files}
        raw_deleted = result.get("deleted")
        deleted = sorted(
            {n for n in raw_deleted if isinstance(n, str) and n in input_names}
            if isinstance(raw_deleted, list)
            else set()
        )
        skipped = [
            *reply.skipped,
            *_clean_skipped(result.get("skipped"), result.get("skipped_more")),
        ]
        raw_notices = result.get("notices")
        notices = [str(n)[:500] for n in (raw_notices if isinstance(raw_notices, list) else [])][
            :MAX_NOTICES
        ]
        if isinstance(result.get("error"), str):
            notices.append(f"rce: {result['error'][:2000]}")
            exit_code = exit_code or 1
        outputs = reply.outputs
    else:
        stdout_total, stderr_total = stdout.total, stderr.total
        exit_code = 137 if (timed_out or oom_killed) else 1
        deleted, skipped, notices = [], [], []
        reply.discard_outputs()
        outputs = []
        if failure and not (timed_out or oom_killed):
            notices.append(f"rce: {failure}")
    out_text, err_text = _text(stdout.data), _text(stderr.data)
    out_truncated = stdout_total > limits.max_output_bytes
    err_truncated = stderr_total > limits.max_output_bytes
    if out_truncated:
        out_text = _with_line(out_text, truncation_notice(limits))
    if err_truncated:
        err_text = _with_line(err_text, truncation_notice(limits))
    for notice in notices:
        err_text = _with_line(err_text, notice)
    if timed_out:
        err_text = _with_line(err_text, timeout_notice(limits))
        exit_code = exit_code or 137
    elif oom_killed:
        err_text = _with_line(err_text, oom_notice(limits))
        exit_code = exit_code or 137
    return RunResult(
        stdout=out_text,
        stderr=err_text,
        exit_code=exit_code,
        timed_out=timed_out,
        oom_killed=oom_killed,
        stdout_truncated=out_truncated,
        stderr_truncated=err_truncated,
        outputs=outputs,
        deleted=deleted,
        skipped=skipped,
        duration_s=duration_s,
    )
