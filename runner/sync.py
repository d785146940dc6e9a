"""The functional core of restore and sync: pure planning over manifests.

``plan_restore`` decides which stored files go into the workspace and under which
names; ``plan_sync`` decides what to upload to and delete from the exec's session
once the run is over. Both take plain data and return plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StoredRef:
    """Where a workspace file came from in the store."""

    session_id: str
    file_id: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Upload:
    """Store the output ``name`` as ``file_id`` in the exec session (new or replaced)."""

    name: str
    file_id: str
    replaces: bool


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``file_id`` from the exec session: the program deleted ``name``."""

    name: str
    file_id: str


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """Everything the shell must do after a run, and what it reports back."""

    uploads: list[Upload] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    #: Outputs whose bytes the session already holds under that name: no upload.
    unchanged: list[str] = field(default_factory=list)
    #: Input names the program deleted (reported as ``deleted_files``).
    deleted_names: list[str] = field(default_factory=list)
    #: Read-only inputs the program changed: never stored, answered as the original.
    kept_read_only: list[str] = field(default_factory=list)


def plan_restore(
    session_files: Mapping[str, StoredRef], refs: Mapping[str, StoredRef]
) -> dict[str, StoredRef]:
    """Workspace name -> stored file. Explicit refs win over same-named session files."""
    plan = dict(session_files)
    plan.update(refs)
    return plan


def plan_sync(
    session_id: str,
    session_files: Mapping[str, StoredRef],
    outputs: Mapping[str, str],
    deleted: Iterable[str],
    new_id: Callable[[str], str],
    read_only: Collection[str] = frozenset(),
) -> SyncPlan:
    """Decide the store writes for one finished run.

    ``session_files``: what the exec's own session holds (name -> ref); ``outputs``:
    new or changed workspace files (name -> sha256); ``deleted``: input names gone
    after the run; ``new_id``: the id a new output of that name gets. A changed file keeps its
    id; an output identical to the stored one uploads nothing; a deleted file is
    removed only from the exec's own session, never from another session it was
    restored from. ``read_only`` inputs are never overwritten nor deleted: a changed
    one is answered as the original file (LibreChat's ``inherited`` ref).
    """
    plan = SyncPlan()
    for name in sorted(outputs):
        if name in read_only:
            plan.kept_read_only.append(name)
            continue
        existing = session_files.get(name)
        if existing is not None and existing.session_id == session_id:
            if existing.sha256 == outputs[name]:
                plan.unchanged.append(name)
            else:
                plan.uploads.append(Upload(name, existing.file_id, replaces=True))
        else:
            plan.uploads.append(Upload(name, new_id(name), replaces=False))
    for name in sorted(set(deleted)):
        plan.deleted_names.append(name)
        existing = session_files.get(name)
        if name in read_only:
            continue
        if existing is not None and existing.session_id == session_id and name not in outputs:
            plan.deletes.append(Delete(name, existing.file_id))
    return plan
