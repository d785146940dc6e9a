"""Pure helpers shared by the store adapters: key checks, name checks, hashing
readers and the two metadata encodings (S3 user metadata and the folder store's
JSON document).

S3 user metadata is ASCII and limited to 2 KB, so free text (the file name, the
owner) is stored as unpadded base64url of its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

from core.errors import InvalidId, InvalidRequest, StorageError
from core.identity import FileKind, Owner

# The one name-length limit (core.names): every store keeps names that long.
from core.names import MAX_NAME_BYTES as MAX_NAME_BYTES
from storage.base import CHUNK_SIZE, FileMeta, NewFile

#: S3's limit on user-defined metadata (keys plus values, in bytes).
S3_METADATA_LIMIT = 2048

_KEY_PART_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A MIME type as HTTP carries it: printable ASCII, no line breaks.
_CONTENT_TYPE_RE = re.compile(r"[\x20-\x7e]{1,255}")
_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


def check_key_part(value: str, what: str) -> str:
    """Return ``value`` when it is safe as one path segment / key part.

    Ids are ``[A-Za-z0-9_-]`` (1 to 128 characters): never ``/``, ``.`` or ``..``.
    """
    if not _KEY_PART_RE.fullmatch(value):
        raise InvalidId(f"{what} must be 1 to 128 characters of [A-Za-z0-9_-]")
    return value


def check_name(name: str) -> str:
    """Return ``name`` when every store can keep it, else raise ``InvalidRequest``."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRequest("the file name is not valid Unicode text") from exc
    if size == 0:
        raise InvalidRequest("the file name is empty")
    if size > MAX_NAME_BYTES:
        raise InvalidRequest(f"the file name is over {MAX_NAME_BYTES} bytes of UTF-8")
    return name


def check_new_file(new: NewFile) -> None:
    """Validate the parts of ``new`` that become keys, paths or metadata."""
    check_key_part(new.session_id, "session id")
    check_key_part(new.file_id, "file id")
    check_name(new.name)
    if not _CONTENT_TYPE_RE.fullmatch(new.content_type):
        raise InvalidRequest("the content type must be 1 to 255 printable ASCII characters")


def encode_text(value: str) -> str:
    """Unpadded base64url of the UTF-8 bytes: ASCII safe for S3 metadata."""
    return base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")


def decode_text(value: str) -> str:
    """Inverse of ``encode_text``; ``ValueError`` on anything it did not produce."""
    if not _BASE64URL_RE.fullmatch(value):
        raise ValueError(f"not base64url UTF-8 text: {value!r}")
    padded = value + "=" * (-len(value) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError) as exc:
        raise ValueError(f"not base64url UTF-8 text: {value!r}") from exc


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as aware UTC (a naive value is taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class HashingReader:
    """Reads another binary stream, counting bytes and hashing them with sha256.

    It is deliberately not seekable, so consumers read it once, in bounded chunks.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (``-1``: to EOF) and account for them."""
        data = self._source.read(size)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    def readable(self) -> bool:
        """Always True: this is a reader."""
        return True

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the rest of the stream in chunks of at most ``chunk_size``."""
        while chunk := self.read(chunk_size):
            yield chunk

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything read so far."""
        return self._hash.hexdigest()


# --- S3 user metadata ----------------------------------------------------------------


def s3_metadata(new: NewFile, sha256: str) -> dict[str, str]:
    """The S3 user metadata of ``new``; ``InvalidRequest`` when over 2 KB."""
    metadata = {
        "name": encode_text(new.name),
        "owner-tenant": encode_text(new.owner.tenant),
        "owner-user": encode_text(new.owner.user),
        "kind": new.kind.value,
        "sha256": sha256,
        "read-only": "1" if new.read_only else "0",
    }
    size = sum(len(key) + len(value) for key, value in metadata.items())
    if size > S3_METADATA_LIMIT:
        raise InvalidRequest(
            f"the file name and owner take {size} bytes of S3 metadata, over S3's "
            f"{S3_METADATA_LIMIT}-byte limit: use a shorter file name"
        )
    return metadata


def meta_from_s3(
    session_id: str,
    file_id: str,
    metadata: Mapping[str, str],
    *,
    content_type: str,
    size: int,
    last_modified: datetime,
    etag: str,
) -> FileMeta:
    """Rebuild a ``FileMeta`` from what S3 returns for an object."""
    lower = {key.lower(): value for key, value in metadata.items()}
    try:
        return FileMeta(
            session_id=session_id,
            file_id=file_id,
            name=decode_text(lower["name"]) if "name" in lower else file_id,
            content_type=content_type or "application/octet-stream",
            size=size,
            sha256=lower.get("sha256", ""),
            last_modified=as_utc(last_modified),
            owner=Owner(
                decode_text(lower.get("owner-tenant", "")),
                decode_text(lower.get("owner-user", "")),
            ),
            kind=FileKind(lower.get("kind", FileKind.USER.value)),
            read_only=lower.get("read-only", "0") == "1",
            etag=etag.strip('"'),
        )
    except ValueError as exc:
        raise StorageError(
            f"object {session_id}/{file_id} has metadata this service did not write: {exc}"
        ) from exc


# --- folder store JSON document --------------------------------------------------------


def meta_to_json(meta: FileMeta, version: str) -> dict[str, Any]:
    """The folder store's metadata document; ``version`` names the data file."""
    return {
        "version": version,
        "name": meta.name,
        "content_type": meta.content_type,
        "size": meta.size,
        "sha256": meta.sha256,
        "last_modified": meta.last_modified.isoformat(),
        "owner": {"tenant": meta.owner.tenant, "user": meta.owner.user},
        "kind": meta.kind.value,
        "read_only": meta.read_only,
    }


def meta_from_json(session_id: str, file_id: str, doc: Mapping[str, Any]) -> FileMeta:
    """Inverse of ``meta_to_json`` (the etag is the data file's version)."""
    try:
        return FileMeta(
            session_id=session_id,
            file_id=file_id,
            name=str(doc["name"]),
            content_type=str(doc["content_type"]),
            size=int(doc["size"]),
            sha256=str(doc["sha256"]),
            last_modified=as_utc(datetime.fromisoformat(str(doc["last_modified"]))),
            owner=Owner(str(doc["owner"]["tenant"]), str(doc["owner"]["user"])),
            kind=FileKind(str(doc["kind"])),
            read_only=bool(doc["read_only"]),
            etag=str(doc["version"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(
            f"metadata of {session_id}/{file_id} is unreadable: {exc!r}; delete that file"
        ) from exc


def build_meta(new: NewFile, *, size: int, sha256: str, etag: str, at: datetime) -> FileMeta:
    """The ``FileMeta`` of ``new`` once its bytes are stored."""
    return FileMeta(
        session_id=new.session_id,
        file_id=new.file_id,
        name=new.name,
        content_type=new.content_type,
        size=size,
        sha256=sha256,
        last_modified=at,
        owner=new.owner,
        kind=new.kind,
        read_only=new.read_only,
        etag=etag,
    )


class ClosingChunks:
    """An iterator over byte chunks that owns a resource and releases it once.

    ``close()`` works whether or not iteration started (a plain generator's
    ``finally`` would not run if it never started); exhausting it also closes.
    """

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._close = close
        self._closed = False

    def __iter__(self) -> ClosingChunks:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the resource (idempotent)."""
        if not self._closed:
            self._closed = True
            close_chunks = getattr(self._chunks, "close", None)
            if callable(close_chunks):
                close_chunks()
            self._close()
