"""``InMemorySessionStore``: the fake shipped beside the port.

It keeps every file in ``objects`` so tests can assert on state, e.g.
``store.objects[("s1", "f1")][1] == b"..."``. It behaves like the real adapters
(the contract tests run against it too) but holds whole files in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from core.errors import FileNotFound
from storage._codec import as_utc, build_meta, check_key_part, check_new_file, utc_now
from storage.base import CHUNK_SIZE, FileMeta, NewFile, StoredObject


def _not_found(session_id: str, file_id: str) -> FileNotFound:
    return FileNotFound(f"no file {file_id} in session {session_id}")


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK_SIZE):
        yield data[start : start + CHUNK_SIZE]


class InMemorySessionStore:
    """A thread-safe ``SessionStore`` in a dict: ``objects[(session_id, file_id)]``."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[FileMeta, bytes]] = {}
        self._lock = threading.Lock()
        self._versions = itertools.count(1)

    def put(self, new: NewFile, data: BinaryIO) -> FileMeta:
        """Store ``data`` under (session, file id), replacing any previous version."""
        check_new_file(new)
        content = data.read()
        sha256 = new.sha256 or hashlib.sha256(content).hexdigest()
        with self._lock:
            meta = build_meta(
                new,
                size=len(content),
                sha256=sha256,
                etag=str(next(self._versions)),
                at=utc_now(),
            )
            self.objects[(new.session_id, new.file_id)] = (meta, content)
        return meta

    def open(self, session_id: str, file_id: str) -> StoredObject:
        """Open a file for streaming its bytes out."""
        meta, content = self._get(session_id, file_id)
        return StoredObject(meta=meta, chunks=_chunks(content))

    def stat(self, session_id: str, file_id: str) -> FileMeta:
        """The metadata of one file."""
        return self._get(session_id, file_id)[0]

    def list(self, session_id: str) -> list[FileMeta]:
        """Every file of a session, sorted by name."""
        check_key_part(session_id, "session id")
        with self._lock:
            metas = [meta for (sid, _), (meta, _) in self.objects.items() if sid == session_id]
        return sorted(metas, key=lambda meta: (meta.name, meta.file_id))

    def delete(self, session_id: str, file_id: str, *, missing_ok: bool = False) -> None:
        """Remove a file; ``FileNotFound`` when it is not there (unless ``missing_ok``)."""
        check_key_part(session_id, "session id")
        check_key_part(file_id, "file id")
        with self._lock:
            if self.objects.pop((session_id, file_id), None) is None and not missing_ok:
                raise _not_found(session_id, file_id)

    def ping(self) -> None:
        """Always answers."""

    def expire(self, older_than: datetime) -> int:
        """Delete files last modified before ``older_than``; return how many."""
        cutoff = as_utc(older_than)
        with self._lock:
            old = [key for key, (meta, _) in self.objects.items() if meta.last_modified < cutoff]
            for key in old:
                del self.objects[key]
        return len(old)

    def _get(self, session_id: str, file_id: str) -> tuple[FileMeta, bytes]:
        check_key_part(session_id, "session id")
        check_key_part(file_id, "file id")
        with self._lock:
            found = self.objects.get((session_id, file_id))
        if found is None:
            raise _not_found(session_id, file_id)
        return found
