"""``AttachedStream.drain_to_end``: how a finished container's removal waits for its exit."""

from __future__ import annotations

import socket
import threading
import time

from runner._docker_stream import AttachedStream


def test_the_drain_ends_when_the_engine_ends_the_stream() -> None:
    ours, engine = socket.socketpair()
    stream = AttachedStream(ours)
    engine.sendall(b"\x01\x00\x00\x00\x00\x00\x00\x03bye")  # a frame nobody reads

    threading.Timer(0.2, engine.close).start()
    started = time.monotonic()
    assert stream.drain_to_end(5.0) is True
    assert time.monotonic() - started < 2.0
    stream.close()


def test_the_drain_gives_up_after_its_bound() -> None:
    ours, engine = socket.socketpair()
    stream = AttachedStream(ours)
    started = time.monotonic()
    assert stream.drain_to_end(0.3) is False
    assert 0.25 <= time.monotonic() - started < 2.0
    stream.close()
    engine.close()


def test_a_closed_stream_drains_to_nothing() -> None:
    ours, engine = socket.socketpair()
    stream = AttachedStream(ours)
    stream.close()
    assert stream.drain_to_end(0.5) is False
    engine.close()
