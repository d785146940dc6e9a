"""Under gVisor the warm pools still hide the container start.

A runsc container starts about twice as slowly as a runc one; a pooled exec must not
pay that start. The test compares, under ``runsc`` whatever ``RCE_TEST_RUNTIME`` is,
the median of cold runs with the median of pooled runs spaced so the pool refills.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import docker
import pytest

from runner.base import Language, Limits, RunRequest
from runner.docker import DockerSandbox
from runner.network import GVISOR_RUNTIME
from tests.support.docker_plugin import RUN_LABELS, TEST_RUNTIME
from tests.support.services import service_missing

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def runsc(docker_client: docker.DockerClient) -> str:
    if GVISOR_RUNTIME not in docker_client.info().get("Runtimes", {}):
        service_missing("runsc is not registered with the engine: run scripts/ensure-runsc.sh")
    return GVISOR_RUNTIME


def _median_s(sandbox: DockerSandbox, n: int) -> float:
    """Median wall time of ``n`` runs; a pooled sandbox is refilled before each (untimed)."""
    took = []
    for i in range(n):
        pooled = sandbox.stats()["pool_target"] > 0
        if pooled:
            assert sandbox.wait_pool_ready(120), sandbox.stats()
        hits = sandbox.stats()["pool_hits"]
        started = time.monotonic()
        result = sandbox.run(request(f"runsc-pool-{i}"))
        took.append(time.monotonic() - started)
        assert result.stdout == "4\n", result
        assert sandbox.stats()["pool_hits"] == hits + pooled
    return statistics.median(took)


def request(exec_id: str) -> RunRequest:
    return RunRequest(language=Language.PYTHON, code="print(2+2)", limits=Limits(), exec_id=exec_id)


def test_pooled_execs_do_not_pay_the_runsc_start(
    make_sandbox: Callable[..., DockerSandbox], runsc: str
) -> None:
    cold = make_sandbox(runtime=runsc)
    pooled = make_sandbox(runtime=runsc, pool_size=1, pool_limits=Limits())
    assert pooled.wait_pool_ready(120)
    cold_s = _median_s(cold, 5)
    pooled_s = _median_s(pooled, 5)
    assert pooled_s < cold_s * 0.6, (pooled_s, cold_s)


def test_the_session_runtime_reaches_every_sandbox(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    """A sandbox built directly (not through ``make_sandbox``) runs under
    ``RCE_TEST_RUNTIME`` too: gVisor reports its own kernel version, 4.4.0."""
    sandbox = DockerSandbox(docker_client, image=sandbox_image, labels=RUN_LABELS)
    try:
        result = sandbox.run(
            RunRequest(
                language=Language.BASH, code="uname -r", limits=Limits(), exec_id="runtime-check"
            )
        )
    finally:
        sandbox.close()
    under_gvisor = result.stdout.strip() == "4.4.0"
    assert under_gvisor == (TEST_RUNTIME == GVISOR_RUNTIME), (result.stdout, TEST_RUNTIME)
