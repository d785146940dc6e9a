"""The ``execute()`` use case: restore a session's files, run code, sync outputs back.

Plain synchronous Python over two ports (``SessionStore``, ``Sandbox``); no HTTP
here. A failure of the user's program is a result; only a failure of the store or
the engine raises.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from core.errors import (
    AccessDenied,
    InputsTooLarge,
    InvalidRequest,
    PayloadTooLarge,
)
from core.identity import Caller, FileKind
from core.ids import check_id, derived_id, new_id
from core.names import check_name, display_name, name_problem, normalize_name
from runner.base import (
    InputFile,
    Language,
    Limits,
    OutputFile,
    RunRequest,
    RunResult,
    Sandbox,
    SkippedFile,
)
from runner.sync import (
    Output,
    Skip,
    StoredRef,
    SyncPlan,
    Upload,
    collect_limit,
    plan_restore,
    plan_sync,
    size_reason,
)
from storage.access import (
    check_session_access,
    check_session_writable,
    guess_content_type,
    prefer_own,
    stat_file,
)
from storage.base import FileMeta, NewFile, SessionStore

log = logging.getLogger(__name__)

#: How the sandbox marks an output it left out for its size.
_SIZE_MARK = "(RCE_MAX_FILE_BYTES)"


@dataclass(frozen=True, slots=True)
class FileRef:
    """A stored file the caller wants in the workspace (an entry of ``files[]``)."""

    file_id: str
    session_id: str
    #: Destination under /mnt/data; the stored name when None.
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """One exec as the API received it, already authenticated."""

    language: Language
    code: str
    args: tuple[str, ...] = ()
    #: Continue this session (restore all its files, write outputs back into it).
    session_id: str | None = None
    files: tuple[FileRef, ...] = ()
    #: The caller's wish, capped by ``ExecPolicy.max_run_timeout_s``.
    timeout_s: float | None = None
    exec_id: str = ""


@dataclass(frozen=True, slots=True)
class ExecPolicy:
    """Server-side bounds on an exec."""

    limits: Limits = field(default_factory=Limits)
    max_run_timeout_s: float = 300.0
    max_code_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExecFile:
    """A file in the exec's answer."""

    file_id: str
    name: str
    session_id: str
    #: An input echoed back unchanged in the store (a read-only file the program changed).
    inherited: bool = False


@dataclass(slots=True)
class ExecOutcome:
    """What ``execute`` returns: the run and the files it left in the store."""

    session_id: str
    run: RunResult
    files: list[ExecFile] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    bytes_restored: int = 0
    bytes_synced: int = 0


def _ref_of(meta: FileMeta) -> StoredRef:
    return StoredRef(meta.session_id, meta.file_id, meta.sha256, meta.size, meta.read_only)


def _visible_files(
    store: SessionStore, caller: Caller, session_id: str | None
) -> tuple[str, list[FileMeta]]:
    """The exec's session id and the files of it the caller may read."""
    if not session_id:
        return new_id(), []
    check_id(session_id, "session_id")
    files = store.list(session_id)
    check_session_access(caller, files)
    check_session_writable(caller, files)
    return session_id, [m for m in files if caller.may_access(m.owner, m.kind)]


def _by_name(caller: Caller, files: list[FileMeta]) -> dict[str, FileMeta]:
    """One file per name, the one ``access.prefer_own`` ranks first. Names the policy
    refuses (stored before it) stay out of the workspace."""
    return {m.name: m for m in prefer_own(caller, files) if name_problem(m.name) is None}


def _resolve_inputs(
    request: ExecRequest, caller: Caller, store: SessionStore, by_name: dict[str, FileMeta]
) -> dict[str, FileMeta]:
    refs: dict[str, FileMeta] = {}
    for ref in request.files:
        meta = stat_file(store, caller, ref.session_id, ref.file_id)
        refs[normalize_name(ref.name) if ref.name else check_name(meta.name)] = meta
    plan = plan_restore(
        {n: _ref_of(m) for n, m in by_name.items()}, {n: _ref_of(m) for n, m in refs.items()}
    )
    metas = {**by_name, **refs}
    return {name: metas[name] for name in plan}


class _Restore:
    """Opens the inputs for the sandbox and remembers the version each one streamed."""

    def __init__(self, store: SessionStore, caller: Caller) -> None:
        self.store = store
        self.caller = caller
        #: Workspace name -> metadata of the version actually opened.
        self.opened: dict[str, FileMeta] = {}

    def input_file(self, name: str, meta: FileMeta) -> InputFile:
        return InputFile(name, meta.size, meta.sha256, lambda: _OpenedFile(self, name, meta))

    def restored(self, inputs: dict[str, FileMeta]) -> dict[str, StoredRef]:
        """What the workspace started with: the opened versions (planned ones for any
        input the sandbox did not open)."""
        return {name: _ref_of(self.opened.get(name, meta)) for name, meta in inputs.items()}


class _OpenedFile:
    """The bytes of one stored file, with the size of the version actually opened.

    The ownership check runs again on the opened version's own metadata: what is
    streamed into the sandbox is what was checked, whatever changed since the
    listing.
    """

    def __init__(self, restore: _Restore, name: str, planned: FileMeta) -> None:
        obj = restore.store.open(planned.session_id, planned.file_id)
        if not restore.caller.may_access(obj.meta.owner, obj.meta.kind):
            obj.close()
            raise AccessDenied(f"file {planned.file_id} belongs to another owner")
        self._obj = obj
        self.size = obj.meta.size
        restore.opened[name] = obj.meta

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._obj.chunks)

    def close(self) -> None:
        self._obj.close()


def _limits_for(request: ExecRequest, policy: ExecPolicy) -> Limits:
    if request.timeout_s is None:
        return policy.limits
    if not math.isfinite(request.timeout_s) or request.timeout_s <= 0:
        raise InvalidRequest("timeout must be a positive number of milliseconds")
    return replace(policy.limits, run_timeout_s=min(request.timeout_s, policy.max_run_timeout_s))


@dataclass(frozen=True, slots=True)
class SyncContext:
    """What ``_sync`` needs besides the run: who, where, and what was there before."""

    store: SessionStore
    caller: Caller
    session_id: str
    restored: dict[str, StoredRef]
    writable: dict[str, StoredRef]
    max_file_bytes: int


def _plan(ctx: SyncContext, run: RunResult) -> SyncPlan:
    owner = ctx.caller.as_owner()
    return plan_sync(
        restored=ctx.restored,
        writable=ctx.writable,
        outputs={o.name: Output(o.sha256, o.size) for o in run.outputs},
        deleted=run.deleted,
        new_id=lambda name: derived_id(ctx.session_id, owner, name),
        max_file_bytes=ctx.max_file_bytes,
    )


def _store_output(ctx: SyncContext, upload: Upload, out: OutputFile) -> str | None:
    """Put one output; the reason it was not stored when the store refused it."""
    new = NewFile(
        session_id=ctx.session_id,
        file_id=upload.file_id,
        name=upload.name,
        owner=ctx.caller.as_owner(),
        kind=FileKind.USER,
        content_type=guess_content_type(upload.name),
        sha256=out.sha256,
    )
    out.data.seek(0)
    try:
        ctx.store.put(new, out.data)
    except InvalidRequest as exc:  # e.g. name and owner over S3's 2 KB of metadata
        return exc.message
    return None


def _sync(ctx: SyncContext, run: RunResult) -> tuple[list[ExecFile], int]:
    plan = _plan(ctx, run)
    outputs = {o.name: o for o in run.outputs}
    files = [
        ExecFile(ctx.restored[name].file_id, name, ctx.restored[name].session_id, inherited=True)
        for name in plan.kept_read_only
    ]
    skipped = list(plan.skipped)
    synced = 0
    for upload in plan.uploads:
        out = outputs[upload.name]
        refused = _store_output(ctx, upload, out)
        if refused is not None:
            skipped.append(Skip(upload.name, refused))
            continue
        synced += out.size
        files.append(ExecFile(upload.file_id, upload.name, ctx.session_id))
    for delete in plan.deletes:
        # Listed before the run; a concurrent run of ours may have removed it since.
        ctx.store.delete(ctx.session_id, delete.file_id, missing_ok=True)
    run.skipped = _reported_skips(run.skipped, skipped, ctx.max_file_bytes)
    return files, synced


def _reported_skips(
    from_sandbox: list[SkippedFile], planned: list[Skip], max_file_bytes: int
) -> list[SkippedFile]:
    """Every skipped output, with names made safe to show. The sandbox compares files
    up to ``collect_limit`` (not the real limit), so its size reason is restated."""
    out = []
    for skip in from_sandbox:
        reason = size_reason(max_file_bytes) if _SIZE_MARK in skip.reason else skip.reason
        out.append(SkippedFile(display_name(skip.name), reason))
    out.extend(SkippedFile(display_name(s.name), s.reason) for s in planned)
    return out


def _writable(
    caller: Caller, session_id: str, by_name: dict[str, FileMeta]
) -> dict[str, StoredRef]:
    """The session files a run of this caller may replace or delete: its own user
    files, not read-only. Shared files (agent, skill) are resources of their tenant:
    a run never rewrites them, even its owner's (a changed one is a new user file)."""
    return {
        name: _ref_of(meta)
        for name, meta in by_name.items()
        if meta.session_id == session_id
        and caller.may_modify(meta.owner)
        and meta.kind is FileKind.USER
        and not meta.read_only
    }


def _note_skipped(run: RunResult) -> None:
    if run.skipped:
        notes = "".join(f"rce: output file {s.name!r} not saved: {s.reason}\n" for s in run.skipped)
        run.stderr = run.stderr + ("" if not run.stderr or run.stderr.endswith("\n") else "\n")
        run.stderr += notes


def _check_inputs_fit(inputs: dict[str, FileMeta], limits: Limits) -> None:
    """Refuse, before any sandbox starts, inputs that cannot fit the workspace. Every
    destination counts, so one file restored under two names counts twice."""
    total = sum(meta.size for meta in inputs.values())
    if total > limits.workspace_bytes:
        raise InputsTooLarge(
            f"the exec's input files total {total} bytes, more than its workspace holds "
            f"({limits.workspace_bytes} bytes, RCE_WORKSPACE_SIZE): restore fewer files"
        )


@dataclass(slots=True)
class PreparedExec:
    """An exec checked and planned, before its sandbox starts (``prepare``)."""

    session_id: str
    limits: Limits
    inputs: dict[str, FileMeta]
    writable: dict[str, StoredRef]
    restore: _Restore
    run_request: RunRequest

    def sync_context(self, store: SessionStore, caller: Caller) -> SyncContext:
        """What ``sync_outputs`` needs once the sandbox read the inputs."""
        return SyncContext(
            store=store,
            caller=caller,
            session_id=self.session_id,
            restored=self.restore.restored(self.inputs),
            writable=self.writable,
            max_file_bytes=self.limits.max_file_bytes,
        )


def prepare(
    request: ExecRequest, caller: Caller, *, store: SessionStore, policy: ExecPolicy
) -> PreparedExec:
    """Check ``request`` and plan its workspace (see ``execute``); no sandbox yet."""
    if len(request.code.encode()) > policy.max_code_bytes:
        raise PayloadTooLarge(
            f"code is larger than {policy.max_code_bytes} bytes (RCE_MAX_CODE_BYTES)"
        )
    limits = _limits_for(request, policy)
    session_id, visible = _visible_files(store, caller, request.session_id)
    by_name = _by_name(caller, visible)
    inputs = _resolve_inputs(request, caller, store, by_name)
    _check_inputs_fit(inputs, limits)
    restore = _Restore(store, caller)
    planned = {name: _ref_of(meta) for name, meta in inputs.items()}
    run_request = RunRequest(
        language=request.language,
        code=request.code,
        args=request.args,
        files=tuple(restore.input_file(n, m) for n, m in sorted(inputs.items())),
        limits=replace(limits, max_file_bytes=collect_limit(limits.max_file_bytes, planned)),
        exec_id=request.exec_id,
    )
    return PreparedExec(
        session_id=session_id,
        limits=limits,
        inputs=inputs,
        writable=_writable(caller, session_id, by_name),
        restore=restore,
        run_request=run_request,
    )


def sync_outputs(ctx: SyncContext, run: RunResult) -> ExecOutcome:
    """Persist what ``run`` left in its workspace and close it: the exec's outcome."""
    try:
        files, synced = _sync(ctx, run)
        _note_skipped(run)
    finally:
        run.close()
    return ExecOutcome(
        session_id=ctx.session_id,
        run=run,
        files=files,
        deleted_files=list(run.deleted),
        bytes_restored=sum(ref.size for ref in ctx.restored.values()),
        bytes_synced=synced,
    )


def execute(
    request: ExecRequest,
    caller: Caller,
    *,
    store: SessionStore,
    sandbox: Sandbox,
    policy: ExecPolicy,
) -> ExecOutcome:
    """Run ``request`` for ``caller`` in a fresh sandbox and persist what it made.

    With ``session_id`` the whole session is restored and outputs are written back
    into it; without, the exec gets a new session. Files named in ``files`` are
    restored at ``/mnt/data/<name>`` after an ownership check. New or changed files
    are uploaded (unchanged ones are not); deleted inputs are reported.
    """
    prepared = prepare(request, caller, store=store, policy=policy)
    started = time.monotonic()
    run = sandbox.run(prepared.run_request)
    outcome = sync_outputs(prepared.sync_context(store, caller), run)
    log.info(
        "exec finished",
        extra={
            "exec_id": request.exec_id,
            "session_id": prepared.session_id,
            "exit_code": run.exit_code,
            "timed_out": run.timed_out,
            "duration_ms": round((time.monotonic() - started) * 1000),
            "files": len(outcome.files),
        },
    )
    return outcome
