"""Who is calling, and who owns a session or file.

An owner is a (tenant, user) pair. JWT callers are (``tenant_id``, ``sub``).
API-key callers are (``key``, the user they assert: ``User-Id``, ``user_id``,
``entity_id`` or ``id``). A key caller who asserts no user is *anonymous*: it owns
what it writes as (``key``, ``""``), may read a file of its tenant whose session (and
file) id it presents (legacy LibreChat downloads outputs and checks freshness this
way), and may write, overwrite or delete only anonymous files.
Files of kind ``agent`` or ``skill`` are shared within their tenant.
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

    def may_modify(self, owner: Owner, kind: FileKind) -> bool:
        """True when this caller may overwrite or delete a file of ``owner`` (or run an
        exec that writes into its session). Anonymous callers: anonymous files only."""
        if self.user is None:
            return owner == Owner(self.tenant, "")
        return self.may_access(owner, kind)
