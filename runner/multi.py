"""Several Docker engines behind one ``Sandbox`` (and one ``ProgramSandbox``).

``MultiEngineSandbox`` routes each run to one member engine, a ``Sandbox`` of its
own (with its own warm pools, removals and reaper), chosen by
``runner.placement.Placement``: a healthy engine with the least in-flight work.

Health: a background thread pings every engine each ``probe_interval_s`` (the
probe has its own short timeout); an engine failing the probe, or failing a run
with ``SandboxUnavailable``, leaves the rotation at once and rejoins on its first
good probe. A run whose engine failed before the program started (create, attach
or start) is placed again on another engine; a run lost mid-way
(``SandboxLost``) is not repeated: the client gets a 503 and the session's files
are unchanged, since outputs are synced only after a completed run.

``MultiEngineProgramSandbox`` does the same for programmatic runs. The container
reference it returns (and so the continuation token) is ``"<engine id>/<name>"``;
any replica listing the same engines resumes the run there. A cancel asks every
engine in the rotation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core.errors import (
    Conflict,
    SandboxError,
    SandboxLost,
    SandboxUnavailable,
)
from runner.base import RunRequest, RunResult, Sandbox
from runner.placement import Placement, join_ref, split_ref
from runner.ptc import Event, ProgramJob, ProgramSandbox, ResultsFrame

log = logging.getLogger(__name__)

#: Seconds between two health probes of every engine.
PROBE_INTERVAL_S = 5.0
_CANCEL_ORDER = ("cancelled", "foreign", "completed")


@dataclass(frozen=True, slots=True)
class Member:
    """One engine: its sandbox, its programmatic sandbox and its health probe."""

    id: str
    sandbox: Sandbox
    #: Raises ``SandboxError`` unless the engine answers (short timeout).
    probe: Callable[[], None]
    programs: ProgramSandbox | None = None


def _stats_of(sandbox: Sandbox) -> Mapping[str, int]:
    stats = getattr(sandbox, "stats", None)
    return dict(stats()) if callable(stats) else {}


class MultiEngineSandbox:
    """The ``Sandbox`` port over several engines; see the module docstring."""

    def __init__(
        self,
        members: list[Member],
        *,
        max_in_flight: int = 0,
        probe_interval_s: float = PROBE_INTERVAL_S,
        start_probing: bool = True,
    ) -> None:
        self.members: dict[str, Member] = {m.id: m for m in members}
        self.placement = Placement([m.id for m in members], max_in_flight=max_in_flight)
        self._interval = probe_interval_s
        self._stop = threading.Event()
        self._probes = ThreadPoolExecutor(
            max_workers=max(1, len(members)), thread_name_prefix="rce-engine-probe"
        )
        self._thread: threading.Thread | None = None
        if start_probing:
            self._thread = threading.Thread(
                target=self._probe_loop, name="rce-engines", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------------ port

    def run(self, request: RunRequest) -> RunResult:
        """Run on the best engine; place again if the engine fails before the program starts."""
        tried: list[str] = []
        while True:
            engine = self.placement.acquire(exclude=tried)
            tried.append(engine)
            try:
                return self.members[engine].sandbox.run(request)
            except SandboxLost as exc:
                self.engine_failed(engine, exc)
                raise
            except SandboxUnavailable as exc:
                self.engine_failed(engine, exc)
                if len(tried) >= len(self.members):
                    raise
                log.warning("engine %s failed before the run started; placing it again", engine)
            finally:
                self.placement.release(engine)

    def ping(self) -> None:
        """Probe every engine now; raise ``SandboxUnavailable`` unless one is healthy."""
        self.probe_all()
        if not any(s.healthy for s in self.placement.snapshot()):
            states = "; ".join(f"{s.id}: {s.reason}" for s in self.placement.snapshot())
            raise SandboxUnavailable(f"no Docker engine answers ({states})")

    def reap(self) -> int:
        """Reap on every engine in the rotation; raise only if none could be reaped."""
        reaped, errors = 0, []
        for engine, member in self.members.items():
            if not self.placement.is_healthy(engine):
                continue
            try:
                reaped += member.sandbox.reap()
            except SandboxError as exc:
                errors.append(f"{engine}: {exc.message}")
        if errors and len(errors) == len(self.members):
            raise SandboxUnavailable("reaper: " + "; ".join(errors))
        return reaped

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._probes.shutdown(wait=False, cancel_futures=True)
        closers = [
            threading.Thread(target=m.sandbox.close, name="rce-engine-close")
            for m in self.members.values()
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()

    # --------------------------------------------------------------- helpers

    def stats(self) -> dict[str, int]:
        """The members' counters summed, plus how many engines are in the rotation."""
        total: dict[str, int] = {}
        for member in self.members.values():
            for key, value in _stats_of(member.sandbox).items():
                total[key] = total.get(key, 0) + int(value)
        states = self.placement.snapshot()
        total["engines"] = len(states)
        total["engines_healthy"] = sum(1 for s in states if s.healthy)
        return total

    def wait_pool_ready(self, timeout_s: float = 60.0) -> bool:
        waits = [getattr(m.sandbox, "wait_pool_ready", None) for m in self.members.values()]
        return all(callable(w) and w(timeout_s) for w in waits)

    def engine_failed(self, engine: str, exc: BaseException) -> None:
        """A failure on use: ``engine`` leaves the rotation until a probe succeeds."""
        reason = getattr(exc, "message", str(exc))
        if self.placement.mark_down(engine, reason):
            log.warning("engine %s left the rotation: %s", engine, reason)

    def probe_all(self) -> None:
        """Probe every engine in parallel; update the rotation and the warm counts."""
        futures = {e: self._probes.submit(m.probe) for e, m in self.members.items()}
        for engine, future in futures.items():
            try:
                future.result(timeout=self._interval + 10)
            except Exception as exc:  # any probe failure means "down"
                self.engine_failed(engine, exc)
                continue
            ready = _stats_of(self.members[engine].sandbox).get("pool_size", 0)
            if self.placement.mark_up(engine, warm_ready=ready):
                log.warning("engine %s is back in the rotation", engine)

    def _probe_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.probe_all()
            except RuntimeError:  # the probe executor was shut down
                return
            self._stop.wait(self._interval)


class MultiEngineProgramSandbox:
    """The ``ProgramSandbox`` port over the engines of a ``MultiEngineSandbox``."""

    def __init__(self, multi: MultiEngineSandbox) -> None:
        self._multi = multi
        self._programs: dict[str, ProgramSandbox] = {}
        for engine, member in multi.members.items():
            if member.programs is not None:
                self._programs[engine] = member.programs

    def start(self, request: RunRequest, job: ProgramJob) -> tuple[str, Event]:
        placement = self._multi.placement
        if job.request_id:
            for _engine, programs in self._healthy():
                in_use = getattr(programs, "in_use", None)
                if callable(in_use) and in_use(job.request_id):
                    raise Conflict(
                        "X-LibreChat-Code-Request-ID is already used by a running program"
                    )
        tried: list[str] = []
        while True:
            engine = placement.acquire(exclude=tried)
            tried.append(engine)
            try:
                container, event = self._programs[engine].start(request, job)
                return join_ref(engine, container), event
            except SandboxLost as exc:
                self._multi.engine_failed(engine, exc)
                raise
            except SandboxUnavailable as exc:
                self._multi.engine_failed(engine, exc)
                if len(tried) >= len(self._programs):
                    raise
            finally:
                placement.release(engine)

    def resume(
        self, container: str, request: RunRequest, frame: ResultsFrame, wait_cap_s: float
    ) -> tuple[str, Event]:
        engine, name = self._locate(container)
        placement = self._multi.placement
        placement.hold(engine)
        try:
            new_name, event = self._programs[engine].resume(name, request, frame, wait_cap_s)
        except SandboxUnavailable as exc:
            self._multi.engine_failed(engine, exc)
            raise SandboxLost(
                f"the Docker engine {engine} holding this paused program does not answer; "
                "the session's files are unchanged; run the code again"
            ) from exc
        finally:
            placement.release(engine)
        return join_ref(engine, new_name), event

    def replayed(self, container: str) -> bool:
        try:
            engine, name = self._locate(container)
            return self._programs[engine].replayed(name)
        except SandboxError:
            return False

    def cancel(self, request_id: str, principal: str) -> str:
        states: list[str] = []
        for engine, programs in self._healthy():
            try:
                states.append(programs.cancel(request_id, principal))
            except SandboxUnavailable as exc:
                self._multi.engine_failed(engine, exc)
        for state in _CANCEL_ORDER:
            if state in states:
                return state
        return "unknown"

    def discard(self, container: str) -> None:
        try:
            engine, name = self._locate(container)
        except SandboxError:
            return
        self._programs[engine].discard(name)

    def _healthy(self) -> list[tuple[str, ProgramSandbox]]:
        placement = self._multi.placement
        return [(e, p) for e, p in self._programs.items() if placement.is_healthy(e)]

    def _locate(self, ref: str) -> tuple[str, str]:
        """The engine and container of ``ref``: ``SandboxLost`` when the engine is not
        one of this replica's or is out of the rotation."""
        engine, name = split_ref(ref)
        if engine not in self._programs:
            raise SandboxLost(
                f"the paused program ran on Docker engine {engine}, which this replica does "
                "not list (RCE_DOCKER_HOSTS); run the code again"
            )
        if not self._multi.placement.is_healthy(engine):
            raise SandboxLost(
                f"the Docker engine {engine} holding this paused program is out of the "
                "rotation (it fails its health check); run the code again"
            )
        return engine, name
