"""Request and response models of the HTTP API (LibreChat's contract, both eras,
and the original README's fields together)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.names import WORKSPACE
from runner.service import ExecOutcome
from storage.base import FileMeta


def _check_encodable(text: str) -> None:
    """JSON may carry lone surrogates (``"\\ud800"``); they are not text we can run."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("strings must be valid Unicode (no lone surrogates)") from None


class FileRefIn(BaseModel):
    """An entry of ``files[]``: current ``{id, resource_id, name, storage_session_id,
    kind}`` or legacy ``{id, session_id, name}``."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(max_length=64)
    name: str | None = Field(None, max_length=4096)
    storage_session_id: str | None = Field(None, max_length=64)
    session_id: str | None = Field(None, max_length=64)
    resource_id: str | None = Field(None, max_length=256)
    kind: str | None = Field(None, max_length=32)
    version: str | int | None = None


class ExecIn(BaseModel):
    """``POST /exec``. Unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    code: str
    lang: str = "py"
    args: list[str] | None = None
    session_id: str | None = Field(None, max_length=64)
    files: list[FileRefIn] | None = Field(None, max_length=1000)
    user_id: str | None = Field(None, max_length=256)
    #: Milliseconds, capped by the server (RCE_MAX_RUN_TIMEOUT_S).
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)
    entity_id: str | None = Field(None, max_length=256)
    LIBRECHAT_CODE_API_KEY: str | None = Field(None, max_length=1024)

    @field_validator("args", mode="before")
    @classmethod
    def _args_as_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value

    @model_validator(mode="after")
    def _text_is_unicode(self) -> ExecIn:
        texts = [self.code, self.lang, self.session_id, self.user_id, *(self.args or [])]
        for ref in self.files or []:
            texts += [ref.id, ref.name, ref.storage_session_id, ref.session_id]
        for text in texts:
            if text is not None:
                _check_encodable(text)
        return self


class ExecFileOut(BaseModel):
    """A file in the exec answer."""

    id: str
    name: str
    storage_session_id: str
    session_id: str
    path: str
    inherited: bool | None = None


class SkippedOut(BaseModel):
    """An output file that was not saved, and why."""

    name: str
    reason: str


class ExecOut(BaseModel):
    """The exec answer: LibreChat's fields and the original README's together."""

    session_id: str
    stdout: str
    stderr: str
    exit_code: int
    output: str
    files: list[ExecFileOut]
    deleted_files: list[str]
    timed_out: bool
    oom_killed: bool
    stdout_truncated: bool
    stderr_truncated: bool
    output_truncated: bool
    skipped_files: list[SkippedOut]
    duration_ms: int

    @classmethod
    def from_outcome(cls, outcome: ExecOutcome) -> ExecOut:
        """Build the answer from the use case's outcome."""
        run = outcome.run
        return cls(
            session_id=outcome.session_id,
            stdout=run.stdout,
            stderr=run.stderr,
            exit_code=run.exit_code,
            output=run.stdout + run.stderr,
            files=[
                ExecFileOut(
                    id=f.file_id,
                    name=f.name,
                    storage_session_id=f.session_id,
                    session_id=f.session_id,
                    path=f"{WORKSPACE}/{f.name}",
                    inherited=True if f.inherited else None,
                )
                for f in outcome.files
            ],
            deleted_files=outcome.deleted_files,
            timed_out=run.timed_out,
            oom_killed=run.oom_killed,
            stdout_truncated=run.stdout_truncated,
            stderr_truncated=run.stderr_truncated,
            output_truncated=run.stdout_truncated or run.stderr_truncated,
            skipped_files=[SkippedOut(name=s.name, reason=s.reason) for s in run.skipped],
            duration_ms=round(run.duration_s * 1000),
        )


class UploadedOut(BaseModel):
    """One uploaded file (batch adds ``status``/``error``)."""

    fileId: str | None = None
    filename: str
    status: str | None = None
    error: str | None = None


class UploadOut(BaseModel):
    """``POST /upload`` and ``/upload/batch``."""

    message: str
    session_id: str
    storage_session_id: str
    files: list[UploadedOut]
    succeeded: int | None = None
    failed: int | None = None


def iso(ts: datetime) -> str:
    """``2026-11-27T15:20:00.123Z``: what ``new Date()`` parses."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _metadata(meta: FileMeta) -> dict[str, Any]:
    return {
        "content-type": meta.content_type,
        "original-filename": meta.name,
        "kind": meta.kind.value,
        "read-only": str(meta.read_only).lower(),
        "sha256": meta.sha256,
    }


def file_entry(meta: FileMeta, detail: str) -> Any:
    """One item of ``GET /files/{sid}`` in the shape ``detail`` asks for."""
    if detail == "simple":
        return meta.object_name
    summary = {
        "name": meta.object_name,
        "id": meta.file_id,
        "fileId": meta.file_id,
        "size": meta.size,
        "lastModified": iso(meta.last_modified),
        "etag": meta.etag or meta.sha256,
    }
    if detail == "summary":
        return summary
    common = {
        "id": meta.file_id,
        "storage_session_id": meta.session_id,
        "session_id": meta.session_id,
        "contentType": meta.content_type,
        "resource_id": meta.owner.user or None,
        "kind": meta.kind.value,
    }
    if detail == "normalized":
        return {
            **common,
            "name": meta.name,
            "size": meta.size,
            "lastModified": summary["lastModified"],
        }
    return {**summary, **common, "metadata": _metadata(meta), "versionId": meta.etag or None}


def object_info(meta: FileMeta) -> dict[str, Any]:
    """``GET /sessions/{sid}/objects/{fid}``."""
    return {
        "name": meta.object_name,
        "id": meta.file_id,
        "storage_session_id": meta.session_id,
        "originalFilename": meta.name,
        "size": meta.size,
        "lastModified": iso(meta.last_modified),
        "etag": meta.etag or meta.sha256,
        "contentType": meta.content_type,
        "readOnly": meta.read_only,
        "kind": meta.kind.value,
        "sha256": meta.sha256,
    }
