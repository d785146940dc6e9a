"""``FolderSessionStore``: session files in a local folder (the embedded default).

Layout under the root, one directory per session::

    {session_id}/{file_id}.{version}   the bytes of one version (version: hex)
    {session_id}/{file_id}.json        the metadata; names the current version
    {session_id}/.tmp-*                a write in progress (or left by a crash)

Integrity without locks: every file is written to a temporary file in the same
directory, fsynced and renamed into place. The data file is renamed first, then
the metadata document; that rename is the commit point, so a reader sees the old
version or the whole new one. A reader that loses a race with an overwrite (the
version it read was just removed) reads the metadata again. The file name lives in
the metadata only, never in a host path, so any Unicode name is safe. Versions left
behind by racing writers and temporary files left by a crash are removed by
``expire()``, the sweeper, once they are older than ``leftover_grace_s``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from core.errors import FileNotFound, StorageError, StoragePermissionDenied, StorageUnavailable
from storage._codec import (
    ClosingChunks,
    HashingReader,
    as_utc,
    build_meta,
    check_key_part,
    check_new_file,
    meta_from_json,
    meta_to_json,
    utc_now,
)
from storage.base import CHUNK_SIZE, FileMeta, NewFile, StoredObject

_TEMP_PREFIX = ".tmp-"
_META_SUFFIX = ".json"
# How often ``open`` re-reads the metadata when writers keep replacing the file.
_OPEN_ATTEMPTS = 8


def _new_version() -> str:
    """A unique, time-ordered hex version tag."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


def _not_found(session_id: str, file_id: str) -> FileNotFound:
    return FileNotFound(f"no file {file_id} in session {session_id}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkstemp(directory: Path) -> tuple[int, str]:
    """A new temp file in ``directory``, re-creating the folder if the sweeper just
    removed it as empty."""
    try:
        return tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=directory)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=directory)


def _write_file(directory: Path, target: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to a temp file in ``directory``, fsync it, rename it to ``target``."""
    fd, temp = _mkstemp(directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _file_chunks(path: Path) -> ClosingChunks:
    """Open ``path`` now (so a race shows here) and stream it in chunks."""
    handle = path.open("rb")
    return ClosingChunks(iter(lambda: handle.read(CHUNK_SIZE), b""), handle.close)


def _is_older(entry: os.DirEntry[str], cutoff: float) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_mtime < cutoff
    except FileNotFoundError:
        return False


class FolderSessionStore:
    """A ``SessionStore`` in a local folder; safe for many threads and processes."""

    def __init__(self, root: str | os.PathLike[str], *, leftover_grace_s: float = 900.0) -> None:
        """``root`` is created on first use. Temporary files and superseded
        versions older than ``leftover_grace_s`` seconds are swept by ``expire``.
        """
        self.root = Path(root)
        self.leftover_grace_s = leftover_grace_s

    # --- the port ---------------------------------------------------------------------

    def put(self, new: NewFile, data: BinaryIO) -> FileMeta:
        """Store ``data`` (streamed in chunks) atomically under (session, file id)."""
        check_new_file(new)
        with self._edge(f"store file {new.file_id} of session {new.session_id}"):
            directory = self._make_session_dir(new.session_id)
            version = _new_version()
            reader = HashingReader(data)
            _write_file(directory, directory / f"{new.file_id}.{version}", reader.chunks())
            meta = build_meta(
                new, size=reader.size, sha256=reader.sha256, etag=version, at=utc_now()
            )
            self._commit(directory, new.file_id, meta, version)
        return meta

    def open(self, session_id: str, file_id: str) -> StoredObject:
        """Open a file for streaming; re-reads the metadata if an overwrite races."""
        directory = self._session_dir(session_id)
        check_key_part(file_id, "file id")
        with self._edge(f"read file {file_id} of session {session_id}"):
            for _ in range(_OPEN_ATTEMPTS):
                meta = self._read_meta(directory, session_id, file_id)
                try:
                    chunks = _file_chunks(directory / f"{file_id}.{meta.etag}")
                except FileNotFoundError:
                    continue
                return StoredObject(meta=meta, chunks=chunks)
        raise StorageUnavailable(
            f"file {file_id} of session {session_id} kept changing while being opened; retry"
        )

    def stat(self, session_id: str, file_id: str) -> FileMeta:
        """The metadata of one file."""
        directory = self._session_dir(session_id)
        check_key_part(file_id, "file id")
        with self._edge(f"read file {file_id} of session {session_id}"):
            return self._read_meta(directory, session_id, file_id)

    def list(self, session_id: str) -> list[FileMeta]:
        """Every file of a session (empty for an unknown session), sorted by name."""
        directory = self._session_dir(session_id)
        with self._edge(f"list session {session_id}"):
            metas = list(self._metas(directory, session_id))
        return sorted(metas, key=lambda meta: (meta.name, meta.file_id))

    def delete(self, session_id: str, file_id: str, *, missing_ok: bool = False) -> None:
        """Remove a file; ``FileNotFound`` when it is not there (unless ``missing_ok``)."""
        directory = self._session_dir(session_id)
        check_key_part(file_id, "file id")
        with self._edge(f"delete file {file_id} of session {session_id}"):
            try:
                meta = self._read_meta(directory, session_id, file_id)
            except FileNotFound:
                if missing_ok:
                    return
                raise
            self._remove(directory, meta)

    def ping(self) -> None:
        """Check that the root exists (creating it) and is writable."""
        with self._edge("write a probe file"):
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.root)
            os.close(fd)
            os.unlink(probe)

    def expire(self, older_than: datetime) -> int:
        """Delete files last modified before ``older_than``, sweep leftovers and empty
        session folders; return how many files were deleted."""
        cutoff = as_utc(older_than)
        deleted = 0
        with self._edge("sweep expired files"):
            if not self.root.is_dir():
                return 0
            for directory in self._session_dirs():
                deleted += self._expire_session(directory, cutoff)
        return deleted

    # --- helpers ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _edge(self, action: str) -> Iterator[None]:
        """Translate OS errors into the store's errors, naming the root."""
        try:
            yield
        except PermissionError as exc:
            raise StoragePermissionDenied(
                f"cannot {action} under {self.root}: permission denied (check the owner "
                "and mode of the RCE_STORAGE folder)"
            ) from exc
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot {action} under {self.root}: {exc.strerror or exc}"
            ) from exc

    def _session_dir(self, session_id: str) -> Path:
        return self.root / check_key_part(session_id, "session id")

    def _make_session_dir(self, session_id: str) -> Path:
        directory = self._session_dir(session_id)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _commit(self, directory: Path, file_id: str, meta: FileMeta, version: str) -> None:
        """Point ``{file_id}.json`` at ``version`` (atomic), then drop the version it
        replaced. A version replaced by a racing writer is left to the sweeper."""
        previous = self._current_version(directory, file_id)
        document = json.dumps(meta_to_json(meta, version)).encode("utf-8")
        _write_file(directory, directory / f"{file_id}{_META_SUFFIX}", [document])
        _fsync_dir(directory)
        if previous is not None:
            (directory / f"{file_id}.{previous}").unlink(missing_ok=True)

    def _current_version(self, directory: Path, file_id: str) -> str | None:
        try:
            return self._read_meta(directory, directory.name, file_id).etag
        except (FileNotFound, StorageError):
            return None

    def _read_meta(self, directory: Path, session_id: str, file_id: str) -> FileMeta:
        try:
            raw = (directory / f"{file_id}{_META_SUFFIX}").read_bytes()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise _not_found(session_id, file_id) from exc
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise StorageError(f"metadata of {session_id}/{file_id} is not JSON") from exc
        return meta_from_json(session_id, file_id, document)

    def _metas(self, directory: Path, session_id: str) -> Iterator[FileMeta]:
        """The metadata of every committed file in ``directory`` (skipping races)."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            file_id = self._file_id_of_meta(entry.name)
            if file_id is None:
                continue
            try:
                yield self._read_meta(directory, session_id, file_id)
            except FileNotFound:
                continue

    @staticmethod
    def _file_id_of_meta(filename: str) -> str | None:
        if filename.startswith(_TEMP_PREFIX) or not filename.endswith(_META_SUFFIX):
            return None
        file_id = filename.removesuffix(_META_SUFFIX)
        return file_id if "." not in file_id else None

    def _remove(self, directory: Path, meta: FileMeta) -> None:
        try:
            (directory / f"{meta.file_id}{_META_SUFFIX}").unlink()
        except FileNotFoundError as exc:
            raise _not_found(meta.session_id, meta.file_id) from exc
        (directory / f"{meta.file_id}.{meta.etag}").unlink(missing_ok=True)

    def _session_dirs(self) -> builtins.list[Path]:
        return [
            Path(entry.path)
            for entry in os.scandir(self.root)
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
        ]

    def _expire_session(self, directory: Path, cutoff: datetime) -> int:
        deleted = 0
        for meta in list(self._metas(directory, directory.name)):
            if meta.last_modified < cutoff:
                try:
                    self._remove(directory, meta)
                    deleted += 1
                except FileNotFound:
                    continue
        self._sweep_leftovers(directory)
        with contextlib.suppress(OSError):
            directory.rmdir()  # only succeeds when nothing is left in it
        return deleted

    def _sweep_leftovers(self, directory: Path) -> None:
        """Remove stale temp files and data versions no metadata points at."""
        stale_before = time.time() - self.leftover_grace_s
        entries = list(os.scandir(directory))
        current = {
            file_id: self._current_version(directory, file_id)
            for file_id in filter(None, map(self._file_id_of_meta, (e.name for e in entries)))
        }
        for entry in entries:
            if self._is_leftover(entry.name, current) and _is_older(entry, stale_before):
                Path(entry.path).unlink(missing_ok=True)

    @staticmethod
    def _is_leftover(filename: str, current: dict[str, str | None]) -> bool:
        if filename.startswith(_TEMP_PREFIX):
            return True
        if filename.endswith(_META_SUFFIX) or "." not in filename:
            return False
        file_id, _, version = filename.partition(".")
        return current.get(file_id) != version
