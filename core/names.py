"""File names inside the sandbox workspace: relative POSIX paths under /mnt/data.

Names arrive from uploads, from ``files[]`` refs and from the sandbox itself; every
one passes ``normalize_name`` before it is stored or restored.
"""

from __future__ import annotations

import posixpath
import unicodedata

from core.errors import InvalidRequest

MAX_NAME_BYTES = 1024
MAX_COMPONENT_BYTES = 255
WORKSPACE = "/mnt/data"


def _check_characters(name: str) -> None:
    for char in name:
        # Cc: control characters (NUL, newlines); Cf: invisible format characters,
        # including the bidi overrides behind "right-to-left" name tricks.
        if unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise InvalidRequest(
                f"file name contains a control or invisible character (U+{ord(char):04X})"
            )


def normalize_name(raw: str) -> str:
    """The canonical relative path for ``raw``, or ``InvalidRequest`` saying why not.

    Accepts ``a.csv``, ``dir/b.png``, ``./c.txt`` and ``/mnt/data/d.txt`` (the
    workspace prefix is dropped). Refuses absolute paths elsewhere, ``..``
    components, empty names, control and bidi characters, and over-long names.
    """
    name = unicodedata.normalize("NFC", raw.strip())
    if name.startswith(WORKSPACE + "/"):
        name = name[len(WORKSPACE) + 1 :]
    if not name:
        raise InvalidRequest("file name is empty")
    _check_characters(name)
    if name.startswith("/") or name.startswith("\\"):
        raise InvalidRequest("file name must be relative to /mnt/data, not an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidRequest("file name is empty")
    if any(p == ".." for p in parts):
        raise InvalidRequest("file name must not contain '..' components")
    if any(len(p.encode()) > MAX_COMPONENT_BYTES for p in parts):
        raise InvalidRequest(f"a file name component is longer than {MAX_COMPONENT_BYTES} bytes")
    normalized = posixpath.join(*parts)
    if len(normalized.encode()) > MAX_NAME_BYTES:
        raise InvalidRequest(f"file name is longer than {MAX_NAME_BYTES} bytes")
    return normalized
