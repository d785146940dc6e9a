"""Owner-checked file operations: the use cases behind upload, list, stat, download
and delete. Every route that touches a stored file goes through here, so the
ownership rules (``core.identity.Caller.may_access`` to read,
``Caller.may_modify`` and ``read_only`` to write) live in one place.

Writes never take another owner's object: an upload always gets a fresh random
id, an exec output an id derived from its owner (``core.ids.derived_id``), and a
delete needs the file's own owner and a writable file. No object id is ever
written by two owners, so an ownership check cannot be raced by a writer of
another owner.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from core.errors import AccessDenied, FileNotFound, ReadOnlyFile, SessionNotFound
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


def check_modify(caller: Caller, meta: FileMeta) -> FileMeta:
    """Refuse to replace or delete ``meta`` unless it is the caller's own, writable file."""
    _check_access(caller, meta)
    if meta.read_only:
        raise ReadOnlyFile(
            f"file {meta.file_id} is read-only: it cannot be changed or deleted (it "
            "expires with its session)"
        )
    if not caller.may_modify(meta.owner):
        raise AccessDenied(
            f"file {meta.file_id} belongs to another owner: only the owner who wrote it "
            "may change or delete it"
        )
    return meta


def check_session_access(caller: Caller, files: list[FileMeta]) -> None:
    """Refuse a session that holds files and none of them is the caller's to see."""
    if files and not any(caller.may_access(f.owner, f.kind) for f in files):
        raise AccessDenied("this session belongs to another owner")


def check_session_writable(caller: Caller, files: list[FileMeta]) -> None:
    """Refuse to write into a session (upload, exec outputs) the caller may not write.

    A named caller may write where it may read: its writes get ids of its own, so
    they never replace another owner's file. An anonymous key caller may write only
    into a session that holds nothing but anonymous files."""
    if caller.user is None:
        if not all(caller.may_modify(f.owner) for f in files):
            raise AccessDenied(
                "this session holds another owner's files: name the user (user_id or User-Id)"
            )
        return
    check_session_access(caller, files)


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


def _rank(caller: Caller, meta: FileMeta) -> tuple[bool, bool, datetime, str]:
    is_own = caller.may_modify(meta.owner)
    return (is_own, is_own and meta.kind is FileKind.USER, meta.last_modified, meta.file_id)


def prefer_own(caller: Caller, files: list[FileMeta]) -> list[FileMeta]:
    """``files`` ordered so that, among files of one name, the one a caller means
    comes last: its own user files (what its runs write), then its own shared
    files, then other owners' shared files; the newest among equals."""
    return sorted(files, key=lambda meta: _rank(caller, meta))


def find_by_name(store: SessionStore, caller: Caller, session_id: str, name: str) -> FileMeta:
    """A file of the session by its name (the original README's download route); of
    several with that name, the one ``prefer_own`` ranks first."""
    wanted = normalize_name(name)
    for meta in reversed(prefer_own(caller, list_files(store, caller, session_id))):
        if meta.name == wanted or meta.name.rsplit("/", 1)[-1] == wanted:
            return meta
    raise FileNotFound(f"no file named {wanted!r} in this session")


def delete_file(store: SessionStore, caller: Caller, session_id: str, file_id: str) -> None:
    """Delete a file that is the caller's own and not read-only (``check_modify``).

    The check reads the current metadata; no other owner can write this file id
    between that read and the delete (see the module docstring).
    """
    check_modify(caller, stat_file(store, caller, session_id, file_id))
    # Just read: no second existence check (gone meanwhile is deleted all the same).
    store.delete(session_id, file_id, missing_ok=True)


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
    """Store one uploaded file under a new random file id in ``session_id``: an upload
    never replaces a file, whoever owns it (a same-named file is another object)."""
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
