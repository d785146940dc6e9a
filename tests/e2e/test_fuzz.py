"""Schema-driven fuzzing (schemathesis) of every operation in the app's OpenAPI.

The app runs in-process (ASGI) on ``InMemorySessionStore``, ``FakeSandbox`` and
``FakeProgramSandbox``: fast and deterministic, so every generated request reaches the handlers, the
validation and the error mapping without waiting for a container. Each operation
gets a bounded number of examples (positive and negative generation); no answer
may be a 5xx, and every 4xx must have the one JSON error shape.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from core.identity import Owner
from core.ids import new_id
from handler.app import create_app
from handler.settings import Settings
from runner.base import RunRequest, RunResult
from runner.fake import FakeSandbox
from runner.fake_ptc import FakeProgramSandbox
from storage.base import NewFile
from storage.memory import InMemorySessionStore

pytestmark = [pytest.mark.e2e]

KEY = "fuzz-key-0123456789"
HEADERS = {"X-API-Key": KEY, "User-Id": "fuzzer"}
MAX_EXAMPLES = 30
ERROR_KEYS = {"error", "message", "status", "request_id"}


def _echo(request: RunRequest) -> RunResult:
    """A run that echoes the code it was given (and fails when it says so)."""
    return RunResult(
        stdout=request.code[:200], stderr="", exit_code=1 if "fail" in request.code else 0
    )


@dataclass(frozen=True)
class Fuzzed:
    """The loaded schema and a session of the fuzzer's that exists in the store."""

    schema: Any
    session_id: str
    file_id: str


def _seed(store: InMemorySessionStore) -> tuple[str, str]:
    """One session of the fuzzer's with two files; (session id, first file id)."""
    session_id = new_id()
    ids = []
    for name in ("data.csv", "nested/report.txt"):
        meta = store.put(
            NewFile(session_id, new_id(), name, Owner("key", "fuzzer"), content_type="text/plain"),
            io.BytesIO(b"a,b\n1,2\n"),
        )
        ids.append(meta.file_id)
    return session_id, ids[0]


@pytest.fixture
def fuzzed() -> Fuzzed:
    """The app's OpenAPI, loaded from the ASGI app itself, and its seeded session."""
    store = InMemorySessionStore()
    session_id, file_id = _seed(store)
    app = create_app(
        Settings(api_keys=KEY, log_json=False, max_body_bytes=256 * 1024, docs_access="public"),
        store=store,
        sandbox=FakeSandbox(_echo, outputs={"out.txt": b"output"}),
        program_sandbox=FakeProgramSandbox([[("lookup", {"q": 1})]], RunResult("done\n", "", 0)),
        maintenance=False,
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    return Fuzzed(schema, session_id, file_id)


def error_shape(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Every 4xx carries ``error``, ``message``, ``status`` and ``request_id``."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict), f"error body is not an object: {body!r}"
        missing = ERROR_KEYS - set(body)
        assert not missing, f"error body lacks {sorted(missing)}: {body}"
        assert body["status"] == response.status_code, body
    return True


def _fuzz(
    operation: Any, mode: GenerationMode, path_parameters: dict[str, str] | None
) -> Counter[int]:
    """Up to ``MAX_EXAMPLES`` generated requests to one operation, each checked; the
    statuses they got. An operation with nothing to negate gets no negative case."""
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def one(case: schemathesis.Case[Any]) -> None:
        response = case.call_and_validate(headers=HEADERS, checks=[not_a_server_error, error_shape])
        statuses[response.status_code] += 1

    try:
        one()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
    return statuses


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("mode", "known_session"),
    [
        (GenerationMode.POSITIVE, False),
        (GenerationMode.POSITIVE, True),
        (GenerationMode.NEGATIVE, False),
    ],
    ids=["positive", "positive-known-session", "negative"],
)
def test_no_operation_answers_a_server_error(
    fuzzed: Fuzzed,
    mode: GenerationMode,
    known_session: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No generated request to any operation gets a 5xx; every 4xx is in the error
    shape. With ``known_session`` the path ids name the seeded session and file, so
    the requests reach the store. Failures of all operations are reported together."""
    operations = [result.ok() for result in fuzzed.schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    failures: list[str] = []
    seen: Counter[int] = Counter()
    for operation in operations:
        params = _known_ids(operation, fuzzed) if known_session else None
        try:
            seen += _fuzz(operation, mode, params)
        except Exception as exc:  # a schemathesis or hypothesis failure report
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    with capsys.disabled():
        print(
            f"\nfuzz [{mode.value}{', known session' if known_session else ''}]: "
            f"{len(operations)} operations, {seen.total()} requests "
            f"(statuses {dict(sorted(seen.items()))}), {len(failures)} failing operations"
        )
    assert not failures, "\n\n".join(failures)


def _known_ids(operation: Any, fuzzed: Fuzzed) -> dict[str, str]:
    """The seeded session and file ids for whichever of them the path takes."""
    known = {"session_id": fuzzed.session_id, "file_id": fuzzed.file_id}
    return {name: value for name, value in known.items() if "{" + name + "}" in operation.path}
