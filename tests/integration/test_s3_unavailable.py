"""An S3 server that goes away: the store fails fast with ``StorageUnavailable`` and
recovers, without a restart, when the server comes back."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import StorageUnavailable
from core.identity import Owner
from core.ids import new_id
from storage.base import NewFile
from storage.s3 import S3SessionStore
from tests.support.s3_plugin import make_s3_store, random_bucket, start_seaweed
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.s3

#: How long any one call may take to give up on a dead server.
FAIL_FAST_S = 15.0
OWNER = Owner("tenant", "user")


@pytest.fixture(name="server", scope="module")
def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this module's own, since the tests stop and restart it."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed-outage"))
    try:
        yield server
    finally:
        server.stop()


def _operations(store: S3SessionStore, sid: str, fid: str) -> dict[str, Callable[[], object]]:
    return {
        "put": lambda: store.put(NewFile(sid, new_id(), "n.txt", OWNER), io.BytesIO(b"x")),
        "open": lambda: store.open(sid, fid),
        "stat": lambda: store.stat(sid, fid),
        "list": lambda: store.list(sid),
        "delete": lambda: store.delete(sid, fid),
        "ping": store.ping,
        "expire": lambda: store.expire(datetime.now(UTC)),
    }


def _assert_fails_fast(operation: Callable[[], object], endpoint: str) -> float:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        operation()
    elapsed = time.monotonic() - started
    assert elapsed < FAIL_FAST_S
    assert endpoint in raised.value.message
    return elapsed


def test_a_stopped_server_fails_fast_and_the_same_store_recovers(server: SeaweedServer) -> None:
    """Every operation raises ``StorageUnavailable`` naming the endpoint within
    seconds while the server is down; after it restarts the same store works."""
    store = make_s3_store(server.endpoint, random_bucket())
    sid, fid = new_id(), new_id()
    store.put(NewFile(sid, fid, "kept.txt", OWNER), io.BytesIO(b"kept"))
    server.stop()
    try:
        for operation in _operations(store, sid, fid).values():
            _assert_fails_fast(operation, server.endpoint)
    finally:
        server.start()
    assert b"".join(store.open(sid, fid).chunks) == b"kept"
    store.put(NewFile(sid, new_id(), "after.txt", OWNER), io.BytesIO(b"after"))
    assert [meta.name for meta in store.list(sid)] == ["after.txt", "kept.txt"]
    store.ping()


def test_lifecycle_set_up_never_fails_start_up(
    server: SeaweedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With the server down, ``ensure_lifecycle`` logs a warning and returns."""
    store = make_s3_store(server.endpoint, random_bucket())
    server.stop()
    try:
        started = time.monotonic()
        assert store.ensure_lifecycle(48) is False
        assert time.monotonic() - started < FAIL_FAST_S
    finally:
        server.start()
    assert "no S3 lifecycle rule" in caplog.text
    assert store.ensure_lifecycle(48) is True


@pytest.fixture(name="silent_endpoint")
def _silent_endpoint() -> Iterator[str]:
    """A port that accepts connections but never answers (a hung server)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_hung_server_times_out_as_unavailable(silent_endpoint: str, tmp_path: Path) -> None:
    """A server that never answers is ``StorageUnavailable`` after the read timeout
    and bounded retries, not a hang."""
    store = make_s3_store(silent_endpoint, "hung", create=False, read_timeout_s=0.5)
    elapsed = _assert_fails_fast(store.ping, silent_endpoint)
    assert elapsed < 5
