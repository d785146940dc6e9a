"""The functional core of restore and sync: pure planning over manifests.

``plan_restore`` decides which stored files go into the workspace and under which
names; ``collect_limit`` the file size up to which the sandbox must compare and
report files; ``plan_sync`` what to upload to and delete from the exec's session
once the run is over, and which outputs are skipped and why. All take plain data
and return plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from core.names import name_problem


@dataclass(frozen=True, slots=True)
class StoredRef:
    """A stored file: where it lives, its digest and size, whether it is read-only."""

    session_id: str
    file_id: str
    sha256: str
    size: int = 0
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Output:
    """A new or changed workspace file, as the sandbox reported it."""

    sha256: str
    size: int = 0


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
class Skip:
    """An output that is not saved, and why."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """Everything the shell must do after a run, and what it reports back."""

    uploads: list[Upload] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    #: Outputs whose bytes are what the workspace started with: nothing to save.
    unchanged: list[str] = field(default_factory=list)
    #: Input names the program deleted (reported as ``deleted_files``).
    deleted_names: list[str] = field(default_factory=list)
    #: Read-only inputs the program changed: never stored, answered as the original.
    kept_read_only: list[str] = field(default_factory=list)
    #: Outputs not saved: a name the policy refuses, or over the size limit.
    skipped: list[Skip] = field(default_factory=list)


def size_reason(max_file_bytes: int) -> str:
    """The skip reason of an output over the per-file limit."""
    return f"larger than the {max_file_bytes} byte limit (RCE_MAX_FILE_BYTES)"


def plan_restore(
    session_files: Mapping[str, StoredRef], refs: Mapping[str, StoredRef]
) -> dict[str, StoredRef]:
    """Workspace name -> stored file. Explicit refs win over same-named session files."""
    plan = dict(session_files)
    plan.update(refs)
    return plan


def collect_limit(max_file_bytes: int, restored: Mapping[str, StoredRef]) -> int:
    """The size up to which the sandbox compares and reports files.

    At least every restored input's size: an input larger than ``max_file_bytes``
    that the program did not touch is then recognised as unchanged (its digest is
    compared) instead of being reported as too large on every run. A changed one
    comes back and ``plan_sync`` skips it by the real limit.
    """
    return max([max_file_bytes, *(ref.size for ref in restored.values())])


def _plan_output(
    plan: SyncPlan,
    name: str,
    output: Output,
    restored: Mapping[str, StoredRef],
    writable: Mapping[str, StoredRef],
    new_id: Callable[[str], str],
    max_file_bytes: int,
) -> None:
    problem = name_problem(name)
    if problem is not None:
        plan.skipped.append(Skip(name, problem))
        return
    base = restored.get(name)
    if base is not None and base.sha256 == output.sha256:
        plan.unchanged.append(name)
    elif base is not None and base.read_only:
        plan.kept_read_only.append(name)
    elif output.size > max_file_bytes:
        plan.skipped.append(Skip(name, size_reason(max_file_bytes)))
    elif (own := writable.get(name)) is None:
        plan.uploads.append(Upload(name, new_id(name), replaces=False))
    elif own.sha256 == output.sha256:
        plan.unchanged.append(name)
    else:
        plan.uploads.append(Upload(name, own.file_id, replaces=True))


def _plan_delete(
    plan: SyncPlan,
    name: str,
    restored: Mapping[str, StoredRef],
    writable: Mapping[str, StoredRef],
) -> None:
    plan.deleted_names.append(name)
    base, own = restored.get(name), writable.get(name)
    if base is None or own is None or base.read_only:
        return
    if (base.session_id, base.file_id) == (own.session_id, own.file_id):
        plan.deletes.append(Delete(name, own.file_id))


def plan_sync(
    *,
    restored: Mapping[str, StoredRef],
    writable: Mapping[str, StoredRef],
    outputs: Mapping[str, Output],
    deleted: Iterable[str],
    new_id: Callable[[str], str],
    max_file_bytes: int,
) -> SyncPlan:
    """Decide the store writes for one finished run.

    ``restored``: what the workspace started with (name -> the version actually
    streamed in); ``writable``: the files of the exec's session the caller may
    replace or delete (its own, not read-only; name -> ref); ``outputs``: new or
    changed workspace files; ``deleted``: input names gone after the run;
    ``new_id``: the id a new output of that name gets (owner-bound, so it is never
    another owner's object).

    - A name the policy refuses (``core.names``) is skipped with the reason.
    - An output identical to what was restored is unchanged, whatever its size.
    - A changed read-only input is kept (answered as the original).
    - An output over ``max_file_bytes`` is skipped with the reason.
    - A changed writable file keeps its id; any other output is new, under
      ``new_id``: a same-named file of another owner is never replaced.
    - A deleted input is removed only when it is the writable file that was
      restored; other deletions (another owner's, read-only, another session's)
      are only reported.
    """
    plan = SyncPlan()
    for name in sorted(outputs):
        _plan_output(plan, name, outputs[name], restored, writable, new_id, max_file_bytes)
    for name in sorted(set(deleted) - set(outputs)):
        _plan_delete(plan, name, restored, writable)
    return plan
