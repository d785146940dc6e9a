"""Walking the workspace after the run: new and changed files go back as outputs.

Links are never followed, special files are skipped with a reason, an unchanged
input (same sha256) is not sent again, and the counts and sizes are capped.
"""

from __future__ import annotations

import os
import stat

from rce_agent.wire import CHUNK, send_frame, send_json

MAX_SKIPPED = 1000
MAX_ENTRIES = 200_000


def file_digest(fd: int) -> str:
    """The sha256 of the rest of ``fd``."""
    import hashlib  # only when an input must be compared: it loads OpenSSL

    digest = hashlib.sha256()
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


def send_file(fd: int, name: str, size: int) -> None:
    """An F frame, then D frames totalling exactly ``size`` bytes."""
    send_json(b"F", {"name": name, "size": size})
    os.lseek(fd, 0, os.SEEK_SET)
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(CHUNK, remaining))
        if not chunk:
            chunk = b"\x00" * min(CHUNK, remaining)  # shrank: keep the framing intact
        send_frame(b"D", chunk)
        remaining -= len(chunk)


def open_nofollow(name: str, flags: int, dir_fd: int, mode_bits: int) -> int:
    """``os.open`` without following a link; a mode the program removed is restored.

    The agent owns every file of the workspace and no program runs any more when
    it collects, so giving back read (and search) permission is safe.
    """
    try:
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=dir_fd)
    except PermissionError:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise
        os.chmod(name, stat.S_IMODE(st.st_mode) | mode_bits, dir_fd=dir_fd)
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=dir_fd)


def open_dir(workdir: str, prefix: str) -> int:
    """A directory fd for ``prefix`` under ``workdir``, never following a link."""
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    for part in prefix.split("/"):
        if not part:
            continue
        try:
            sub = open_nofollow(part, os.O_RDONLY | os.O_DIRECTORY, fd, 0o500)
        finally:
            os.close(fd)
        fd = sub
    return fd


class Collector:
    """Walks the workspace without following links and sends new or changed files."""

    def __init__(
        self, workdir: str, before: dict[str, str], max_file_bytes: int, max_files: int
    ) -> None:
        self.workdir = workdir
        self.before = before
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.sent = 0
        self.seen: set[str] = set()
        self.skipped: list[list[str]] = []
        self.skipped_more = 0
        self.visited = 0

    def skip(self, name: str, reason: str) -> None:
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append([name, reason])
        else:
            self.skipped_more += 1

    def run(self) -> list[str]:
        """Send every new or changed file; return the input names that are gone."""
        stack = [""]
        while stack:
            prefix = stack.pop()
            try:
                dir_fd = open_dir(self.workdir, prefix)
            except OSError as exc:
                self.skip(prefix.rstrip("/"), f"unreadable directory: {exc.strerror}")
                continue
            try:
                with os.scandir(dir_fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
                subdirs = []
                for entry in entries:
                    self.visited += 1
                    if self.visited > MAX_ENTRIES:
                        self.skip(prefix + entry.name, f"more than {MAX_ENTRIES} entries")
                        return self.deleted()
                    sub = self.visit(dir_fd, entry, prefix)
                    if sub is not None:
                        subdirs.append(sub)
                stack.extend(reversed(subdirs))
            except OSError as exc:
                self.skip(prefix.rstrip("/") or ".", f"unreadable directory: {exc.strerror}")
            finally:
                os.close(dir_fd)
        return self.deleted()

    def deleted(self) -> list[str]:
        return sorted(name for name in self.before if name not in self.seen)

    def visit(self, dir_fd: int, entry: os.DirEntry[str], prefix: str) -> str | None:
        rel = prefix + entry.name
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            self.skip(shown, "name is not valid UTF-8")
            return None
        try:
            if entry.is_symlink():
                self.skip(rel, "symbolic link (not followed)")
                return None
            if entry.is_dir(follow_symlinks=False):
                return rel + "/"
            if not entry.is_file(follow_symlinks=False):
                self.skip(rel, "not a regular file (device, fifo or socket)")
                return None
            self.visit_file(dir_fd, entry.name, rel)
        except OSError as exc:
            self.skip(rel, f"unreadable: {exc.strerror}")
        return None

    def visit_file(self, dir_fd: int, name: str, rel: str) -> None:
        fd = open_nofollow(name, os.O_RDONLY | os.O_NONBLOCK, dir_fd, 0o400)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.skip(rel, "not a regular file")
                return
            self.seen.add(rel)
            if (
                rel in self.before
                and st.st_size <= self.max_file_bytes
                and file_digest(fd) == self.before[rel]
            ):
                return
            if st.st_size > self.max_file_bytes:
                self.skip(
                    rel, f"larger than the {self.max_file_bytes} byte limit (RCE_MAX_FILE_BYTES)"
                )
                return
            if self.sent >= self.max_files:
                self.skip(rel, f"more than {self.max_files} output files (RCE_MAX_FILES)")
                return
            self.sent += 1
            send_file(fd, rel, st.st_size)
        finally:
            os.close(fd)
