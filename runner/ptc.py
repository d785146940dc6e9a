"""Programmatic tool calling (PTC): the use cases behind ``POST /exec/programmatic``.

A program runs exactly once, in one fresh sandbox from the usual pool. When it calls the client's
tools, the sandbox pauses it (its clock stopped) and the API answers
``tool_call_required`` with every call made together and a signed continuation
token (``core.continuation``); the continuation delivers the results to the same
live program, on any replica that shares the engine. When the program ends, its
outputs are synced to the session exactly as ``execute()`` does.

Nothing is kept in the API process: the token carries the run's state, the
sandbox holds the current round (and refuses a replayed one), and the engine
(container labels) is how a cancel finds a run.
"""

from __future__ import annotations

import keyword
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from core.continuation import Continuation, TokenSigner
from core.errors import Conflict, ContinuationExpired, InvalidRequest, PayloadTooLarge
from core.identity import Caller, FileKind
from runner.base import InputFile, Language, RunRequest, RunResult
from runner.service import (
    ExecOutcome,
    ExecPolicy,
    ExecRequest,
    SyncContext,
    prepare,
    sync_outputs,
)
from runner.sync import StoredRef
from storage.base import SessionStore

log = logging.getLogger(__name__)

BASH_RESERVED = frozenset(
    (
        *("if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until"),
        *("do", "done", "in", "function", "select", "time", "coproc", "declare"),
        *("typeset", "local", "readonly", "export", "unset"),
    )
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# ----------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool of the manifest: its name and how Python and bash call it."""

    name: str
    py_name: str
    sh_name: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the program made, for the client to run."""

    id: str
    name: str
    input: Any


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The client's answer to one ``ToolCall``."""

    call_id: str
    result: Any
    is_error: bool = False
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ProgramJob:
    """What the sandbox needs besides the ``RunRequest`` to run a program with tools."""

    tools: tuple[ToolSpec, ...]
    nonce: str
    principal: str
    wait_cap_s: float
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallsEvent:
    """The program is paused on these calls (round ``round``)."""

    round: int
    calls: tuple[ToolCall, ...]


@dataclass(slots=True)
class FinishedEvent:
    """The program is over; ``run`` is its result."""

    run: RunResult


Event = ToolCallsEvent | FinishedEvent


@dataclass(frozen=True, slots=True)
class ResultsFrame:
    """A continuation as the sandbox receives it."""

    round: int
    nonce: str
    request_id: str
    results: tuple[ToolResult, ...]


class ProgramSandbox(Protocol):
    """Runs programs that pause at tool calls, each in its own fresh container."""

    def start(self, request: RunRequest, job: ProgramJob) -> tuple[str, Event]:
        """Start ``request`` in a fresh container; return its name and the first event.

        ``Conflict`` when a running program already serves ``job.request_id``. A
        paused container is kept ``job.wait_cap_s`` (plus one run) for its results; a
        finished program's container is already discarded.
        """
        ...

    def resume(
        self, container: str, request: RunRequest, frame: ResultsFrame, wait_cap_s: float
    ) -> tuple[str, Event]:
        """Deliver ``frame`` to the paused program; return its (new) name and next event.

        ``ContinuationExpired`` when the container is gone, ``Conflict`` when the
        sandbox refuses the round (replayed) or the request id (seen before).
        """
        ...

    def replayed(self, container: str) -> bool:
        """Whether the run of ``container`` is still paused under another name (a token
        of an earlier round)."""
        ...

    def cancel(self, request_id: str, principal: str) -> str:
        """Ask every paused or running program whether ``request_id`` is one of its
        requests: ``cancelled``, ``foreign`` (another principal's), ``completed`` or
        ``unknown``."""
        ...

    def discard(self, container: str) -> None:
        """Kill and remove ``container`` (idempotent)."""
        ...


@dataclass(frozen=True, slots=True)
class ProgramPolicy:
    """Server-side bounds of programmatic runs."""

    exec_policy: ExecPolicy = field(default_factory=ExecPolicy)
    max_tools: int = 100
    #: Longest wait for the client's tool results between two round trips.
    max_wait_s: float = 300.0
    max_round_trips: int = 50
    max_result_bytes: int = 1024 * 1024
    max_results_bytes: int = 8 * 1024 * 1024
    max_calls_per_round: int = 200


@dataclass(frozen=True, slots=True)
class ProgramRequest:
    """The first request of a programmatic run."""

    language: Language
    code: str
    tools: tuple[Mapping[str, Any], ...]
    session_id: str | None = None
    files: tuple[Any, ...] = ()
    timeout_s: float | None = None
    request_id: str = ""


@dataclass(slots=True)
class ProgramAnswer:
    """One answer: tool calls to run (with the token), or the finished outcome, or an error."""

    status: str
    continuation_token: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    outcome: ExecOutcome | None = None
    error: str | None = None
    stderr: str | None = None


# ------------------------------------------------------------------ names


def python_name(name: str) -> str:
    """The Python identifier the client gives tool ``name``."""
    out = re.sub(r"[^a-zA-Z0-9_]", "", re.sub(r"[-\s]", "_", name))
    if out[:1].isdigit():
        out = "_" + out
    return out + "_tool" if keyword.iskeyword(out) else out


def bash_name(name: str) -> str:
    """The bash function name the client gives tool ``name``."""
    out = re.sub(r"[^a-zA-Z0-9_]", "", re.sub(r"[-\s.]", "_", name))
    if out[:1].isdigit():
        out = "_" + out
    return out + "_tool" if out in BASH_RESERVED else out


def tool_specs(tools: Sequence[Mapping[str, Any]], max_tools: int) -> tuple[ToolSpec, ...]:
    """The manifest as ``ToolSpec``s; ``InvalidRequest`` for too many, bad or clashing names."""
    if len(tools) > max_tools:
        raise InvalidRequest(f"at most {max_tools} tools per program (RCE_PTC_MAX_TOOLS)")
    specs: list[ToolSpec] = []
    seen: dict[str, str] = {}
    for tool in tools:
        name = tool.get("name") if isinstance(tool, Mapping) else None
        if not isinstance(name, str) or not name or len(name) > 256:
            raise InvalidRequest("every tools[] item needs a name of 1 to 256 characters")
        spec = ToolSpec(name, python_name(name), bash_name(name))
        if not spec.py_name or not spec.sh_name:
            raise InvalidRequest(f"tool name {name!r} has no usable identifier")
        for ident in {spec.py_name, spec.sh_name}:
            if seen.setdefault(ident, name) != name:
                raise InvalidRequest(
                    f"tools {seen[ident]!r} and {name!r} map to one name {ident!r}"
                )
        specs.append(spec)
    return tuple(specs)


def check_request_id(request_id: str) -> str:
    """``request_id`` if it is a usable ``X-LibreChat-Code-Request-ID``, else 400."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise InvalidRequest("request_id must be 1 to 128 characters of [A-Za-z0-9._:-]")
    return request_id


# ------------------------------------------------------------- token state


def _refs_state(refs: Mapping[str, StoredRef]) -> list[list[Any]]:
    return [
        [name, r.session_id, r.file_id, r.sha256, r.size, r.read_only]
        for name, r in sorted(refs.items())
    ]


def _refs_of(items: Sequence[Sequence[Any]]) -> dict[str, StoredRef]:
    return {
        str(name): StoredRef(str(sid), str(fid), str(sha), int(size), bool(ro))
        for name, sid, fid, sha, size, ro in items
    }


def _placeholder(name: str, size: int) -> InputFile:
    def closed() -> Any:
        raise RuntimeError("inputs are sent once, at the start of the run")

    return InputFile(name, size, "", closed)


# -------------------------------------------------------------- use cases


@dataclass(frozen=True, slots=True)
class ProgramPorts:
    """The ports a programmatic run uses."""

    store: SessionStore
    sandbox: ProgramSandbox
    signer: TokenSigner
    policy: ProgramPolicy


def start_program(request: ProgramRequest, caller: Caller, ports: ProgramPorts) -> ProgramAnswer:
    """Start a program with the client's tools; see the module docstring."""
    policy = ports.policy
    specs = tool_specs(request.tools, policy.max_tools)
    exec_request = ExecRequest(
        language=request.language,
        code=request.code,
        session_id=request.session_id,
        files=request.files,
        timeout_s=request.timeout_s,
        exec_id=request.request_id,
    )
    prepared = prepare(exec_request, caller, store=ports.store, policy=policy.exec_policy)
    principal = ports.signer.principal(caller)
    job = ProgramJob(specs, secrets.token_hex(8), principal, policy.max_wait_s, request.request_id)
    container, event = ports.sandbox.start(prepared.run_request, job)
    ctx = prepared.sync_context(ports.store, caller)
    state = {
        "lang": request.language.value,
        "timeout": prepared.limits.run_timeout_s,
        "mfb": prepared.run_request.limits.max_file_bytes,
        "restored": _refs_state(ctx.restored),
        "writable": _refs_state(ctx.writable),
        "tools": [s.name for s in specs],
        "rid": request.request_id,
    }
    base = Continuation(container, 0, principal, prepared.session_id, 0.0, state)
    return _answer(event, base, caller, ports)


def continue_program(
    token: str,
    results: Sequence[ToolResult],
    caller: Caller,
    request_id: str,
    ports: ProgramPorts,
) -> ProgramAnswer:
    """Deliver ``results`` to the program ``token`` paused; see the module docstring."""
    continuation = ports.signer.verify(token, caller, now=time.time())
    frame = ResultsFrame(
        round=continuation.round,
        nonce=secrets.token_hex(8),
        request_id=request_id,
        results=_capped_results(results, ports.policy),
    )
    request = _resumed_request(continuation, ports.policy)
    try:
        container, event = ports.sandbox.resume(
            continuation.container, request, frame, ports.policy.max_wait_s
        )
    except ContinuationExpired:
        if ports.sandbox.replayed(continuation.container):
            raise Conflict(
                "this continuation token was already used (replayed or concurrent continuation)"
            ) from None
        raise
    return _answer(event, replace(continuation, container=container), caller, ports)


def cancel_program(request_id: str, caller: Caller, ports: ProgramPorts) -> str:
    """``cancellation_requested``, ``already_completed``; 403 for another caller's run."""
    from core.errors import AccessDenied

    state = ports.sandbox.cancel(check_request_id(request_id), ports.signer.principal(caller))
    if state == "foreign":
        raise AccessDenied("request_id belongs to another caller's run")
    return "cancellation_requested" if state == "cancelled" else "already_completed"


def _capped_results(results: Sequence[ToolResult], policy: ProgramPolicy) -> tuple[ToolResult, ...]:
    import json

    total = 0
    capped: list[ToolResult] = []
    for item in results:
        size = len(json.dumps(item.result, ensure_ascii=False, default=str).encode())
        total += size
        if size > policy.max_result_bytes:
            item = ToolResult(
                item.call_id,
                None,
                True,
                f"the tool result of {size} bytes is over the {policy.max_result_bytes} byte "
                "limit (RCE_PTC_MAX_RESULT_BYTES)",
            )
        capped.append(item)
    if total > policy.max_results_bytes:
        raise PayloadTooLarge(
            f"tool results total {total} bytes, over the {policy.max_results_bytes} byte "
            "limit (RCE_PTC_MAX_RESULTS_BYTES)"
        )
    return tuple(capped)


def _resumed_request(continuation: Continuation, policy: ProgramPolicy) -> RunRequest:
    state = continuation.state
    limits = replace(
        policy.exec_policy.limits,
        run_timeout_s=float(state["timeout"]),
        max_file_bytes=int(state["mfb"]),
    )
    inputs = tuple(_placeholder(str(i[0]), int(i[4])) for i in state["restored"])
    return RunRequest(
        language=Language(state["lang"]),
        code="",
        files=inputs,
        limits=limits,
        exec_id=str(state.get("rid", "")),
    )


def _answer(
    event: Event, continuation: Continuation, caller: Caller, ports: ProgramPorts
) -> ProgramAnswer:
    policy = ports.policy
    if isinstance(event, ToolCallsEvent):
        allowed = set(continuation.state["tools"])
        unknown = next((c.name for c in event.calls if c.name not in allowed), None)
        error = None
        if unknown is not None:
            error = f"Sandbox requested an unregistered tool: {unknown[:100]}"
        elif event.round > policy.max_round_trips:
            error = (
                f"Exceeded maximum round trips ({policy.max_round_trips}) (RCE_PTC_MAX_ROUND_TRIPS)"
            )
        elif not event.calls or len(event.calls) > policy.max_calls_per_round:
            error = "Execution failed or timed out"
        if error is not None:
            ports.sandbox.discard(continuation.container)
            return ProgramAnswer(status="error", error=error)
        token = ports.signer.sign(
            replace(continuation, round=event.round, expires_at=time.time() + policy.max_wait_s)
        )
        return ProgramAnswer("tool_call_required", continuation_token=token, tool_calls=event.calls)
    return _finished(event.run, continuation, caller, ports)


def _finished(
    run: RunResult, continuation: Continuation, caller: Caller, ports: ProgramPorts
) -> ProgramAnswer:
    state = continuation.state
    ctx = SyncContext(
        store=ports.store,
        caller=caller,
        session_id=continuation.session_id,
        restored=_refs_of(state["restored"]),
        writable=_refs_of(state["writable"]),
        max_file_bytes=ports.policy.exec_policy.limits.max_file_bytes,
    )
    outcome = sync_outputs(ctx, run)
    if run.timed_out:
        return ProgramAnswer(
            "error", outcome=outcome, error="Time limit exceeded", stderr=run.stderr
        )
    if run.oom_killed:
        return ProgramAnswer("error", outcome=outcome, error="Out of memory", stderr=run.stderr)
    return ProgramAnswer("completed", outcome=outcome)


def workspace_session_id(
    caller: Caller, workspace_id: str, instance_id: str, signer: TokenSigner
) -> str:
    """The caller-scoped session that holds an attached workspace's files."""
    from core.ids import derived_id

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", workspace_id):
        raise InvalidRequest("X-LibreChat-Code-Workspace-ID is not a valid workspace id")
    if instance_id and not re.fullmatch(r"[0-9a-f]{64}", instance_id):
        raise InvalidRequest("workspace_instance_id must be 64 lowercase hex characters")
    return derived_id("workspace", caller.as_owner(), f"{workspace_id}\0{instance_id}")


__all__ = [
    "Conflict",
    "FileKind",
    "ProgramAnswer",
    "ProgramPolicy",
    "ProgramPorts",
    "ProgramRequest",
    "ProgramSandbox",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "cancel_program",
    "continue_program",
    "start_program",
    "workspace_session_id",
]
