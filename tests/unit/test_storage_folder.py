"""What only the folder store does: its layout on disk, the sweeper, crash leftovers."""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import StorageError, StorageUnavailable
from core.identity import Owner
from core.ids import new_id
from storage.base import NewFile
from storage.folder import FolderSessionStore

OWNER = Owner("t", "u")
LONG_AGO = time.time() - 3600


def _put(
    store: FolderSessionStore, sid: str, fid: str, data: bytes = b"x", name: str = "n"
) -> None:
    store.put(NewFile(sid, fid, name, OWNER), io.BytesIO(data))


def _age(path: Path) -> None:
    os.utime(path, (LONG_AGO, LONG_AGO))


@pytest.fixture(name="store")
def _store(tmp_path: Path) -> FolderSessionStore:
    return FolderSessionStore(tmp_path / "root", leftover_grace_s=60)


class TestLayout:
    def test_the_name_never_reaches_a_host_path(self, store: FolderSessionStore) -> None:
        """Only ids appear on disk; the name lives in the metadata document."""
        sid, fid = new_id(), new_id()
        meta = store.put(NewFile(sid, fid, "../../etc/passwd", OWNER), io.BytesIO(b"x"))
        on_disk = {path.relative_to(store.root).as_posix() for path in store.root.rglob("*")}
        assert on_disk == {sid, f"{sid}/{fid}.json", f"{sid}/{fid}.{meta.etag}"}

    def test_an_overwrite_leaves_one_data_file(self, store: FolderSessionStore) -> None:
        sid, fid = new_id(), new_id()
        for data in (b"1", b"22", b"333"):
            _put(store, sid, fid, data)
        names = sorted(path.name for path in (store.root / sid).iterdir())
        assert len(names) == 2
        assert names[1] == f"{fid}.json"

    def test_a_corrupt_metadata_document_is_a_storage_error(
        self, store: FolderSessionStore
    ) -> None:
        sid, fid = new_id(), new_id()
        _put(store, sid, fid)
        (store.root / sid / f"{fid}.json").write_text("{not json")
        with pytest.raises(StorageError, match="not JSON"):
            store.stat(sid, fid)

    def test_open_holds_no_file_descriptor_after_close(self, store: FolderSessionStore) -> None:
        """Closing an unread ``StoredObject`` releases its file."""
        sid, fid = new_id(), new_id()
        _put(store, sid, fid)
        before = len(os.listdir("/proc/self/fd"))
        store.open(sid, fid).close()
        assert len(os.listdir("/proc/self/fd")) == before


class TestSweeper:
    def test_removes_stale_temp_files_and_keeps_fresh_ones(self, store: FolderSessionStore) -> None:
        """A crash leaves ``.tmp-*`` files; the sweeper removes those past the grace."""
        sid = new_id()
        _put(store, sid, new_id())
        stale, fresh = store.root / sid / ".tmp-stale", store.root / sid / ".tmp-fresh"
        stale.write_bytes(b"half a file")
        fresh.write_bytes(b"being written")
        _age(stale)
        assert store.expire(datetime.now(UTC) - timedelta(hours=1)) == 0
        assert not stale.exists()
        assert fresh.exists()

    def test_removes_versions_no_metadata_points_at(self, store: FolderSessionStore) -> None:
        """A version orphaned by racing writers or a crash before commit is swept."""
        sid, fid = new_id(), new_id()
        _put(store, sid, fid, b"current")
        orphan = store.root / sid / f"{fid}.00000000deadbeef"
        uncommitted = store.root / sid / f"{new_id()}.00000000cafe0000"
        for path in (orphan, uncommitted):
            path.write_bytes(b"old")
            _age(path)
        store.expire(datetime.now(UTC) - timedelta(hours=1))
        assert not orphan.exists()
        assert not uncommitted.exists()
        assert b"".join(store.open(sid, fid).chunks) == b"current"

    def test_removes_expired_files_and_empty_session_folders(
        self, store: FolderSessionStore
    ) -> None:
        sid = new_id()
        _put(store, sid, new_id())
        assert store.expire(datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert not (store.root / sid).exists()
        assert store.list(sid) == []

    def test_a_put_after_the_sweep_recreates_the_folder(self, store: FolderSessionStore) -> None:
        sid, fid = new_id(), new_id()
        _put(store, sid, new_id())
        store.expire(datetime.now(UTC) + timedelta(seconds=1))
        _put(store, sid, fid, b"again")
        assert b"".join(store.open(sid, fid).chunks) == b"again"

    def test_nothing_to_sweep_before_first_use(self, tmp_path: Path) -> None:
        assert FolderSessionStore(tmp_path / "absent").expire(datetime.now(UTC)) == 0


class TestFailures:
    def test_a_root_that_is_a_file_is_unavailable(self, tmp_path: Path) -> None:
        """OS errors become ``StorageUnavailable`` naming the root."""
        (tmp_path / "file").write_text("not a folder")
        store = FolderSessionStore(tmp_path / "file" / "root")
        with pytest.raises(StorageUnavailable, match="root"):
            store.ping()
        with pytest.raises(StorageUnavailable):
            _put(store, new_id(), new_id())

    def test_ping_creates_the_root(self, tmp_path: Path) -> None:
        FolderSessionStore(tmp_path / "a" / "b").ping()
        assert (tmp_path / "a" / "b").is_dir()
