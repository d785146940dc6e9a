"""The agent's side of the wire protocol.

Job (stdin):
    b"RCEJ" + u32 big-endian length + JSON header, then, when the header lists
    files, a tar stream of the input files framed as chunks (u32 big-endian length +
    bytes) ended by a zero length. The job's end is known without EOF: every
    sandbox keeps its stdin open after the host detaches (``StdinOnce=false``), so
    a programmatic run (``rce_agent.ptc``, a ``ptc`` object in the header) reads
    tool results on it later, in a pooled container like any other.
    header = {"lang": str, "code": str, "args": [str],
              "files": [{"name": str, "sha256": str}],
              "limits": {"run_timeout_s", "max_output_bytes", "max_file_bytes",
                         "max_files"}}

Reply (stdout): frames of a 1-byte kind + u32 big-endian length + payload:
    P  ready: the warm agent finished its imports (before the job)
    O  stdout bytes of the program (capped)       E  stderr bytes (capped)
    F  an output file: JSON {"name", "size"}, then D frames totalling size
    D  file data (never empty)
    R  the result, JSON (last frame): exit_code, timed_out, oom_killed,
       stdout_bytes, stderr_bytes, deleted, skipped, notices, error

The reply fd is the agent's own stdout, which no program can reach (see
``supervise.harden``). The agent's diagnostics go to stderr.
"""

from __future__ import annotations

# ``_json`` is the C half of ``json``: ``json`` itself imports ``re`` for its
# pure-Python fallbacks, about 3 ms of CPU at every sandbox's start (__init__.py).
import _json
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # the agent never imports typing (rce_agent/__init__.py)
    from typing import Any

#: What a warm interpreter writes on its stdout once it waits for the job
#: (``rce_agent.warm``; ``rce_agent.pywarm`` imports it from here, not from ``warm``).
READY = b"rce-ready\n"
JOB_MAGIC = b"RCEJ"
MAX_HEADER_BYTES = 64 * 1024 * 1024
CHUNK = 256 * 1024
REPLY_FD = 1
JOB_FD = 0


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def send_frame(kind: bytes, payload: bytes = b"", fd: int = REPLY_FD) -> None:
    """Write one reply frame."""
    write_all(fd, kind + struct.pack(">I", len(payload)) + payload)


def _not_serializable(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class _DecoderSettings:
    """What ``_json.make_scanner`` reads off a ``json.JSONDecoder()`` of defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity


# What ``json.dumps(obj, ensure_ascii=True)`` and ``json.loads`` run for these values,
# built without ``json`` (no circular-reference check: the agent's own dicts).
_encode = _json.make_encoder(
    None, _not_serializable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
)
_scan = _json.make_scanner(_DecoderSettings())  # type: ignore[arg-type]  # the stub wants its own type
_SPACE = " \t\n\r"


def dumps(obj: object) -> str:
    """``json.dumps(obj, ensure_ascii=True)``."""
    return "".join(_encode(obj, 0))


def loads(text: str) -> Any:
    """``json.loads(text)`` (ValueError on anything but one JSON document)."""
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    if text[end:].strip(_SPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def send_json(kind: bytes, obj: object, fd: int = REPLY_FD) -> None:
    """Write one JSON reply frame (ASCII)."""
    send_frame(kind, dumps(obj).encode("ascii"), fd)


def read_exact(fd: int, size: int) -> bytes:
    """Exactly ``size`` bytes from ``fd``, or fewer at EOF."""
    parts = []
    while size > 0:
        chunk = os.read(fd, min(size, CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


class FdReader:
    """A minimal file object over a raw fd, for tarfile's stream mode."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        return os.read(self.fd, size)


class ChunkedReader:
    """The input tar as the host frames it on stdin (u32-length chunks ended by a
    zero length): a file object for tarfile's stream mode."""

    def __init__(self, fd: int = JOB_FD) -> None:
        self.fd = fd
        self.left = 0
        self.done = False

    def _exact(self, size: int) -> bytes:
        data = read_exact(self.fd, size)
        if len(data) != size:
            raise EOFError("stdin closed inside the input tar")
        return data

    def read(self, size: int | None = -1) -> bytes:
        if self.done:
            return b""
        if self.left == 0:
            (self.left,) = struct.unpack(">I", self._exact(4))
            if self.left == 0:
                self.done = True
                return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = os.read(self.fd, min(size, CHUNK))
        if not data:
            raise EOFError("stdin closed inside the input tar")
        self.left -= len(data)
        return data

    def finish(self) -> None:
        """Skip what tarfile left unread (its end padding) up to the zero-length chunk."""
        while self.read(CHUNK):
            pass


def parse_header(head: bytes, read: Any) -> dict[str, Any] | None:
    """The job header from its 8-byte ``head`` and ``read(size)`` for the rest."""
    if len(head) < 8:
        return None
    if head[:4] != JOB_MAGIC:
        raise ValueError("job does not start with the protocol magic")
    (size,) = struct.unpack(">I", head[4:])
    if size > MAX_HEADER_BYTES:
        raise ValueError("job header too large")
    raw = read(size)
    if len(raw) != size:
        raise ValueError("job header truncated")
    job = loads(raw.decode("utf-8"))
    if not isinstance(job, dict):
        raise ValueError("job header is not an object")
    return job


def read_job(fd: int = JOB_FD) -> dict[str, Any] | None:
    """The job header (a dict), or None when stdin closed before a job came."""
    return parse_header(read_exact(fd, 8), lambda size: read_exact(fd, size))
