"""``DockerProgramSandbox``: the ``ProgramSandbox`` port on a Docker engine.

A programmatic run takes a container from the usual warm pool (or starts one cold),
hardened like every sandbox (``runner._docker_config``). Every sandbox is created
with ``StdinOnce=false``: the engine keeps the container's stdin open when an attach
ends, so the API detaches while the program waits for tool results, and any replica
attaches again later to write the results and read the next event. The agent writes
to stdout only in answer to what the host wrote, so an attach made before the write
loses nothing (``runner/agent/rce_agent/ptc.py``).

The run is found by its container's name, ``rce-sbx-ptc-<key>-<expiry>``
(``cfg.ptc_name``): the key is a digest of the client's request id, so a duplicate
request id (409) and a cancel each cost one filtered list call; the expiry is when
the reaper removes the container, pushed forward by a rename at every pause to
"now + the wait cap + one run's budget". The agent itself ends a program left
waiting past the wait cap; the name's expiry is the host's backstop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import struct
import time
from typing import Any

import docker.errors

from core.errors import Conflict, ContinuationExpired, SandboxError, SandboxLost
from runner import _docker_config as cfg
from runner._docker_errors import already_gone, engine_errors
from runner._docker_stream import AttachedStream, StreamTimeout
from runner.base import RunRequest
from runner.docker import DockerSandbox
from runner.protocol import (
    FRAME,
    MAX_DATA_FRAME,
    MAX_RESULT_FRAME,
    ProtocolError,
    ReplyReader,
    build_result,
    encode_job_header,
    read_exact,
    write_job_files,
)
from runner.ptc import (
    Event,
    FinishedEvent,
    ProgramJob,
    ResultsFrame,
    ToolCall,
    ToolCallsEvent,
)

log = logging.getLogger(__name__)

EVENT, RESULTS, CANCEL = b"T", b"U", b"C"
_ATTACH = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
#: How long the sandbox may take to acknowledge a results or cancel frame.
ACK_TIMEOUT_S = 10.0
CANCEL_ANSWER_S = 2.0


def job_header(request: RunRequest, job: ProgramJob) -> bytes:
    """The agent's job header with the ``ptc`` object added."""
    plain = encode_job_header(request)
    header = json.loads(plain[8:])
    header["ptc"] = {
        "tools": [{"name": t.name, "py": t.py_name, "sh": t.sh_name} for t in job.tools],
        "nonce": job.nonce,
        "principal": job.principal,
        "wait_cap_s": job.wait_cap_s,
        "request_id": job.request_id,
    }
    body = json.dumps(header, ensure_ascii=True).encode("ascii")
    return plain[:4] + struct.pack(">I", len(body)) + body


def frame(kind: bytes, obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    return FRAME.pack(kind, len(payload)) + payload


def read_event(stream: AttachedStream, nonce: str, wait_s: float) -> dict[str, Any]:
    """The next T frame addressed to ``nonce``; other frames are skipped."""
    stream.got_reply = False
    stream.first_byte_deadline = time.monotonic() + wait_s
    stream.idle_s = cfg.IDLE_TIMEOUT_S
    stream.final_deadline = stream.first_byte_deadline + cfg.COLLECT_BUDGET_S
    while True:
        head = read_exact(stream, FRAME.size)
        if len(head) < FRAME.size:
            raise ProtocolError("the sandbox ended without answering")
        kind, size = FRAME.unpack(head)
        limit = MAX_RESULT_FRAME if kind == EVENT else max(MAX_DATA_FRAME, MAX_RESULT_FRAME)
        if size > limit:
            raise ProtocolError(f"frame of {size} bytes is over the limit")
        payload = read_exact(stream, size)
        if len(payload) < size:
            raise ProtocolError("reply ended inside a frame")
        if kind != EVENT:
            continue
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise ProtocolError(f"invalid event frame: {exc}") from None
        if isinstance(event, dict) and event.get("nonce") == nonce:
            stream.got_reply = False
            stream.first_byte_deadline = time.monotonic() + wait_s
            return event


def _calls(event: dict[str, Any]) -> ToolCallsEvent:
    raw = event.get("calls")
    round_no = event.get("round")
    if not isinstance(raw, list) or not isinstance(round_no, int):
        raise ProtocolError("tool_calls event without calls or round")
    calls = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ProtocolError("malformed tool call")
        calls.append(ToolCall(item["id"][:64], str(item.get("name"))[:256], item.get("input")))
    return ToolCallsEvent(round_no, tuple(calls))


class DockerProgramSandbox:
    """The ``ProgramSandbox`` port over a ``DockerSandbox``'s engine, pool and hardening."""

    def __init__(self, sandbox: DockerSandbox) -> None:
        self._sandbox = sandbox

    # ------------------------------------------------------------------ port

    def start(self, request: RunRequest, job: ProgramJob) -> tuple[str, Event]:
        """Take a pooled (or cold) container, send the job, read the first event."""
        header = job_header(request, job)
        key = cfg.ptc_key(job.request_id)
        if job.request_id and self._find(key):
            raise Conflict("X-LibreChat-Code-Request-ID is already used by a running program")
        name, stream = self._claim(request, key)
        try:
            stream.write_deadline = time.monotonic() + cfg.upload_budget_s(request)
            stream.write(header)
            if request.files:
                write_job_files(request.files, stream)
            return self._next(name, stream, request, job.nonce, key, job.wait_cap_s)
        except (StreamTimeout, OSError) as exc:
            self.discard(name)
            raise ContinuationExpired(
                f"the sandbox hung up while receiving the job: {exc}"
            ) from None
        finally:
            stream.close()

    def resume(
        self, container: str, request: RunRequest, frame_: ResultsFrame, wait_cap_s: float
    ) -> tuple[str, Event]:
        """Attach again, write the results, read the acknowledgement and the next event."""
        stream = self._attach(container)
        key = container[len(cfg.PTC_PREFIX) :].split("-", 1)[0]
        try:
            stream.write_deadline = time.monotonic() + 30.0
            stream.write(frame(RESULTS, _results_obj(frame_)))
            ack = read_event(stream, frame_.nonce, ACK_TIMEOUT_S)
            if ack.get("event") == "refused":
                reason = str(ack.get("reason"))
                if reason == "duplicate_request_id":
                    raise Conflict("X-LibreChat-Code-Request-ID was already used for this run")
                raise Conflict(
                    "this continuation token was already used (replayed or concurrent continuation)"
                )
            if ack.get("event") != "accepted":
                raise ProtocolError("the sandbox did not acknowledge the results")
            return self._next(container, stream, request, frame_.nonce, key, wait_cap_s)
        except (StreamTimeout, ProtocolError, OSError) as exc:
            self.discard(container)
            if isinstance(exc, StreamTimeout):
                raise ContinuationExpired(
                    "the paused program did not answer; run the code again"
                ) from None
            raise ContinuationExpired(f"the paused program is gone: {exc}") from None
        finally:
            stream.close()

    def cancel(self, request_id: str, principal: str) -> str:
        """Find the run serving ``request_id`` with one list call and ask its agent."""
        states = [
            self._ask_cancel(name, request_id, principal)
            for name in self._find(cfg.ptc_key(request_id))
        ]
        for state in ("cancelled", "foreign", "completed"):
            if state in states:
                return state
        return "unknown"

    def in_use(self, request_id: str) -> bool:
        """Whether a live program on this engine serves ``request_id``."""
        return bool(request_id) and bool(self._find(cfg.ptc_key(request_id)))

    def replayed(self, container: str) -> bool:
        """Whether the run ``container`` named is still there under another name (its
        token is then an old round's: a replay)."""
        if not container.startswith(cfg.PTC_PREFIX):
            return False
        key = container[len(cfg.PTC_PREFIX) :].split("-", 1)[0]
        return any(name != container for name in self._find(key))

    def discard(self, container: str) -> None:
        """Kill and remove in the background."""
        self._sandbox._remove_later(container)

    # --------------------------------------------------------------- helpers

    def _find(self, key: str) -> list[str]:
        """The names of the live containers of run ``key`` (one list call)."""
        api = self._sandbox._api()
        with engine_errors("list sandbox containers", self._sandbox.image):
            listed = api.containers(filters={"name": f"^/{cfg.PTC_PREFIX}{key}-"})
        names = []
        for item in listed:
            for raw in item.get("Names") or []:
                name = str(raw).lstrip("/")
                if name.startswith(f"{cfg.PTC_PREFIX}{key}-") and cfg.ptc_expiry(name):
                    names.append(name)
        return names

    def _claim(self, request: RunRequest, key: str) -> tuple[str, AttachedStream]:
        """A started container for the run, named for it: from the pool, else cold."""
        sandbox = self._sandbox
        name = cfg.ptc_name(key, time.time() + cfg.run_budget_s(request))
        pooled = sandbox._take_pooled(request, cfg.flavour_for(request))
        if pooled is None:
            cold = sandbox._start_cold(request, name=name)
            return cold.name, cold.stream
        container, _flavour = pooled
        try:
            self._rename(container.name, name)
        except BaseException:
            sandbox._discard(container)
            raise
        return name, container.stream

    def _rename(self, old: str, new: str) -> None:
        with engine_errors("rename the sandbox container", self._sandbox.image):
            self._sandbox._api().rename(old, new)

    def _attach(self, name: str) -> AttachedStream:
        api = self._sandbox._api()
        try:
            # No inspect first: an exited container answers EOF, read as "gone".
            with engine_errors("attach to the sandbox container", self._sandbox.image):
                return AttachedStream(api.attach_socket(name, params=dict(_ATTACH)))
        except SandboxError as exc:
            if already_gone(exc) or isinstance(exc.__cause__, docker.errors.NotFound):
                raise ContinuationExpired(
                    "the paused program is gone (expired, cancelled or finished); "
                    "run the code again"
                ) from None
            raise

    def _next(
        self,
        name: str,
        stream: AttachedStream,
        request: RunRequest,
        nonce: str,
        key: str,
        wait_cap_s: float,
    ) -> tuple[str, Event]:
        wait_s = request.limits.run_timeout_s + cfg.START_GRACE_S
        try:
            event = read_event(stream, nonce, wait_s)
            if event.get("event") == "tool_calls":
                calls = _calls(event)
                paused = cfg.ptc_name(key, time.time() + wait_cap_s + cfg.run_budget_s(request))
                try:
                    if paused != name:  # two pauses within one second: same expiry
                        self._rename(name, paused)
                except SandboxError as exc:
                    raise ProtocolError(f"could not extend the paused run: {exc.message}") from None
                return paused, calls
            if event.get("event") != "finished":
                raise ProtocolError(f"unexpected event {str(event.get('event'))[:40]!r}")
            reply = ReplyReader(stream, request).read()
            result = build_result(reply, request, duration_s=0.0)
            if reply.result is None:
                result.stderr += "rce: the sandbox stopped before the reply ended\n"
        except StreamTimeout:
            reply = ReplyReader(_Empty(), request).read()
            result = build_result(reply, request, duration_s=0.0, failure="timeout", timed_out=True)
        except (ProtocolError, OSError) as exc:
            if self._sandbox._final_state(name) is None:
                raise SandboxLost(
                    f"the Docker engine running this program stopped answering ({exc}); "
                    "the session's files are unchanged; run the code again"
                ) from None
            reply = ReplyReader(_Empty(), request).read()
            result = build_result(
                reply, request, duration_s=0.0, failure=f"lost the sandbox: {exc}"
            )
        self.discard(name)
        return name, FinishedEvent(result)

    def _ask_cancel(self, name: str, request_id: str, principal: str) -> str:
        nonce = secrets.token_hex(8)
        try:
            stream = self._attach(name)
        except (SandboxError, ContinuationExpired):
            return "unknown"
        try:
            stream.write_deadline = time.monotonic() + CANCEL_ANSWER_S
            stream.write(
                frame(CANCEL, {"request_id": request_id, "principal": principal, "nonce": nonce})
            )
            answer = read_event(stream, nonce, CANCEL_ANSWER_S)
            return str(answer.get("state", "unknown"))
        except (StreamTimeout, ProtocolError, OSError):
            return "unknown"
        finally:
            with contextlib.suppress(OSError):
                stream.close()


class _Empty:
    def read(self, size: int) -> bytes:
        return b""


def _results_obj(frame_: ResultsFrame) -> dict[str, Any]:
    return {
        "round": frame_.round,
        "nonce": frame_.nonce,
        "request_id": frame_.request_id,
        "results": [
            {
                "call_id": r.call_id,
                "result": r.result,
                "is_error": r.is_error,
                "error_message": r.error_message,
            }
            for r in frame_.results
        ],
    }
