"""Session and file ids: 21 random characters of ``[A-Za-z0-9_-]``, as nanoid makes them."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets

from core.errors import InvalidId
from core.identity import Owner

ID_LENGTH = 21
_ALPHABET = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{21}$")


def new_id() -> str:
    """A fresh random id (126 bits of entropy)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def is_valid_id(value: str) -> bool:
    """True when ``value`` has the shape of an id we issue."""
    return bool(_ID_RE.fullmatch(value))


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` unchanged, or raise ``InvalidId`` naming ``what``."""
    if not is_valid_id(value):
        raise InvalidId(f"{what} must be {ID_LENGTH} characters of [A-Za-z0-9_-]")
    return value


def derived_id(session_id: str, owner: Owner, name: str) -> str:
    """The file id of a new exec output named ``name`` in ``session_id``, written by
    ``owner``.

    Deterministic, so concurrent execs of one owner that create the same new name in
    one session write the same object (the last whole version wins) instead of
    duplicates. The owner is part of it, so two owners never write one object: a
    same-named output of another caller is another file, and no check-then-write
    race can hand one owner's object to another.
    """
    key = json.dumps([session_id, owner.tenant, owner.user, name], ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest).decode()[:ID_LENGTH]
