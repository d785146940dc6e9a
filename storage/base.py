"""The ``SessionStore`` port and its value types.

A session is nothing but its files in the store: the API keeps no session state, so
any replica can serve any session. Each stored file carries its metadata
(``FileMeta``); the bytes are streamed in and out, never held whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

from core.identity import FileKind, Owner

#: Bytes per chunk when streaming a file out of a store.
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the store knows about one file, besides its bytes."""

    session_id: str
    file_id: str
    #: The original name: a relative POSIX path, possibly nested, any Unicode.
    name: str
    content_type: str
    size: int
    #: Hex sha256 of the bytes.
    sha256: str
    last_modified: datetime
    owner: Owner
    kind: FileKind = FileKind.USER
    read_only: bool = False
    #: Opaque version tag of the stored object (S3 ETag, or the folder store's own).
    etag: str = ""

    @property
    def object_name(self) -> str:
        """``{session_id}/{file_id}{.ext}``: the name LibreChat's listings expect."""
        base = self.name.rsplit("/", 1)[-1]
        ext = ""
        if "." in base.lstrip("."):
            ext = "." + base.rsplit(".", 1)[-1]
        return f"{self.session_id}/{self.file_id}{ext}"


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file to put: everything but what the store computes (size, digest, time)."""

    session_id: str
    file_id: str
    name: str
    owner: Owner
    kind: FileKind = FileKind.USER
    content_type: str = "application/octet-stream"
    read_only: bool = False
    #: The sha256 when the caller already knows it; the store checks nothing with it.
    sha256: str | None = None


@dataclass(slots=True)
class StoredObject:
    """An open stored file: its metadata and an iterator over its bytes.

    The caller must exhaust or ``close()`` it; it owns the underlying stream.
    """

    meta: FileMeta
    chunks: Iterator[bytes]

    def close(self) -> None:
        """Release the underlying stream (idempotent)."""
        close = getattr(self.chunks, "close", None)
        if callable(close):
            close()


class SessionStore(Protocol):
    """Where session files live. Every adapter has the same observable behaviour
    (``tests/contract/test_session_store.py`` runs against all of them).

    Errors: ``FileNotFound`` for a missing file, ``StorageUnavailable`` when the
    backend cannot be reached after bounded retries, ``StoragePermissionDenied``
    when it refuses our credentials. No third-party exception escapes.

    Every store accepts the same inputs: session and file ids of 1 to 128
    characters of ``[A-Za-z0-9_-]`` (else ``InvalidId``), names of 1 to 1024 bytes
    of UTF-8 and a printable-ASCII content type (else ``InvalidRequest``).
    All methods are safe to call from many threads at once.
    """

    def put(self, new: NewFile, data: BinaryIO) -> FileMeta:
        """Store ``data`` (read to EOF, streamed) under (session, file id).

        Atomic: readers see the old version or the whole new one, never a part.
        An existing file with that id is replaced.
        """
        ...

    def open(self, session_id: str, file_id: str) -> StoredObject:
        """Open a file for streaming its bytes out."""
        ...

    def stat(self, session_id: str, file_id: str) -> FileMeta:
        """The metadata of one file."""
        ...

    def list(self, session_id: str) -> list[FileMeta]:
        """Every file of a session (empty for an unknown session), sorted by name."""
        ...

    def delete(self, session_id: str, file_id: str, *, missing_ok: bool = False) -> None:
        """Remove a file. Raises ``FileNotFound`` when it is not there, unless
        ``missing_ok`` (then a missing file is not an error, and a store that would
        need an extra request to tell, like S3, does not make it)."""
        ...

    def ping(self) -> None:
        """Raise ``StorageError`` unless the backend answers (readiness)."""
        ...

    def expire(self, older_than: datetime) -> int:
        """Delete files last modified before ``older_than``; return how many.

        Stores with native expiry (an S3 lifecycle rule) may do nothing here.
        """
        ...
