"""The attach stream of a sandbox: a raw socket carrying the Engine's multiplexed frames.

``AttachedStream`` writes the job to the container's stdin and reads back the
demultiplexed stdout (the agent's reply) with bounded memory and deadlines; the
agent's own stderr is kept, capped, for error messages.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from typing import Any

_DOCKER_FRAME = struct.Struct(">BxxxL")
_STDOUT, _STDERR = 1, 2
_RECV = 256 * 1024
DIAGNOSTICS_CAP = 16 * 1024


class StreamTimeout(Exception):
    """A deadline of the stream passed; ``first`` tells whether any reply byte had come."""

    def __init__(self, first: bool) -> None:
        super().__init__("sandbox stream deadline passed")
        self.got_reply = first


def raw_socket(attached: Any) -> socket.socket:
    """The plain socket under what ``APIClient.attach_socket`` returned."""
    sock = getattr(attached, "_sock", attached)
    if not isinstance(sock, socket.socket):
        raise TypeError(f"unsupported attach socket {type(attached).__name__}")
    return sock


class AttachedStream:
    """stdin writer and demultiplexed stdout reader over one attach socket.

    Deadlines are monotonic times. Before the first reply byte, reads wait until
    ``first_byte_deadline``; afterwards each read waits at most ``idle_s`` and never
    past ``final_deadline``.
    """

    def __init__(self, attached: Any) -> None:
        self._attached = attached
        self.sock = raw_socket(attached)
        self._frame_left = 0
        self._eof = False
        self.got_reply = False
        self.diagnostics = bytearray()
        self.first_byte_deadline: float | None = None
        self.final_deadline: float | None = None
        self.idle_s: float | None = None
        self.write_deadline: float | None = None

    # ------------------------------------------------------------------ write

    def write(self, data: bytes) -> int:
        """Send all of ``data`` to the container's stdin before ``write_deadline``."""
        self._settimeout(self.write_deadline, None)
        self.sock.sendall(data)
        return len(data)

    # ------------------------------------------------------------------- read

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the container's stdout; ``b""`` at EOF."""
        while self._frame_left == 0:
            if self._eof or not self._next_frame():
                return b""
        data = self._recv(min(size, self._frame_left))
        if not data:
            self._eof = True
            return b""
        self._frame_left -= len(data)
        self.got_reply = True
        return data

    def idle_and_alive(self) -> bool:
        """For a waiting container: True unless it hung up or wrote to stdout unasked.

        Pending stderr frames (the agent's diagnostics) are consumed on the way.
        """
        saved = self.first_byte_deadline
        try:
            while select.select([self.sock], [], [], 0)[0]:
                self.first_byte_deadline = time.monotonic() + 0.5
                if self._frame_left or not self._next_frame() or self._frame_left:
                    return False
            return True
        except (OSError, StreamTimeout):
            return False
        finally:
            self.first_byte_deadline = saved

    def _next_frame(self) -> bool:
        head = self._recv_exact(_DOCKER_FRAME.size)
        if len(head) < _DOCKER_FRAME.size:
            self._eof = True
            return False
        stream, size = _DOCKER_FRAME.unpack(head)
        if stream == _STDOUT:
            self._frame_left = size
            return True
        while size > 0:  # the agent's stderr (or anything else): keep a capped copy
            data = self._recv(min(size, _RECV))
            if not data:
                self._eof = True
                return False
            size -= len(data)
            room = DIAGNOSTICS_CAP - len(self.diagnostics)
            if room > 0 and stream == _STDERR:
                self.diagnostics += data[:room]
        return True

    def _recv_exact(self, size: int) -> bytes:
        parts = b""
        while len(parts) < size:
            data = self._recv(size - len(parts))
            if not data:
                break
            parts += data
        return parts

    def _recv(self, size: int) -> bytes:
        if self.got_reply:
            self._settimeout(self.final_deadline, self.idle_s)
        else:
            self._settimeout(self.first_byte_deadline, None)
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise StreamTimeout(self.got_reply) from None

    def _settimeout(self, deadline: float | None, idle_s: float | None) -> None:
        limits = [idle_s] if idle_s is not None else []
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StreamTimeout(self.got_reply)
            limits.append(remaining)
        self.sock.settimeout(min(limits) if limits else None)

    def drain_to_end(self, within_s: float) -> bool:
        """Read and drop what is left until the engine ends the stream (the container's
        processes all exited) or ``within_s`` passed; True at the end."""
        end = time.monotonic() + within_s
        try:
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                if not self.sock.recv(_RECV):
                    self._eof = True
                    return True
        except (TimeoutError, OSError):
            return False

    def close(self) -> None:
        """Close the socket (and the SDK object wrapping it)."""
        for closable in (self._attached, self.sock):
            with contextlib.suppress(OSError):
                closable.close()
