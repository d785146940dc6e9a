"""Docker fixtures: a real engine and the sandbox image (``docker`` marker), with leak checks.

Every container a test starts carries ``org.rce.test-run=<RUN_ID>`` (``run_labels``;
``make_sandbox`` adds it to every sandbox). When the session ends, no container
with this label may be left: stragglers are removed and the session fails.

``RCE_TEST_RUNTIME`` (e.g. ``runsc``) is the runtime of every sandbox made here and
of every API server the tests start. The image is ``RCE_IMAGE_NAME`` (both are read
when the plugin loads, before the tests' environment is cleaned) or
``custom-rce-kernel:latest``; build it with ``images/build.sh``. Without an engine or
the image, the tests are skipped locally and fail in CI
(``tests.support.services.service_missing``).

Every sandbox of the session keeps its pools at their configured sizes
(``TEST_POOL_BUDGET_MB``) unless the test passes its own ``pool_budget_mb``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import docker
import docker.errors
import pytest

from runner._docker_config import is_gvisor
from runner.base import InputFile, Language, Limits, RunRequest, RunResult
from runner.docker import DockerSandbox
from tests.support.services import service_missing

IMAGE = os.environ.get("RCE_IMAGE_NAME") or "custom-rce-kernel:latest"
#: The OCI runtime every sandbox of the session runs under (``RCE_TEST_RUNTIME=runsc``
#: runs the Docker tiers under gVisor; unset: the engine default, runc). Servers the
#: tests start get it as ``RCE_RUNTIME``.
TEST_RUNTIME = os.environ.get("RCE_TEST_RUNTIME") or None
#: True when the sandboxes of this session run under gVisor.
UNDER_GVISOR = is_gvisor(TEST_RUNTIME)
#: Added to wall-clock bounds that include a container start or removal. Measured on
#: the 2-core development VM under gVisor (ptrace): a bare start takes 0.46 s instead of
#: 0.25 s quiet and up to 7 s instead of 4.6 s under load, a data agent's preload
#: (pandas, matplotlib) 1.6 s instead of 0.6 s, and removing a container that ran a
#: busy program several seconds more; the runsc pass under load saw such runs 1-23 s
#: over the runc bounds (a 2 s run took 35 s of wall time with a data pool). Tests that
#: use it also bound the run's own ``duration_s`` without it where that is the point.
START_SLACK_S = 25.0 if UNDER_GVISOR else 0.0
#: The warm pools' memory budget of every sandbox the tests build, unless a
#: test passes its own: the floors only. A test runs its execs back to back, which grows
#: a pool to 1.2 times each burst under the production default; the refills of such
#: pools (seconds of CPU each for a data sandbox, more under gVisor) then shared the two
#: cores of the test machine with every later timed run and doubled the suite's time.
#: The tests of growth (``tests/integration/test_pool.py``) set a budget.
TEST_POOL_BUDGET_MB = 0.0
RUN_ID = secrets.token_hex(6)
TEST_RUN_LABEL = "org.rce.test-run"
RUN_LABELS = {TEST_RUN_LABEL: RUN_ID}


@dataclass(frozen=True)
class Listed:
    """One container as ``GET /containers/json`` lists it."""

    name: str
    state: str
    labels: dict[str, str]


def our_containers(client: docker.DockerClient, **labels: str) -> list[Listed]:
    """Containers (any state) of this test session, optionally with more labels.

    One list call, no inspect per container: containers removed meanwhile do not
    make it fail.
    """
    wanted = [f"{TEST_RUN_LABEL}={RUN_ID}", *(f"{k}={v}" for k, v in labels.items())]
    return [
        Listed(
            name=(item.get("Names") or ["/?"])[0].lstrip("/"),
            state=item.get("State", ""),
            labels=item.get("Labels") or {},
        )
        for item in client.api.containers(all=True, filters={"label": wanted})
    ]


def wait_until_gone(
    client: docker.DockerClient, timeout_s: float = 20.0, **labels: str
) -> list[str]:
    """Wait for this session's containers (with ``labels``) to disappear; names left."""
    end = time.monotonic() + timeout_s
    while True:
        left = [c.name for c in our_containers(client, **labels)]
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.2)


def input_file(name: str, data: bytes, chunk: int = 64 * 1024) -> InputFile:
    """An input streamed in ``chunk``-sized pieces, as the store would."""

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return InputFile(
        name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), open=chunks
    )


def is_pooled(sandbox: DockerSandbox) -> bool:
    return sandbox.stats()["pool_target"] > 0


def execute(
    sandbox: DockerSandbox,
    code: str,
    *,
    lang: Language = Language.PYTHON,
    files: tuple[InputFile, ...] = (),
    args: tuple[str, ...] = (),
    exec_id: str | None = None,
    **limits: Any,
) -> RunResult:
    """Run ``code``; on a pooled sandbox, check the run really used a warm container."""
    request = RunRequest(
        language=lang,
        code=code,
        args=args,
        files=files,
        limits=replace(Limits(), **limits),
        exec_id=exec_id or secrets.token_hex(6),
    )
    if not is_pooled(sandbox):
        return sandbox.run(request)
    assert sandbox.wait_pool_ready(120), sandbox.stats()
    hits = sandbox.stats()["pool_hits"]
    result = sandbox.run(request)
    assert sandbox.stats()["pool_hits"] == hits + 1, "the run did not use the warm pool"
    return result


#: (start time, node id) of every test, in order: names the test a leak came from.
_STARTED: list[tuple[float, str]] = []


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _STARTED.append((time.time(), nodeid))


def describe_leak(item: Listed) -> str:
    """A left container with what created it: the test running at its creation."""
    created = item.labels.get("org.rce.created-at", "")
    during = "?"
    with contextlib.suppress(ValueError):
        at = float(created)
        during = next((node for start, node in reversed(_STARTED) if start <= at + 1), "?")
    exec_id = item.labels.get("org.rce.exec-id", "?")
    pooled = "pooled" if item.labels.get("org.rce.pool") else "not pooled"
    return f"{item.name} ({item.state}, {pooled}, exec {exec_id}, created during {during})"


@pytest.fixture(scope="session", autouse=True)
def _session_sandbox_defaults() -> Iterator[None]:
    """Every ``DockerSandbox`` a test builds (through ``make_sandbox`` or directly)
    runs under ``RCE_TEST_RUNTIME`` unless the test names a runtime, and has the pool
    budget ``TEST_POOL_BUDGET_MB`` unless the test passes one."""
    original = DockerSandbox.__init__

    @functools.wraps(original)
    def init(self: DockerSandbox, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("runtime") is None and TEST_RUNTIME:
            kwargs["runtime"] = TEST_RUNTIME
        kwargs.setdefault("pool_budget_mb", TEST_POOL_BUDGET_MB)
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DockerSandbox, "__init__", init)
        yield


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the real engine; at session end, checks nothing of ours is left."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        service_missing(f"no Docker engine answers ({exc}); run scripts/ensure-docker.sh")
    yield client
    left = wait_until_gone(client)
    leaks = [describe_leak(item) for item in our_containers(client) if item.name in left]
    for name in left:
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_container(name, force=True)
    client.close()
    if left:
        pytest.fail(f"containers left behind by the tests: {leaks or left}", pytrace=False)


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    """The sandbox image name; it must exist on the engine."""
    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        service_missing(f"sandbox image {IMAGE} is missing: build it with images/build.sh")
    return IMAGE


@pytest.fixture(scope="session")
def run_labels() -> dict[str, str]:
    """The label every container of this test session carries."""
    return dict(RUN_LABELS)


@pytest.fixture
def make_sandbox(
    docker_client: docker.DockerClient, sandbox_image: str, run_labels: dict[str, str]
) -> Iterator[Callable[..., DockerSandbox]]:
    """Build ``DockerSandbox``es on the test engine and image, labelled; closed after the test."""
    made: list[DockerSandbox] = []

    def make(**kwargs: Any) -> DockerSandbox:
        kwargs.setdefault("image", sandbox_image)
        kwargs.setdefault("labels", run_labels)
        kwargs.setdefault("runtime", TEST_RUNTIME)
        sandbox = DockerSandbox(docker_client, **kwargs)
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()
