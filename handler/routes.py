"""The HTTP routes. Each one authenticates, calls a use case, and shapes the answer;
domain errors propagate to the one mapping in ``handler.errors``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from core.errors import (
    AuthenticationFailed,
    CodeInterpreterError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    SandboxError,
    StorageError,
)
from core.identity import Caller, FileKind
from core.ids import check_id, is_valid_id
from handler.auth import with_asserted_user
from handler.authgate import caller_of
from handler.logs import current_request_id
from handler.schemas import (
    ExecIn,
    ExecOut,
    FileRefIn,
    UploadedOut,
    UploadOut,
    file_entry,
    object_info,
)
from handler.services import Services
from runner.base import parse_language
from runner.service import ExecRequest, FileRef, execute
from storage import access
from storage.base import FileMeta, StoredObject

OPS: list[str | Enum] = ["ops"]
Detail = Literal["simple", "summary", "full", "normalized"]
#: Memory an uploaded file may use before it is spooled to disk (per file).
UPLOAD_SPOOL_MEMORY = 128 * 1024
#: How long ``/ready`` waits for each probe before reporting it failed.
READY_PROBE_TIMEOUT_S = 2.0


# The dependencies below do no I/O: ``async def`` keeps them on the event loop, where
# a plain ``def`` would cost each request a hop to the thread pool and back.
async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


def _asserted(request: Request, *extra: str | None) -> list[str | None]:
    kind = request.query_params.get("kind")
    query_id = request.query_params.get("id") if kind in (None, "user") else None
    return [request.headers.get("user-id"), *extra, query_id]


async def caller(request: Request) -> Caller:
    """The caller ``handler.authgate.AuthGate`` authenticated from the headers (before
    any body was read), scoped to the user a key caller asserts."""
    found = caller_of(request.scope)
    if found is None:  # fail closed: the gate did not run or the route is public
        raise AuthenticationFailed("missing credentials: send X-API-Key or Authorization")
    return with_asserted_user(found, *_asserted(request))


CallerDep = Annotated[Caller, Depends(caller)]
router_tags: list[str | Enum] = ["code interpreter"]


def file_refs(files: list[FileRefIn] | None, default_session: str | None) -> tuple[FileRef, ...]:
    """The request's input files; one without a session of its own is in the request's."""
    refs = []
    for item in files or ():
        session_id = item.storage_session_id or item.session_id or default_session
        if not session_id:
            raise InvalidRequest(f"files[]: {item.id!r} has no storage_session_id or session_id")
        refs.append(FileRef(file_id=item.id, session_id=session_id, name=item.name))
    return tuple(refs)


def _count_failure(services: Services, exc: CodeInterpreterError) -> None:
    if isinstance(exc, StorageError):
        services.metrics.storage_errors.labels(type(exc).__name__).inc()
    elif isinstance(exc, SandboxError):
        services.metrics.sandbox_errors.labels(type(exc).__name__).inc()


def _run_exec(services: Services, who: Caller, body: ExecIn, request_id: str) -> ExecOut:
    language = parse_language(body.lang)
    request = ExecRequest(
        language=language,
        code=body.code,
        args=tuple(body.args or ()),
        session_id=body.session_id or None,
        files=file_refs(body.files, body.session_id),
        timeout_s=body.timeout / 1000 if body.timeout is not None else None,
        exec_id=request_id,
    )
    started = time.monotonic()
    outcome_label = "error"
    try:
        outcome = execute(
            request, who, store=services.store, sandbox=services.sandbox, policy=services.policy
        )
        run = outcome.run
        outcome_label = (
            "timeout"
            if run.timed_out
            else "oom"
            if run.oom_killed
            else "ok"
            if run.exit_code == 0
            else "nonzero"
        )
        services.metrics.bytes_restored.inc(outcome.bytes_restored)
        services.metrics.bytes_synced.inc(outcome.bytes_synced)
        return ExecOut.from_outcome(outcome)
    except CodeInterpreterError as exc:
        _count_failure(services, exc)
        raise
    finally:
        elapsed = time.monotonic() - started
        services.metrics.exec_seconds.labels(language.value, outcome_label).observe(elapsed)
        services.recent.record(language.value, outcome_label, elapsed)


def _content_disposition(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in base)
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{quote(base)}"


def _stream(obj: StoredObject) -> Iterator[bytes]:
    try:
        yield from obj.chunks
    finally:
        obj.close()


def _download_response(obj: StoredObject) -> StreamingResponse:
    meta = obj.meta
    return StreamingResponse(
        _stream(obj),
        media_type=meta.content_type or "application/octet-stream",
        headers={
            "Content-Disposition": _content_disposition(meta.name),
            "Content-Length": str(meta.size),
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{meta.sha256}"',
            "Cache-Control": "private, no-store",
        },
    )


def _open_by_ref(services: Services, who: Caller, session_id: str, ref: str) -> StoredObject:
    check_id(session_id, "session_id")
    if is_valid_id(ref):
        try:
            return access.open_file(services.store, who, session_id, ref)
        except NotFound:
            pass
    meta = access.find_by_name(services.store, who, session_id, ref)
    return access.open_file(services.store, who, session_id, meta.file_id)


async def _parse_form(request: Request, max_files: int) -> FormData:
    """The multipart form, each file spooled to disk past ``UPLOAD_SPOOL_MEMORY``: a
    request's memory is bounded by its file count, its disk by the body limit."""
    parser = MultiPartParser(request.headers, request.stream(), max_files=max_files, max_fields=100)
    parser.spool_max_size = UPLOAD_SPOOL_MEMORY
    try:
        return await parser.parse()
    except (MultiPartException, ValueError, KeyError, AssertionError) as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}") from exc


async def _form_files(request: Request, max_files: int) -> tuple[Any, list[UploadFile]]:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise InvalidRequest("upload must be multipart/form-data with a 'file' part")
    form = await _parse_form(request, max_files)
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not files:
        await form.close()
        raise InvalidRequest("multipart body has no 'file' part")
    return form, files


def _form_str(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _upload_kind(form: Any) -> FileKind:
    raw = _form_str(form, "kind") or "user"
    try:
        return FileKind(raw)
    except ValueError:
        raise InvalidRequest("kind must be one of: user, agent, skill") from None


def _check_size(services: Services, upload: UploadFile) -> None:
    size = upload.size if upload.size is not None else 0
    if size > services.settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"file {upload.filename!r} is larger than {services.settings.max_upload_bytes} bytes"
        )


def _store_upload(
    services: Services,
    who: Caller,
    session_id: str,
    upload: UploadFile,
    kind: FileKind,
    read_only: bool,
) -> FileMeta:
    _check_size(services, upload)
    incoming = access.Incoming(upload.filename or "", upload.file, upload.content_type)
    return access.upload_file(
        services.store, who, session_id, incoming, kind=kind, read_only=read_only
    )


async def _upload(request: Request, services: Services, who: Caller, batch: bool) -> UploadOut:
    max_files = services.settings.max_batch_files if batch else 16
    form, files = await _form_files(request, max_files=max_files)
    try:
        who = with_asserted_user(who, *_asserted_form(form))
        kind = _upload_kind(form)
        read_only = (_form_str(form, "read_only") or "").lower() == "true"
        session_id = await run_in_threadpool(
            access.resolve_upload_session,
            services.store,
            who,
            _form_str(form, "session_id") or request.query_params.get("session_id"),
        )
        out: list[UploadedOut] = []
        for upload in files:
            try:
                meta = await run_in_threadpool(
                    _store_upload, services, who, session_id, upload, kind, read_only
                )
                out.append(
                    UploadedOut(
                        fileId=meta.file_id, filename=meta.name, status="success" if batch else None
                    )
                )
            except (InvalidRequest, PayloadTooLarge) as exc:
                if not batch:
                    raise
                out.append(
                    UploadedOut(filename=upload.filename or "", status="error", error=exc.message)
                )
    finally:
        await form.close()
    return _upload_answer(session_id, out, batch)


def _asserted_form(form: Any) -> list[str | None]:
    kind = _form_str(form, "kind")
    return [_form_str(form, "id") if kind in (None, "user") else None]


def _upload_answer(session_id: str, out: list[UploadedOut], batch: bool) -> UploadOut:
    ok = sum(1 for f in out if f.fileId)
    if not batch:
        message = "success"
    else:
        message = "success" if ok == len(out) else "partial_success" if ok else "error"
    return UploadOut(
        message=message,
        session_id=session_id,
        storage_session_id=session_id,
        files=out,
        succeeded=ok if batch else None,
        failed=len(out) - ok if batch else None,
    )


async def _probe(services: Services, probe: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.run_in_executor(services.probe_executor, probe), READY_PROBE_TIMEOUT_S
        )
        return {"ok": True}
    except CodeInterpreterError as exc:
        return {"ok": False, "error": exc.code, "message": exc.message}
    except TimeoutError:
        return {"ok": False, "error": "timeout", "message": "no answer within 2 s"}


def _shows_ready_details(services: Services, request: Request) -> bool:
    setting = services.settings.ready_details
    return setting == "public" or (setting == "auth" and caller_of(request.scope) is not None)


def _add_ops_routes(router: APIRouter, metrics_on: bool) -> None:
    @router.get("/health", tags=OPS)
    async def health() -> dict[str, str]:
        """Liveness: the process answers (on the event loop: no thread needed)."""
        return {"status": "ok"}

    @router.get("/ready", tags=OPS)
    async def ready(services: ServicesDep, request: Request) -> JSONResponse:
        """Readiness: the Docker engine and the store, probed on their own threads with
        a timeout; details for authenticated callers (RCE_READY_DETAILS)."""
        checks = {
            "docker": await _probe(services, services.sandbox.ping),
            "storage": await _probe(services, services.store.ping),
        }
        ok = all(c["ok"] for c in checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable"}
        if _shows_ready_details(services, request):
            body.update(checks)
        return JSONResponse(body, status_code=200 if ok else 503)

    if metrics_on:

        @router.get("/metrics", tags=OPS, include_in_schema=False)
        def metrics(services: ServicesDep) -> Response:
            """Prometheus metrics."""
            return Response(
                generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST
            )


def build_router(*, metrics_on: bool = True) -> APIRouter:
    """All routes; the app mounts them at ``/`` and again under ``/v1``."""
    router = APIRouter()
    _add_ops_routes(router, metrics_on)

    @router.post(
        "/exec", tags=router_tags, response_model=ExecOut, response_model_exclude_none=True
    )
    @router.post(
        "/run/exec",
        tags=router_tags,
        response_model=ExecOut,
        include_in_schema=False,
        response_model_exclude_none=True,
    )
    async def exec_code(body: ExecIn, who: CallerDep, services: ServicesDep) -> ExecOut:
        """Run code in a fresh sandbox. A failing program is a 200 with ``stderr``.
        Admission is bounded (RCE_MAX_CONCURRENT_EXECS, RCE_EXEC_QUEUE_SIZE): 429 or 503
        with ``Retry-After`` when the service is full."""
        who = with_asserted_user(who, body.user_id)
        request_id = current_request_id()
        return await services.exec_gate.run(lambda: _run_exec(services, who, body, request_id))

    @router.post(
        "/upload", tags=router_tags, response_model=UploadOut, response_model_exclude_none=True
    )
    async def upload(request: Request, who: CallerDep, services: ServicesDep) -> UploadOut:
        """Upload one file (multipart ``file``) into a new or given session."""
        return await _upload(request, services, who, batch=False)

    @router.post(
        "/upload/batch",
        tags=router_tags,
        response_model=UploadOut,
        response_model_exclude_none=True,
    )
    async def upload_batch(request: Request, who: CallerDep, services: ServicesDep) -> UploadOut:
        """Upload several files; each gets a ``status``."""
        return await _upload(request, services, who, batch=True)

    @router.get("/files/{session_id}", tags=router_tags)
    def list_files(
        session_id: str,
        who: CallerDep,
        services: ServicesDep,
        detail: Annotated[Detail, Query()] = "simple",
    ) -> list[Any]:
        """The session's files, in LibreChat's ``detail`` shapes."""
        return [file_entry(m, detail) for m in access.list_files(services.store, who, session_id)]

    @router.get("/sessions/{session_id}/objects/{file_id}", tags=router_tags)
    def object_meta(
        session_id: str, file_id: str, who: CallerDep, services: ServicesDep
    ) -> dict[str, Any]:
        """One file's metadata, with ``lastModified``."""
        return object_info(access.stat_file(services.store, who, session_id, file_id))

    @router.get("/download/{session_id}/{file_ref:path}", tags=router_tags)
    def download(
        session_id: str, file_ref: str, who: CallerDep, services: ServicesDep
    ) -> StreamingResponse:
        """Stream a file by id (LibreChat) or by name (the original README)."""
        return _download_response(_open_by_ref(services, who, session_id, file_ref))

    @router.delete("/files/{session_id}/{file_id}", tags=router_tags)
    def delete(
        session_id: str, file_id: str, who: CallerDep, services: ServicesDep
    ) -> dict[str, str]:
        """Delete one file."""
        access.delete_file(services.store, who, session_id, file_id)
        return {"message": "deleted", "session_id": session_id, "file_id": file_id}

    return router
