"""``POST /exec/programmatic`` and its cancel route (programmatic tool calling).

The first request starts a program (``runner.ptc.start_program``); a body with
``continuation_token`` resumes one; an attached workspace (bash, ``tools: []``,
``X-LibreChat-Code-Workspace-ID``) runs as a plain exec in the caller's workspace
session. Answers carry ``status``: ``tool_call_required``, ``completed`` or
``error`` (with the error strings the client translates).

Authentication is the app's gate (headers only, before any body). Admission is the
exec gate's (``services.exec_gate``): a first request and every continuation each
take an exec slot while the program runs (a continuation resumes the program, which
then runs until its next pause or its end). A paused program holds no slot: it is
bounded by the wait cap (the agent ends it) and its container's expiry (the
reaper). A cancel takes no slot (one list call and one attach).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidRequest, SandboxUnavailable
from handler.auth import with_asserted_user
from handler.logs import current_request_id
from handler.routes import CallerDep, ServicesDep, _run_exec, file_refs, router_tags
from handler.schemas import ExecIn, ExecOut, FileRefIn
from handler.services import Services
from runner.base import Language, parse_language
from runner.ptc import (
    ProgramAnswer,
    ProgramPorts,
    ProgramRequest,
    ToolResult,
    cancel_program,
    check_request_id,
    continue_program,
    start_program,
    workspace_session_id,
)

REQUEST_ID_HEADER = "x-librechat-code-request-id"
WORKSPACE_HEADER = "x-librechat-code-workspace-id"


class ToolResultIn(BaseModel):
    """One ``tool_results[]`` item."""

    model_config = ConfigDict(extra="ignore")

    call_id: str = Field(max_length=128)
    result: Any = None
    is_error: bool = False
    error_message: str | None = Field(None, max_length=64 * 1024)


class ProgrammaticIn(BaseModel):
    """A first request (``code``, ``tools``...) or a continuation
    (``continuation_token``, ``tool_results``). Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    code: str | None = None
    lang: str | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=10_000)
    session_id: str | None = Field(None, max_length=64)
    files: list[FileRefIn] | None = Field(None, max_length=1000)
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)
    workspace_instance_id: str | None = Field(None, max_length=128)
    user_id: str | None = Field(None, max_length=256)
    continuation_token: str | None = None
    tool_results: list[ToolResultIn] | None = Field(None, max_length=10_000)


class CancelIn(BaseModel):
    """``POST /exec/programmatic/cancel``."""

    model_config = ConfigDict(extra="ignore")

    request_id: Any = None


def _ports(services: Services) -> ProgramPorts:
    if services.programs is None:
        raise SandboxUnavailable("programmatic tool calling needs the Docker sandbox")
    return services.programs


def _answer(answer: ProgramAnswer) -> dict[str, Any]:
    if answer.status == "tool_call_required":
        return {
            "status": answer.status,
            "continuation_token": answer.continuation_token,
            "tool_calls": [
                {"id": c.id, "name": c.name, "input": c.input} for c in answer.tool_calls
            ],
        }
    body: dict[str, Any] = {}
    if answer.outcome is not None:
        body = ExecOut.from_outcome(answer.outcome).model_dump(exclude_none=True)
    body["status"] = answer.status
    if answer.error is not None:
        body["error"] = answer.error
    if answer.stderr is not None:
        body["stderr"] = answer.stderr
    return body


def _workspace(
    request: Request, services: Services, who: Any, body: ProgrammaticIn, request_id: str
) -> dict[str, Any]:
    """A bash call in an attached workspace: a plain exec in the workspace's session."""
    ports = _ports(services)
    session_id = workspace_session_id(
        who, request.headers[WORKSPACE_HEADER], body.workspace_instance_id or "", ports.signer
    )
    exec_body = ExecIn(
        code=body.code or "",
        lang="bash",
        session_id=session_id,
        files=body.files,
        timeout=body.timeout,
    )
    out = _run_exec(services, who, exec_body, request_id).model_dump(exclude_none=True)
    return {**out, "status": "completed"}


def _start(
    request: Request, services: Services, who: Any, body: ProgrammaticIn, request_id: str
) -> dict[str, Any]:
    if body.code is None or not body.code:
        raise InvalidRequest("code is required (or continuation_token and tool_results)")
    language = parse_language(body.lang or "py")
    tools = body.tools or []
    if WORKSPACE_HEADER in request.headers and language is Language.BASH and not tools:
        return _workspace(request, services, who, body, request_id)
    program = ProgramRequest(
        language=language,
        code=body.code,
        tools=tuple(tools),
        session_id=body.session_id or None,
        files=file_refs(body.files, body.session_id),
        timeout_s=body.timeout / 1000 if body.timeout is not None else None,
        request_id=_request_id(request),
    )
    return _answer(start_program(program, who, _ports(services)))


def _request_id(request: Request) -> str:
    raw = request.headers.get(REQUEST_ID_HEADER)
    return check_request_id(raw) if raw else ""


def build_ptc_router() -> APIRouter:
    """The programmatic routes; the app mounts them at ``/`` and under ``/v1``."""
    router = APIRouter()

    @router.post("/exec/programmatic", tags=router_tags)
    async def exec_programmatic(
        body: ProgrammaticIn, who: CallerDep, services: ServicesDep, request: Request
    ) -> JSONResponse:
        """Run code that calls the client's tools; see ``runner.ptc``. Admission is
        bounded like ``/exec`` (429 or 503 with ``Retry-After`` when full)."""
        who = with_asserted_user(who, body.user_id)
        log_id = current_request_id()
        token = body.continuation_token
        if token is None:
            _ports(services)
            return JSONResponse(
                await services.exec_gate.run(lambda: _start(request, services, who, body, log_id))
            )
        results = [
            ToolResult(r.call_id, r.result, r.is_error, r.error_message)
            for r in body.tool_results or []
        ]
        ports, request_id = _ports(services), _request_id(request)
        answer = await services.exec_gate.run(
            lambda: continue_program(token, results, who, request_id, ports)
        )
        return JSONResponse(_answer(answer))

    @router.post("/exec/programmatic/cancel", tags=router_tags)
    def cancel(body: CancelIn, who: CallerDep, services: ServicesDep) -> JSONResponse:
        """Cancel the run serving ``request_id`` (the client's request header)."""
        if not isinstance(body.request_id, str):
            raise InvalidRequest("request_id must be a string")
        state = cancel_program(body.request_id, who, _ports(services))
        return JSONResponse(
            {"status": state}, status_code=202 if state == "cancellation_requested" else 200
        )

    return router
