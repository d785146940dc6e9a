"""The one file-name policy: relative POSIX paths under /mnt/data.

Names enter from uploads, from ``files[]`` refs and from the sandbox itself (the
files a program writes). Every edge calls this module:

- ``normalize_name`` for names a client sends (upload, refs, download by name): it
  canonicalizes (``./a``, ``/mnt/data/a``, ``a//b``, NFC) and then applies the rules.
- ``name_problem`` / ``check_name`` for names that must already be canonical (the
  files a program left in its workspace): nothing is rewritten, so what is stored
  is exactly what the next run finds. An output that breaks a rule is skipped with
  the reason ``name_problem`` gives; it never fails the request.

The rules: not empty; relative (no leading ``/``); no ``.``, ``..`` or empty
components; no backslash; no control, invisible-format (bidi overrides, zero-width)
or line/paragraph-separator characters; valid Unicode; at most
``MAX_COMPONENT_BYTES`` per component and ``MAX_NAME_BYTES`` in all (UTF-8).
"""

from __future__ import annotations

import unicodedata

from core.errors import InvalidRequest

#: Longest name, in UTF-8 bytes (the stores keep names up to this length too).
MAX_NAME_BYTES = 1024
#: Longest path component, in UTF-8 bytes (the Linux ``NAME_MAX``).
MAX_COMPONENT_BYTES = 255
WORKSPACE = "/mnt/data"
#: Longest name quoted back in a message or a skipped-file entry, in characters.
MAX_DISPLAY_CHARS = 300

# Cc: control characters (NUL, newlines, ESC); Cf: invisible format characters,
# including the bidi overrides behind "right-to-left" name tricks and zero-width
# joiners; Cs: lone surrogates; Zl/Zp: line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _is_refused_char(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES


def _character_problem(name: str) -> str | None:
    for char in name:
        if _is_refused_char(char):
            return f"file name contains a control or invisible character (U+{ord(char):04X})"
    if "\\" in name:
        return "file name contains a backslash (use '/' between directories)"
    return None


def _shape_problem(name: str) -> str | None:
    if name.startswith("/"):
        return "file name must be relative to /mnt/data, not an absolute path"
    parts = name.split("/")
    if any(part == ".." for part in parts):
        return "file name must not contain '..' components"
    if any(part in ("", ".") for part in parts):
        return "file name must not contain empty or '.' components"
    if any(len(part.encode()) > MAX_COMPONENT_BYTES for part in parts):
        return f"a file name component is longer than {MAX_COMPONENT_BYTES} bytes"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"file name is longer than {MAX_NAME_BYTES} bytes"
    return None


def name_problem(name: object) -> str | None:
    """Why ``name`` breaks the policy, or None for an acceptable canonical name.

    Nothing is rewritten: ``a//b``, ``./a`` and ``/mnt/data/a`` are problems here
    (``normalize_name`` is the lenient form for client input).
    """
    if not isinstance(name, str):
        return "file name is not text"
    if not name:
        return "file name is empty"
    return _character_problem(name) or _shape_problem(name)


def check_name(name: str) -> str:
    """Return ``name`` unchanged if it obeys the policy, else ``InvalidRequest``."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidRequest(problem)
    return name


def normalize_name(raw: str) -> str:
    """The canonical relative path for ``raw``, or ``InvalidRequest`` saying why not.

    Accepts ``a.csv``, ``dir/b.png``, ``./c.txt``, ``dir//e.txt`` and
    ``/mnt/data/d.txt`` (the workspace prefix is dropped); the result is NFC. Then
    the rules of ``check_name`` apply.
    """
    name = unicodedata.normalize("NFC", raw.strip())
    if name.startswith(WORKSPACE + "/"):
        name = name[len(WORKSPACE) + 1 :]
    problem = _character_problem(name)
    if problem is not None:
        raise InvalidRequest(problem)
    if name.startswith("/"):
        raise InvalidRequest("file name must be relative to /mnt/data, not an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts:
        raise InvalidRequest("file name is empty")
    return check_name("/".join(parts))


def display_name(name: str) -> str:
    """``name`` safe to show in a message or a JSON answer: refused characters and
    backslashes escaped (``\\u202e``), at most ``MAX_DISPLAY_CHARS`` characters."""
    shown = "".join(
        f"\\u{ord(char):04x}" if _is_refused_char(char) else "\\\\" if char == "\\" else char
        for char in name[: MAX_DISPLAY_CHARS + 1]
    )
    if len(shown) > MAX_DISPLAY_CHARS:
        shown = shown[: MAX_DISPLAY_CHARS - 3] + "..."
    return shown
