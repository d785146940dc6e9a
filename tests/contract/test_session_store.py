"""The ``SessionStore`` contract: every adapter behaves the same.

Each test runs against the in-memory fake, the folder store, S3 on moto and S3 on a
real SeaweedFS server (``s3`` marker), so the fake cannot drift from the real ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import FileNotFound, InvalidId, InvalidRequest
from core.identity import FileKind, Owner
from core.ids import new_id
from storage.base import FileMeta, NewFile, SessionStore

OWNER = Owner("tenant-a", "user-1")
MiB = 1024 * 1024


def new_file(sid: str, name: str = "data.bin", fid: str | None = None, **fields: object) -> NewFile:
    """A ``NewFile`` in session ``sid`` with a fresh file id unless one is given."""
    return NewFile(session_id=sid, file_id=fid or new_id(), name=name, owner=OWNER, **fields)  # type: ignore[arg-type]


def read_all(store: SessionStore, sid: str, fid: str) -> bytes:
    stored = store.open(sid, fid)
    try:
        return b"".join(stored.chunks)
    finally:
        stored.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PatternStream:
    """A non-seekable stream of ``size`` pseudo-random bytes, generated as it is read."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self._block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
        self._left = size
        self._offset = 0
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        parts = []
        while want > 0:
            start = self._offset % len(self._block)
            part = self._block[start : start + want]
            parts.append(part)
            want -= len(part)
            self._offset += len(part)
        data = b"".join(parts)
        self._left -= len(data)
        self.digest.update(data)
        return data


class TestRoundTrip:
    def test_binary_bytes_come_back_unchanged(self, store: SessionStore, sid: str) -> None:
        """Every byte value, and random bytes, survive a put and an open."""
        data = bytes(range(256)) * 64 + os.urandom(300_000)
        new = new_file(sid)
        store.put(new, io.BytesIO(data))
        assert read_all(store, sid, new.file_id) == data

    def test_empty_file_round_trips(self, store: SessionStore, sid: str) -> None:
        """A 0-byte file is stored, listed and read back as empty."""
        new = new_file(sid, "empty.txt")
        meta = store.put(new, io.BytesIO(b""))
        assert (meta.size, meta.sha256) == (0, sha(b""))
        assert read_all(store, sid, new.file_id) == b""
        assert [m.file_id for m in store.list(sid)] == [new.file_id]

    def test_put_returns_what_stat_reports(self, store: SessionStore, sid: str) -> None:
        """The metadata ``put`` returns is the metadata the store then reports."""
        new = new_file(sid, "report.csv", content_type="text/csv")
        assert store.put(new, io.BytesIO(b"a,b\n1,2\n")) == store.stat(sid, new.file_id)

    def test_open_streams_the_metadata_too(self, store: SessionStore, sid: str) -> None:
        """``open`` returns the file's metadata with its bytes."""
        new = new_file(sid, "x.txt", content_type="text/plain")
        meta = store.put(new, io.BytesIO(b"hello"))
        stored = store.open(sid, new.file_id)
        stored.close()
        stored.close()  # idempotent
        assert (stored.meta.name, stored.meta.size, stored.meta.sha256) == (
            "x.txt",
            5,
            meta.sha256,
        )


NAMES = [
    "a/b/c/deep.txt",
    "naïve résumé.pdf",
    "مرحبا بالعالم.txt",
    "שלום/עולם.csv",
    "\u202ecod.exe",
    "📊 report 🚀.xlsx",
    "漢字/テスト データ.md",
    "spaces and 'quotes' \"double\" %20 ?.txt",
    "../not-a-path-here",
    ".hidden",
]


class TestNames:
    @pytest.mark.parametrize("name", NAMES)
    def test_any_unicode_name_is_kept(self, store: SessionStore, sid: str, name: str) -> None:
        """Nested, RTL, emoji and odd names come back exactly."""
        new = new_file(sid, name)
        store.put(new, io.BytesIO(name.encode()))
        assert store.stat(sid, new.file_id).name == name
        assert [meta.name for meta in store.list(sid)] == [name]
        assert read_all(store, sid, new.file_id) == name.encode()

    def test_a_1024_byte_name_is_kept(self, store: SessionStore, sid: str) -> None:
        """Names up to 1024 bytes of UTF-8 fit every store (S3's 2 KB metadata too)."""
        name = "🚀" * 256
        new = new_file(sid, name)
        store.put(new, io.BytesIO(b"x"))
        assert store.stat(sid, new.file_id).name == name

    def test_a_longer_name_is_refused(self, store: SessionStore, sid: str) -> None:
        """A name over 1024 bytes is refused before anything is stored."""
        with pytest.raises(InvalidRequest, match="1024 bytes"):
            store.put(new_file(sid, "x" * 1025), io.BytesIO(b"x"))
        assert store.list(sid) == []

    @pytest.mark.parametrize("bad", ["../etc", "a/b", "", "a.b", "x" * 129])
    def test_unsafe_ids_are_refused(self, store: SessionStore, bad: str) -> None:
        """Ids that could escape a key or path are refused with ``InvalidId``."""
        with pytest.raises(InvalidId):
            store.put(new_file(bad), io.BytesIO(b"x"))
        with pytest.raises(InvalidId):
            store.list(bad)
        with pytest.raises(InvalidId):
            store.stat(new_id(), bad)


class TestListing:
    def test_lists_a_session_sorted_by_name(self, store: SessionStore, sid: str) -> None:
        """``list`` returns that session's files, sorted by name, and only those."""
        for name in ("c.txt", "a.csv", "b"):
            store.put(new_file(sid, name), io.BytesIO(name.encode()))
        store.put(new_file(new_id(), "other.txt"), io.BytesIO(b"other"))
        assert [meta.name for meta in store.list(sid)] == ["a.csv", "b", "c.txt"]

    def test_object_names_start_with_session_and_file_id(
        self, store: SessionStore, sid: str
    ) -> None:
        """LibreChat finds a file in a listing by ``{session_id}/{file_id}``."""
        new = new_file(sid, "dir/plot.png")
        store.put(new, io.BytesIO(b"png"))
        (meta,) = store.list(sid)
        assert meta.object_name == f"{sid}/{new.file_id}.png"

    def test_unknown_session_lists_empty(self, store: SessionStore) -> None:
        """A session with no files is an empty list, not an error."""
        assert store.list(new_id()) == []


class TestMetadata:
    def test_records_owner_kind_flags_and_digest(self, store: SessionStore, sid: str) -> None:
        """Owner, kind, read-only, content type, size and sha256 are kept."""
        data = b"col\n1\n"
        owner = Owner("tenant-ü", "user-😀")
        new = NewFile(sid, new_id(), "t.csv", owner, FileKind.AGENT, "text/csv", read_only=True)
        store.put(new, io.BytesIO(data))
        meta = store.stat(sid, new.file_id)
        assert (meta.owner, meta.kind, meta.read_only) == (owner, FileKind.AGENT, True)
        assert (meta.content_type, meta.size, meta.sha256) == ("text/csv", 6, sha(data))
        assert (meta.session_id, meta.file_id) == (sid, new.file_id)

    def test_defaults_are_user_kind_and_writable(self, store: SessionStore, sid: str) -> None:
        new = new_file(sid)
        store.put(new, io.BytesIO(b"x"))
        meta = store.stat(sid, new.file_id)
        assert (meta.kind, meta.read_only, meta.content_type) == (
            FileKind.USER,
            False,
            "application/octet-stream",
        )

    def test_a_given_sha256_is_recorded(self, store: SessionStore, sid: str) -> None:
        """A caller that knows the digest passes it; the store records it."""
        data = os.urandom(1000)
        new = new_file(sid, sha256=sha(data))
        assert store.put(new, io.BytesIO(data)).sha256 == sha(data)
        assert store.stat(sid, new.file_id).sha256 == sha(data)

    def test_last_modified_is_fresh_and_aware(self, store: SessionStore, sid: str) -> None:
        """``last_modified`` is timezone-aware and close to now (LibreChat's freshness)."""
        new = new_file(sid)
        store.put(new, io.BytesIO(b"x"))
        modified = store.stat(sid, new.file_id).last_modified
        assert modified.tzinfo is not None
        assert abs(datetime.now(UTC) - modified) < timedelta(seconds=10)

    def test_content_type_must_be_printable_ascii(self, store: SessionStore, sid: str) -> None:
        with pytest.raises(InvalidRequest, match="content type"):
            store.put(new_file(sid, content_type="text/plain\r\nX: y"), io.BytesIO(b"x"))


class TestMissingAndDelete:
    def test_missing_file_raises_file_not_found(self, store: SessionStore, sid: str) -> None:
        """stat, open and delete of an unknown file raise ``FileNotFound``."""
        fid = new_id()
        with pytest.raises(FileNotFound):
            store.stat(sid, fid)
        with pytest.raises(FileNotFound):
            store.open(sid, fid)
        with pytest.raises(FileNotFound):
            store.delete(sid, fid)

    def test_delete_removes_the_file(self, store: SessionStore, sid: str) -> None:
        """After delete the file is gone from stat, open and list; others stay."""
        gone, kept = new_file(sid, "gone.txt"), new_file(sid, "kept.txt")
        store.put(gone, io.BytesIO(b"1"))
        store.put(kept, io.BytesIO(b"2"))
        store.delete(sid, gone.file_id)
        with pytest.raises(FileNotFound):
            store.stat(sid, gone.file_id)
        with pytest.raises(FileNotFound):
            store.open(sid, gone.file_id)
        with pytest.raises(FileNotFound):
            store.delete(sid, gone.file_id)
        assert [meta.name for meta in store.list(sid)] == ["kept.txt"]


class TestOverwrite:
    def test_put_with_the_same_id_replaces_the_file(self, store: SessionStore, sid: str) -> None:
        """A second put under a file id replaces bytes and metadata as one."""
        fid = new_id()
        first = store.put(new_file(sid, "v1.txt", fid), io.BytesIO(b"version one"))
        second = store.put(
            new_file(sid, "v2.md", fid, content_type="text/markdown"), io.BytesIO(b"v2")
        )
        assert read_all(store, sid, fid) == b"v2"
        (meta,) = store.list(sid)
        assert (meta.name, meta.content_type, meta.size) == ("v2.md", "text/markdown", 2)
        assert second.last_modified >= first.last_modified


class TestExpiry:
    def test_expire_deletes_only_files_older_than_the_cutoff(
        self, store: SessionStore, sid: str
    ) -> None:
        """Files newer than the cutoff stay; older ones go, and are counted."""
        other = new_id()
        store.put(new_file(sid, "a"), io.BytesIO(b"a"))
        store.put(new_file(other, "b"), io.BytesIO(b"b"))
        now = datetime.now(UTC)
        assert store.expire(now - timedelta(hours=1)) == 0
        assert len(store.list(sid)) == 1
        assert store.expire(now + timedelta(seconds=5)) == 2
        assert store.list(sid) == store.list(other) == []


class TestConcurrency:
    def test_concurrent_writers_of_distinct_files_lose_nothing(
        self, store: SessionStore, sid: str
    ) -> None:
        """16 threads each writing their own file into one session: all 16 are there."""
        payloads = {new_id(): os.urandom(50_000 + i) for i in range(16)}

        def write(fid: str) -> FileMeta:
            return store.put(new_file(sid, f"{fid}.bin", fid), io.BytesIO(payloads[fid]))

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(write, payloads))
        listed = {meta.file_id: meta for meta in store.list(sid)}
        assert set(listed) == set(payloads)
        for fid, data in payloads.items():
            assert listed[fid].sha256 == sha(data)
            assert read_all(store, sid, fid) == data

    def test_concurrent_writers_of_one_file_never_tear_it(
        self, store: SessionStore, sid: str
    ) -> None:
        """16 threads overwrite one file while a reader reads it: every read, and the
        final file, is exactly one of the written versions, with matching metadata."""
        fid = new_id()
        versions = [os.urandom(200_000) for _ in range(16)]
        digests = {sha(data) for data in versions}
        store.put(new_file(sid, "shared.bin", fid), io.BytesIO(versions[0]))
        seen = self._read_while(store, sid, fid, lambda: self._overwrite(store, sid, fid, versions))
        assert seen
        assert all(digest in digests for digest in seen)
        final = read_all(store, sid, fid)
        assert sha(final) in digests
        meta = store.stat(sid, fid)
        assert (meta.sha256, meta.size) == (sha(final), len(final))
        assert len(store.list(sid)) == 1

    @staticmethod
    def _overwrite(store: SessionStore, sid: str, fid: str, versions: list[bytes]) -> None:
        def write(data: bytes) -> FileMeta:
            return store.put(new_file(sid, "shared.bin", fid), io.BytesIO(data))

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(write, versions))

    @staticmethod
    def _read_while(
        store: SessionStore, sid: str, fid: str, action: Callable[[], None]
    ) -> list[str]:
        seen: list[str] = []
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                stored = store.open(sid, fid)
                data = b"".join(stored.chunks)
                assert sha(data) == stored.meta.sha256, "bytes and metadata disagree"
                seen.append(sha(data))

        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(reader)
            try:
                action()
            finally:
                done.set()
            future.result()
        return seen


class TestLargeFiles:
    SIZE = 40 * MiB  # five multipart parts on S3

    @pytest.mark.parametrize("known_digest", [False, True], ids=["hashed", "digest-given"])
    def test_a_large_file_streams_with_bounded_memory(
        self, store: SessionStore, adapter: str, sid: str, known_digest: bool
    ) -> None:
        """A 40 MiB file goes in and out in chunks; where the store is out of process,
        Python's peak allocation stays under half the file size (S3 parts are 8 MiB)."""
        expected = PatternStream(self.SIZE)
        expected.read()
        digest = expected.digest.hexdigest()
        new = new_file(sid, "big.bin", sha256=digest if known_digest else None)
        tracemalloc.start()
        try:
            meta = store.put(new, PatternStream(self.SIZE))  # type: ignore[arg-type]
            read = hashlib.sha256()
            size = 0
            stored = store.open(sid, new.file_id)
            for chunk in stored.chunks:
                read.update(chunk)
                size += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (meta.size, meta.sha256) == (self.SIZE, digest)
        assert (size, read.hexdigest()) == (self.SIZE, digest)
        if adapter in ("folder", "seaweed"):  # memory and moto hold data in this process
            assert peak < 20 * MiB, f"peak Python allocation {peak / MiB:.1f} MiB"


class TestHealth:
    def test_ping_answers(self, store: SessionStore) -> None:
        store.ping()
