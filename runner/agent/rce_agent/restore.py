"""Unpacking the job's tar of input files into the workspace, never following a link."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
from typing import IO, Any, cast

from rce_agent.wire import CHUNK, ChunkedReader, write_all

MAX_NOTICES = 20


def safe_relative(name: object) -> str | None:
    """``name`` as a normalized relative path under the workspace, or None."""
    if not isinstance(name, str) or not name or "\x00" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return name


def _open_parent(root_fd: int, parts: list[str]) -> int:
    """A directory fd for ``parts[:-1]`` under ``root_fd``, created as needed."""
    fd = os.dup(root_fd)
    for part in parts[:-1]:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = sub
    return fd


def write_member(root_fd: int, name: str, source: Any) -> str:
    """Create ``name`` (exclusively, no links) under ``root_fd`` from ``source``; its sha256."""
    parts = name.split("/")
    parent = _open_parent(root_fd, parts)
    try:
        out = os.open(
            parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=parent
        )
        digest = hashlib.sha256()
        try:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                write_all(out, chunk)
        except OSError:
            os.close(out)
            os.unlink(parts[-1], dir_fd=parent)
            raise
        os.close(out)
        return digest.hexdigest()
    finally:
        os.close(parent)


def restore(workdir: str, notices: list[str], fd: int = 0) -> dict[str, str]:
    """Unpack the chunked tar stream on ``fd`` into ``workdir`` and read it to its
    zero-length end; return {name: sha256}."""
    manifest: dict[str, str] = {}
    source = ChunkedReader(fd)
    root_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with tarfile.open(fileobj=cast("IO[bytes]", source), mode="r|") as tar:
            for member in tar:
                name = safe_relative(member.name)
                if name is None or not member.isreg():
                    if member.isdir():
                        continue
                    if len(notices) < MAX_NOTICES:
                        notices.append(f"rce: input {member.name[:200]!r} was not restored")
                    continue
                try:
                    manifest[name] = write_member(root_fd, name, tar.extractfile(member))
                except OSError as exc:
                    if len(notices) < MAX_NOTICES:
                        notices.append(
                            f"rce: could not restore input file {name!r}: {exc.strerror}"
                        )
        source.finish()
    finally:
        os.close(root_fd)
    return manifest
