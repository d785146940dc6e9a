"""``FakeSandbox``: the ``Sandbox`` port for tests, recording what it was asked to do.

It runs nothing. Each ``run()`` reads every input file through ``InputFile.open()``
(as the real sandbox streams them) into ``written_files``, records the request in
``ran`` and returns the scripted result, with freshly spooled copies of the output
files it was told to produce. ``error`` makes ``run()`` raise instead.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from runner.base import OutputFile, RunRequest, RunResult, SkippedFile


def _spool(name: str, data: bytes) -> OutputFile:
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - handed to the result
    spool.write(data)
    spool.seek(0)
    return OutputFile(
        name=name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=spool,  # type: ignore[arg-type]  # a SpooledTemporaryFile is a binary file
    )


class FakeSandbox:
    """A scripted ``Sandbox``; see the module docstring."""

    def __init__(
        self,
        result: RunResult | Callable[[RunRequest], RunResult] | None = None,
        *,
        outputs: Mapping[str, bytes] | None = None,
        deleted: Sequence[str] = (),
        skipped: Sequence[SkippedFile] = (),
        error: Exception | None = None,
        ping_error: Exception | None = None,
    ) -> None:
        """``result`` is returned by every run (default: exit 0, empty output), or
        computed from the request when it is a callable. ``outputs`` (name -> bytes),
        ``deleted`` and ``skipped`` are added to it."""
        self.result = result
        self.outputs = dict(outputs or {})
        self.deleted = list(deleted)
        self.skipped = list(skipped)
        self.error = error
        self.ping_error = ping_error
        #: Every request, in order.
        self.ran: list[RunRequest] = []
        #: name -> bytes of every input file of the last run.
        self.written_files: dict[str, bytes] = {}
        self.pings = 0
        self.reaped = 0
        self.reap_result = 0
        self.closed = False

    @property
    def ran_code(self) -> list[str]:
        """The code of every run, in order."""
        return [request.code for request in self.ran]

    def run(self, request: RunRequest) -> RunResult:
        """Record ``request``, read its inputs, return the scripted result."""
        self.ran.append(request)
        self.written_files = {}
        for item in request.files:
            chunks = item.open()
            try:
                self.written_files[item.name] = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        if self.error is not None:
            raise self.error
        base = self.result(request) if callable(self.result) else self.result
        if base is None:
            base = RunResult(stdout="", stderr="", exit_code=0)
        return replace(
            base,
            outputs=list(base.outputs) + [_spool(n, d) for n, d in self.outputs.items()],
            deleted=list(base.deleted) + self.deleted,
            skipped=list(base.skipped) + self.skipped,
        )

    def ping(self) -> None:
        self.pings += 1
        if self.ping_error is not None:
            raise self.ping_error

    def reap(self) -> int:
        self.reaped += 1
        return self.reap_result

    def close(self) -> None:
        self.closed = True
