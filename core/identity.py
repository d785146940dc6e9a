"""Who is calling, and who owns a session or file.

An owner is a (tenant, user) pair. JWT callers are (``tenant_id``, ``sub``).
API-key callers are (``key``, the user they assert: ``User-Id``, ``user_id``,
``entity_id`` or ``id``). A key caller who asserts no user is *anonymous*: it owns
what it writes as (``key``, ``""``), may read a file of its tenant whose session (and
file) id it presents (legacy LibreChat downloads outputs and checks freshness this
way), and may write into a session only when every file there is anonymous.
Files of kind ``agent`` or ``skill`` are shared within their tenant: readable
by every caller of the tenant. Writing is narrower: only a file's own owner may
replace or delete it (``Caller.may_modify``), and a read-only file is never
replaced or deleted through the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

KEY_TENANT = "key"


class FileKind(StrEnum):
    """What a stored file belongs to, as LibreChat says it in ``kind``."""

    USER = "user"
    AGENT = "agent"
    SKILL = "skill"


@dataclass(frozen=True, slots=True)
class Owner:
    """The owner recorded on a stored file."""

    tenant: str
    user: str


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated identity of one request.

    ``user`` is None for a key caller who asserted no user (anonymous): it may read
    files of its tenant by id, but modify only anonymous ones (``may_modify``).
    """

    tenant: str
    user: str | None

    def as_owner(self) -> Owner:
        """The owner to record on files this caller creates."""
        return Owner(self.tenant, self.user or "")

    def may_access(self, owner: Owner, kind: FileKind) -> bool:
        """True when this caller may read, list or delete a file of ``owner``."""
        if owner.tenant != self.tenant:
            return False
        if self.user is None or kind is not FileKind.USER:
            return True
        return owner.user in ("", self.user)

    def may_modify(self, owner: Owner) -> bool:
        """True when this caller is ``owner`` itself: the only caller that may replace
        or delete that owner's file. Sharing a file (``agent``/``skill``) or seeing it
        through the whole key tenant grants reading, never writing."""
        return owner == self.as_owner()
