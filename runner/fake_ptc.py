"""``FakeProgramSandbox``: the ``ProgramSandbox`` port for tests, scripted and recording.

It runs nothing. It is given a script: for each round, the tool calls the program
makes (a list of ``(name, input)``), then the final ``RunResult``. ``start`` answers
the first round; each ``resume`` checks the round like the real sandbox does
(refusing a replayed one with ``Conflict``) and answers the next. ``frames``
records every results frame delivered, ``discarded`` every container let go.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from core.errors import Conflict, ContinuationExpired
from runner.base import RunRequest, RunResult
from runner.ptc import (
    Event,
    FinishedEvent,
    ProgramJob,
    ResultsFrame,
    ToolCall,
    ToolCallsEvent,
)


class FakeProgramSandbox:
    """A scripted ``ProgramSandbox``; see the module docstring."""

    def __init__(self, rounds: Sequence[Sequence[tuple[str, Any]]], result: RunResult) -> None:
        self.rounds = [list(r) for r in rounds]
        self.result = result
        self.started: list[tuple[RunRequest, ProgramJob, float]] = []
        self.frames: list[ResultsFrame] = []
        self.discarded: list[str] = []
        self.cancels: list[tuple[str, str]] = []
        self.container = ""
        self.round = 0
        self.request_ids: set[str] = set()
        self.principal = ""
        self.names: set[str] = set()

    def start(self, request: RunRequest, job: ProgramJob) -> tuple[str, Event]:
        if job.request_id and job.request_id in self.request_ids and not self._over():
            raise Conflict("X-LibreChat-Code-Request-ID is already used by a running program")
        self.started.append((request, job, job.wait_cap_s))
        self.container = "rce-sbx-ptc-" + secrets.token_hex(8)
        self.principal = job.principal
        self.request_ids.add(job.request_id)
        return self._next()

    def resume(
        self, container: str, request: RunRequest, frame: ResultsFrame, wait_cap_s: float
    ) -> tuple[str, Event]:
        if container != self.container or container in self.discarded:
            raise ContinuationExpired("the paused program is gone")
        if frame.request_id and frame.request_id in self.request_ids:
            raise Conflict("request id seen before")
        if frame.round != self.round:
            raise Conflict("this continuation token was already used")
        self.request_ids.add(frame.request_id)
        self.frames.append(frame)
        return self._next()

    def replayed(self, container: str) -> bool:
        """An earlier name of the run still paused (renamed at every pause)."""
        return container in self.names and container != self.container and not self._over()

    def cancel(self, request_id: str, principal: str) -> str:
        self.cancels.append((request_id, principal))
        if request_id not in self.request_ids:
            return "unknown"
        if principal != self.principal:
            return "foreign"
        self.discard(self.container)
        return "cancelled"

    def discard(self, container: str) -> None:
        self.discarded.append(container)

    def _over(self) -> bool:
        return self.container in self.discarded

    def _next(self) -> tuple[str, Event]:
        if self.round < len(self.rounds):
            self.round += 1
            calls = tuple(
                ToolCall(f"call_{self.round}_{i}", name, value)
                for i, (name, value) in enumerate(self.rounds[self.round - 1])
            )
            # The real adapter renames a paused container (its expiry moves on).
            self.container = f"{self.container.rsplit('-r', 1)[0]}-r{self.round}"
            self.names.add(self.container)
            return self.container, ToolCallsEvent(self.round, calls)
        self.discard(self.container)
        return self.container, FinishedEvent(self.result)
