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

from core.errors import AccessDenied, InputsTooLarge, InvalidRequest, PayloadTooLarge
from core.identity import Caller, FileKind
from core.ids import check_id, derived_id, new_id
from core.names import normalize_name
from runner.base import InputFile, Language, Limits, RunRequest, RunResult, Sandbox
from runner.sync import StoredRef, plan_restore, plan_sync
from storage.access import (
    check_session_access,
    check_session_writable,
    guess_content_type,
    stat_file,
)
from storage.base import FileMeta, NewFile, SessionStore

log = logging.getLogger(__name__)


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
    return StoredRef(meta.session_id, meta.file_id, meta.sha256)


def _resolve_inputs(
    request: ExecRequest, caller: Caller, store: SessionStore, session_files: list[FileMeta]
) -> dict[str, FileMeta]:
    by_name = {m.name: m for m in session_files}
    refs: dict[str, FileMeta] = {}
    for ref in request.files:
        meta = stat_file(store, caller, ref.session_id, ref.file_id)
        refs[normalize_name(ref.name) if ref.name else meta.name] = meta
    plan = plan_restore(
        {n: _ref_of(m) for n, m in by_name.items()}, {n: _ref_of(m) for n, m in refs.items()}
    )
    metas = {**by_name, **refs}
    return {name: metas[name] for name in plan}


class _OpenedFile:
    """The bytes of one stored file, with the size of the version actually opened."""

    def __init__(self, store: SessionStore, meta: FileMeta) -> None:
        self._obj = store.open(meta.session_id, meta.file_id)
        self.size = self._obj.meta.size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._obj.chunks)

    def close(self) -> None:
        self._obj.close()


def _opener(store: SessionStore, meta: FileMeta) -> Iterator[bytes]:
    return _OpenedFile(store, meta)


def _input_file(store: SessionStore, name: str, meta: FileMeta) -> InputFile:
    return InputFile(name, meta.size, meta.sha256, lambda: _opener(store, meta))


def _limits_for(request: ExecRequest, policy: ExecPolicy) -> Limits:
    if request.timeout_s is None:
        return policy.limits
    if not math.isfinite(request.timeout_s) or request.timeout_s <= 0:
        raise InvalidRequest("timeout must be a positive number of milliseconds")
    return replace(policy.limits, run_timeout_s=min(request.timeout_s, policy.max_run_timeout_s))


def _sync(
    store: SessionStore,
    caller: Caller,
    session_id: str,
    own: list[FileMeta],
    inputs: dict[str, FileMeta],
    run: RunResult,
) -> tuple[list[ExecFile], int]:
    plan = plan_sync(
        session_id,
        {m.name: _ref_of(m) for m in own},
        {o.name: o.sha256 for o in run.outputs},
        run.deleted,
        lambda name: derived_id(session_id, name),
        read_only={name for name, meta in inputs.items() if meta.read_only},
    )
    outputs = {o.name: o for o in run.outputs}
    files = [
        ExecFile(inputs[name].file_id, name, inputs[name].session_id, inherited=True)
        for name in plan.kept_read_only
    ]
    synced = 0
    for upload in plan.uploads:
        out = outputs[upload.name]
        new = NewFile(
            session_id=session_id,
            file_id=upload.file_id,
            name=upload.name,
            owner=caller.as_owner(),
            kind=FileKind.USER,
            content_type=guess_content_type(upload.name),
            sha256=out.sha256,
        )
        out.data.seek(0)
        store.put(new, out.data)
        synced += out.size
        files.append(ExecFile(upload.file_id, upload.name, session_id))
    for delete in plan.deletes:
        store.delete(session_id, delete.file_id)
    return files, synced


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


def _check_exec_may_write(caller: Caller, files: list[FileMeta]) -> None:
    """An exec writes its outputs into the session: an anonymous key caller may do that
    only in a session that holds nothing but anonymous files."""
    if caller.user is None and not all(caller.may_modify(f.owner, f.kind) for f in files):
        raise AccessDenied(
            "this session holds another owner's files: name the user (user_id or User-Id)"
        )
    check_session_writable(caller, files)


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
    if len(request.code.encode()) > policy.max_code_bytes:
        raise PayloadTooLarge(
            f"code is larger than {policy.max_code_bytes} bytes (RCE_MAX_CODE_BYTES)"
        )
    limits = _limits_for(request, policy)
    own: list[FileMeta] = []
    if request.session_id:
        session_id = check_id(request.session_id, "session_id")
        own = store.list(session_id)
        check_session_access(caller, own)
        _check_exec_may_write(caller, own)
        own = [m for m in own if caller.may_access(m.owner, m.kind)]
    else:
        session_id = new_id()
    inputs = _resolve_inputs(request, caller, store, own)
    _check_inputs_fit(inputs, limits)
    run_request = RunRequest(
        language=request.language,
        code=request.code,
        args=request.args,
        files=tuple(_input_file(store, n, m) for n, m in sorted(inputs.items())),
        limits=limits,
        exec_id=request.exec_id,
    )
    started = time.monotonic()
    run = sandbox.run(run_request)
    try:
        _note_skipped(run)
        files, synced = _sync(store, caller, session_id, own, inputs, run)
    finally:
        run.close()
    log.info(
        "exec finished",
        extra={
            "exec_id": request.exec_id,
            "session_id": session_id,
            "exit_code": run.exit_code,
            "timed_out": run.timed_out,
            "duration_ms": round((time.monotonic() - started) * 1000),
            "files": len(files),
        },
    )
    return ExecOutcome(
        session_id=session_id,
        run=run,
        files=files,
        deleted_files=list(run.deleted),
        bytes_restored=sum(m.size for m in inputs.values()),
        bytes_synced=synced,
    )
