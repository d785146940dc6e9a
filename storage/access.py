"""Owner-checked file operations: the use cases behind upload, list, stat, download
and delete. Every route that touches a stored file goes through here, so the
ownership rule (``core.identity.Caller.may_access``) lives in one place.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import BinaryIO

from core.errors import AccessDenied, FileNotFound, SessionNotFound
from core.identity import Caller, FileKind
from core.ids import check_id, new_id
from core.names import normalize_name
from storage.base import FileMeta, NewFile, SessionStore, StoredObject


def guess_content_type(name: str) -> str:
    """The MIME type for a file name, by extension."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _check_access(caller: Caller, meta: FileMeta) -> FileMeta:
    if not caller.may_access(meta.owner, meta.kind):
        raise AccessDenied("this file belongs to another owner")
    return meta


def check_session_access(caller: Caller, files: list[FileMeta]) -> None:
    """Refuse a session that holds files and none of them is the caller's to see."""
    if files and not any(caller.may_access(f.owner, f.kind) for f in files):
        raise AccessDenied("this session belongs to another owner")


def check_session_writable(caller: Caller, files: list[FileMeta]) -> None:
    """Refuse a session that holds files and none of them is the caller's to modify
    (an anonymous key caller: any file that is not anonymous)."""
    if files and not any(caller.may_modify(f.owner, f.kind) for f in files):
        raise AccessDenied("this session belongs to another owner")


def stat_file(store: SessionStore, caller: Caller, session_id: str, file_id: str) -> FileMeta:
    """Metadata of one file the caller may see."""
    check_id(session_id, "session_id")
    check_id(file_id, "file_id")
    return _check_access(caller, store.stat(session_id, file_id))


def list_files(store: SessionStore, caller: Caller, session_id: str) -> list[FileMeta]:
    """The files of a session the caller may see; ``SessionNotFound`` when it has none."""
    check_id(session_id, "session_id")
    files = store.list(session_id)
    if not files:
        raise SessionNotFound("no such session (it never existed or has expired)")
    check_session_access(caller, files)
    return [f for f in files if caller.may_access(f.owner, f.kind)]


def open_file(store: SessionStore, caller: Caller, session_id: str, file_id: str) -> StoredObject:
    """Open a file the caller may read, for streaming (one store call: the opened
    version's own metadata is what the ownership check reads)."""
    check_id(session_id, "session_id")
    check_id(file_id, "file_id")
    obj = store.open(session_id, file_id)
    if not caller.may_access(obj.meta.owner, obj.meta.kind):
        obj.close()
        raise AccessDenied("this file belongs to another owner")
    return obj


def find_by_name(store: SessionStore, caller: Caller, session_id: str, name: str) -> FileMeta:
    """A file of the session by its name (the original README's download route)."""
    wanted = normalize_name(name)
    for meta in list_files(store, caller, session_id):
        if meta.name == wanted or meta.name.rsplit("/", 1)[-1] == wanted:
            return meta
    raise FileNotFound(f"no file named {wanted!r} in this session")


def delete_file(store: SessionStore, caller: Caller, session_id: str, file_id: str) -> None:
    """Delete a file the caller may modify."""
    meta = stat_file(store, caller, session_id, file_id)
    if not caller.may_modify(meta.owner, meta.kind):
        raise AccessDenied("this file belongs to another owner: name the user (User-Id)")
    store.delete(session_id, file_id)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One uploaded file: its name as sent and its (spooled) bytes."""

    filename: str
    data: BinaryIO
    content_type: str | None = None


def resolve_upload_session(store: SessionStore, caller: Caller, session_id: str | None) -> str:
    """The session an upload goes to: the given one (if the caller may write it) or a new one."""
    if not session_id:
        return new_id()
    check_id(session_id, "session_id")
    check_session_writable(caller, store.list(session_id))
    return session_id


def upload_file(
    store: SessionStore,
    caller: Caller,
    session_id: str,
    incoming: Incoming,
    *,
    kind: FileKind = FileKind.USER,
    read_only: bool = False,
) -> FileMeta:
    """Store one uploaded file under a new file id in ``session_id``."""
    name = normalize_name(incoming.filename)
    content_type = incoming.content_type
    if not content_type or content_type == "application/octet-stream":
        content_type = guess_content_type(name)
    new = NewFile(
        session_id=session_id,
        file_id=new_id(),
        name=name,
        owner=caller.as_owner(),
        kind=kind,
        content_type=content_type,
        read_only=read_only,
    )
    return store.put(new, incoming.data)
