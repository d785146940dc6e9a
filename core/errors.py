"""The one error tree of the service.

Every error the service raises on purpose is a ``CodeInterpreterError``. Adapters
translate third-party exceptions (botocore, docker) into these at their edge, with
``raise ... from exc``; ``handler.errors`` maps each class to an HTTP status in one
table. A failure *inside the user's program* is never an error: it is a result.

    CodeInterpreterError
    ├── InvalidRequest                 400  the request itself is wrong
    │   ├── UnsupportedLanguage        400  ``lang`` is not one we run
    │   └── InvalidId                  400  a session or file id has the wrong shape
    ├── PayloadTooLarge                413  a body, code or file is over its limit
    │   └── InputsTooLarge             413  an exec's inputs do not fit its workspace
    ├── AuthenticationFailed           401  missing, wrong or expired credentials
    ├── AccessDenied                   403  the caller does not own that session or file
    │   └── ReadOnlyFile               403  the file is read-only: it cannot be changed or deleted
    ├── Conflict                       409  replayed continuation or duplicate request id
    ├── ContinuationExpired            410  the paused program is gone (expired or over)
    ├── NotFound                       404
    │   ├── SessionNotFound            404  no such session
    │   └── FileNotFound               404  no such file in the session
    ├── StorageError                   503  the session store failed
    │   ├── StorageUnavailable         503  unreachable, 5xx or throttled after retries
    │   └── StoragePermissionDenied    503  the store refused our credentials
    ├── Overloaded                          the service is at capacity (``Retry-After``)
    │   ├── ExecQueueFull              429  every exec slot is busy and the queue is full
    │   └── ExecQueueTimeout           503  the exec waited in the queue too long
    └── SandboxError                   503  the container engine failed
        ├── SandboxUnavailable         503  no Docker engine answers
        ├── SandboxImageMissing        503  the sandbox image is not on the engine
        └── SandboxStartFailed         503  the engine refused to create or start it
"""

from __future__ import annotations


class CodeInterpreterError(Exception):
    """Base of every error the service raises on purpose."""

    #: A short machine-readable code, sent as ``error`` in the JSON body.
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CodeInterpreterError):
    """The request is malformed or asks for something we do not do."""

    code = "invalid_request"


class UnsupportedLanguage(InvalidRequest):
    """``lang`` names a language the sandbox does not run."""

    code = "unsupported_language"


class InvalidId(InvalidRequest):
    """A session or file id is not 21 characters of ``[A-Za-z0-9_-]``."""

    code = "invalid_id"


class PayloadTooLarge(CodeInterpreterError):
    """A request body, the code or an uploaded file is over its configured limit."""

    code = "payload_too_large"


class InputsTooLarge(PayloadTooLarge):
    """The files an exec would restore add up to more than its workspace holds."""

    code = "inputs_too_large"


class AuthenticationFailed(CodeInterpreterError):
    """Credentials are missing, wrong, expired or forged."""

    code = "unauthorized"


class AccessDenied(CodeInterpreterError):
    """The caller is authenticated but does not own the session or file."""

    code = "forbidden"


class ReadOnlyFile(AccessDenied):
    """The file was stored read-only (skill files, for example): no caller may replace
    or delete it; it expires with its session."""

    code = "read_only"


class NotFound(CodeInterpreterError):
    """The named resource does not exist."""

    code = "not_found"


class SessionNotFound(NotFound):
    """The session has no files (it never existed or has expired)."""

    code = "session_not_found"


class FileNotFound(NotFound):
    """The session exists but holds no file with that id or name."""

    code = "file_not_found"


class StorageError(CodeInterpreterError):
    """The session store failed; the request may be retried."""

    code = "storage_error"


class StorageUnavailable(StorageError):
    """The store is unreachable, answered 5xx or throttled us, after bounded retries."""

    code = "storage_unavailable"


class StoragePermissionDenied(StorageError):
    """The store refused our credentials (check the S3 keys and bucket policy)."""

    code = "storage_permission_denied"


class Overloaded(CodeInterpreterError):
    """The service is at capacity; the client should retry after ``retry_after_s``."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ExecQueueFull(Overloaded):
    """Every exec slot is busy and the wait queue is full (RCE_EXEC_QUEUE_SIZE)."""

    code = "exec_queue_full"


class ExecQueueTimeout(Overloaded):
    """An exec waited longer than RCE_EXEC_QUEUE_TIMEOUT_S for a slot."""

    code = "exec_queue_timeout"


class SandboxError(CodeInterpreterError):
    """The container engine failed before the user's code could run."""

    code = "sandbox_error"


class SandboxUnavailable(SandboxError):
    """No Docker engine answers at DOCKER_HOST (or the local socket)."""

    code = "sandbox_unavailable"


class SandboxLost(SandboxUnavailable):
    """The engine running (or holding) a run stopped answering mid-way; nothing was synced."""

    code = "sandbox_lost"


class SandboxImageMissing(SandboxError):
    """The sandbox image is not on the engine: build it with ``images/build.sh``."""

    code = "sandbox_image_missing"


class SandboxStartFailed(SandboxError):
    """The engine refused to create, start or talk to the sandbox container."""

    code = "sandbox_start_failed"


class Conflict(CodeInterpreterError):
    """A continuation token already used (replayed), or a request id already seen."""

    code = "conflict"


class ContinuationExpired(CodeInterpreterError):
    """A continuation token past its expiry, or whose paused program is no longer there."""

    code = "continuation_expired"
