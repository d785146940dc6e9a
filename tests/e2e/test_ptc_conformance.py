"""Programmatic tool calling through LibreChat's own PTC tools, against two live API
processes that share the engine, the store and the continuation token secret.

``tests/conformance/ptc_tools.mjs`` defines real LangChain tools and drives
``run_tools_with_code``, ``run_tools_with_bash`` and the workspace bash tool; its
proxy sends every continuation to the second process, so each resumed round trip
is served by another replica than the one that started the program. A last test
kills the API between two round trips and checks the paused sandbox does not
outlive its wait cap.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from runner import _docker_config as cfg
from tests.e2e.test_librechat_conformance import (
    Credentials,
    _failure_text,
    _run_script,
    credentials,  # noqa: F401 - a fixture used by name
    node,  # noqa: F401 - a fixture used by name
)
from tests.support.live_server import LiveServer, live_server, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

SECRET = secrets.token_urlsafe(32)


def _env(
    folder: Path, creds: Credentials, image: str, pool_size: int = 1, **extra: str
) -> dict[str, str]:
    return server_env(
        storage=f"file://{folder}",
        api_key=creds.api_key,
        jwt_public_key_file=creds.public_key_file,
        pool_size=pool_size,
        extra={"RCE_IMAGE_NAME": image, "RCE_PTC_TOKEN_SECRET": SECRET, **extra},
    )


@pytest.fixture(scope="module")
def replicas(
    credentials: Credentials,  # noqa: F811
    sandbox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two API processes on one folder store and one token secret."""
    folder = tmp_path_factory.mktemp("ptc-store")
    logs = tmp_path_factory.mktemp("ptc-logs")
    env = _env(folder, credentials, sandbox_image)
    with live_server(env, log_dir=logs) as a, live_server(env, log_dir=logs) as b:
        yield a, b


@pytest.mark.timeout(400)
def test_ptc_through_the_client_across_two_replicas(
    node: str,  # noqa: F811
    replicas: tuple[LiveServer, LiveServer],
    credentials: Credentials,  # noqa: F811
) -> None:
    """Every check of ptc_tools.mjs passes, with continuations served by replica B."""
    a, b = replicas
    report = _run_script(
        node, "ptc_tools.mjs", a, credentials, extra={"RCE_BASE_URL_B": b.base_url}
    )
    failed = [r for r in report["results"] if not r["ok"]]
    assert report["results"], "ptc_tools.mjs ran no checks"
    assert not failed, _failure_text(report, a) + "\nreplica B:\n" + b.log_tail(3000)
    assert a.alive() and b.alive()


@pytest.mark.timeout(300)
def test_api_killed_between_round_trips_leaves_no_orphan_past_the_cap(
    credentials: Credentials,  # noqa: F811
    sandbox_image: str,
    tmp_path: Path,
) -> None:
    """SIGKILL the API while its program waits for tool results: the sandbox (taken
    from the warm pool) stops itself once RCE_PTC_MAX_WAIT_S passes, and the reaper
    of a surviving replica removes it. A reused request id meanwhile is a 409."""
    wait_cap_s = 4.0
    env = _env(tmp_path / "store", credentials, sandbox_image, RCE_PTC_MAX_WAIT_S=str(wait_cap_s))
    headers = {"X-API-Key": credentials.api_key, "User-Id": "ptc-killed"}
    request_id = f"killed-{secrets.token_hex(6)}"
    client = docker.from_env()
    run_names = {"name": f"^/{cfg.PTC_PREFIX}{cfg.ptc_key(request_id)}-"}
    with live_server(env, log_dir=tmp_path) as doomed:
        assert _pool_ready(doomed.base_url, headers), "the warm pool never filled"
        answer = httpx.post(
            f"{doomed.base_url}/exec/programmatic",
            json={"code": "print(await t())", "tools": [{"name": "t"}], "timeout": 10000},
            headers={**headers, "X-LibreChat-Code-Request-ID": request_id},
            timeout=60,
        ).json()
        assert answer["status"] == "tool_call_required", answer
        paused = client.containers.list(filters=run_names)
        assert len(paused) == 1, "the paused program has no live container"
        assert paused[0].labels.get("org.rce.pool") == "1", "the run did not take a pooled sandbox"
        again = httpx.post(
            f"{doomed.base_url}/exec/programmatic",
            json={"code": "print(1)", "tools": [{"name": "t"}]},
            headers={**headers, "X-LibreChat-Code-Request-ID": request_id},
            timeout=60,
        )
        assert again.status_code == 409, again.text
        doomed.process.kill()
        doomed.process.wait(10)
    paused[0].wait(timeout=wait_cap_s + 20)
    paused[0].reload()
    assert paused[0].status == "exited", "the paused sandbox outlived its wait cap"
    (tmp_path / "survivor").mkdir()
    with live_server(env, log_dir=tmp_path / "survivor") as survivor:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = client.containers.list(all=True, filters=run_names)
            if not left:
                break
            time.sleep(0.5)
        assert not left, "the reaper left the exited sandbox behind"
        late = httpx.post(
            f"{survivor.base_url}/exec/programmatic",
            json={"continuation_token": answer["continuation_token"], "tool_results": []},
            headers=headers,
            timeout=30,
        )
        assert late.status_code == 410, late.text


def _pool_ready(base_url: str, headers: dict[str, str], timeout_s: float = 120) -> bool:
    """True once the API's light warm pool holds a ready container."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10).text
        for line in metrics.splitlines():
            if line.startswith("rce_pool_size_light") and float(line.split()[-1]) >= 1:
                return True
        time.sleep(0.5)
    return False
