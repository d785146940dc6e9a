"""Faults injected under the real API (uvicorn subprocess, real Docker engine, real
SeaweedFS): the store stops mid-exec, the engine goes away, the API is SIGKILLed
mid-exec and mid-upload, a sandbox is killed from outside. Each time the API answers
clearly and in bounded time, loses or tears no stored file, and recovers without a
restart.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import docker
import httpx
import pytest

from tests.e2e.conftest import (
    Api,
    EngineForwarder,
    Running,
    api_env,
    assert_error_shape,
    existing,
    force_remove,
    ok_json,
    s3_settings,
    sha256,
    snapshot,
    start_api,
)
from tests.support.s3_plugin import start_seaweed
from tests.support.seaweed import SeaweedServer

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

KEY = "faults-key-0123456789"
H = {"X-API-Key": KEY}
#: Longest a request may take to fail once its dependency is gone.
FAIL_FAST_S = 30.0


@pytest.fixture
def private_seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS of the test's own, since the test stops and restarts it."""
    server = start_seaweed(tmp_path / "seaweed")
    try:
        yield server
    finally:
        server.stop()


def _seed_session(api: Api) -> tuple[str, dict[str, str]]:
    """A session with an uploaded file (3 MB: multipart on S3) and an exec output."""
    up = ok_json(api.upload("seed.bin", os.urandom(3 * 1024 * 1024 + 17)))
    session_id = up["session_id"]
    run = ok_json(api.exec("open('made.txt', 'w').write('made by exec')", session_id=session_id))
    assert run["exit_code"] == 0, run
    before = snapshot(api, session_id)
    assert set(before) == {"seed.bin", "made.txt"}, before
    return session_id, before


def _in_background(pool: ThreadPoolExecutor, api: Api, code: str, **fields: object) -> Future:  # type: ignore[type-arg]
    return pool.submit(api.exec, code, **fields)


def _metric(api: Api, name: str) -> float:
    text = api.client.get("/metrics").text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_pool_ready(api: Api, want: int, timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while _metric(api, "rce_pool_size") < want:
        assert time.monotonic() < end, "the warm pool never filled"
        time.sleep(0.25)


# --- the store stops mid-exec ---------------------------------------------------------


@pytest.mark.s3
@pytest.mark.timeout(300)
@pytest.mark.parametrize("pool_size", [0, 1])
def test_store_outage_mid_exec_answers_503_keeps_files_and_recovers(
    private_seaweed: SeaweedServer,
    engine: EngineForwarder,
    sandbox_image: str,
    tmp_path: Path,
    pool_size: int,
) -> None:
    """SeaweedFS stops while an exec sleeps: the exec answers 503 with the JSON error
    shape, /ready names the store, earlier files come back byte-exact after the
    restart and the next exec succeeds on the same API process."""
    env = api_env(
        s3_settings(private_seaweed.endpoint),
        image=sandbox_image,
        engine=engine,
        api_key=KEY,
        pool_size=pool_size,
    )
    with start_api(env, tmp_path / "api", H) as running, ThreadPoolExecutor(1) as pool:
        api = running.api
        session_id, before = _seed_session(api)
        pending = _in_background(
            pool,
            api,
            "import time; time.sleep(3); open('out.txt', 'w').write('x')",
            session_id=session_id,
        )
        time.sleep(1.5)
        private_seaweed.stop()
        stopped = time.monotonic()
        response = pending.result(timeout=120)
        waited = time.monotonic() - stopped
        body = assert_error_shape(response, 503)
        assert body["error"].startswith("storage"), body
        assert waited < FAIL_FAST_S, f"the exec took {waited:.1f} s to fail"

        ready = api.ready()
        assert ready.status_code == 503, ready.text
        assert ready.json()["storage"]["ok"] is False, ready.text
        assert ready.json()["docker"]["ok"] is True, ready.text

        private_seaweed.start()
        assert snapshot(api, session_id) == before, "files changed across the outage"
        again = ok_json(api.exec("print(open('made.txt').read())", session_id=session_id))
        assert (again["exit_code"], again["stdout"]) == (0, "made by exec\n"), again
        after = snapshot(api, session_id)
        assert after == before, "a read-only exec changed the session"
        assert ok_json(api.ready())["status"] == "ok"
        assert running.server.alive()


# --- the engine goes away -------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("pool_size", [0, 1])
def test_engine_outage_answers_503_and_recovers_without_restart(
    docker_client: docker.DockerClient,
    engine: EngineForwarder,
    sandbox_image: str,
    tmp_path: Path,
    pool_size: int,
) -> None:
    """With the engine unreachable, /exec answers 503 and /ready says docker is down
    (storage up; uploads still work); once it is back, execs succeed on the same API
    process and no sandbox is left behind."""
    env = api_env(
        {"RCE_STORAGE": f"file://{tmp_path / 'store'}"},
        image=sandbox_image,
        engine=engine,
        api_key=KEY,
        pool_size=pool_size,
    )
    with start_api(env, tmp_path / "api", H) as running:
        api = running.api
        if pool_size:
            _wait_pool_ready(api, pool_size)
        first = ok_json(api.exec("print(6 * 7)"))
        assert first["stdout"] == "42\n", first

        engine.stop()
        started = time.monotonic()
        down = api.exec("print(1)")
        assert time.monotonic() - started < FAIL_FAST_S
        body = assert_error_shape(down, 503)
        assert body["error"].startswith("sandbox"), body
        ready = api.ready()
        assert ready.status_code == 503, ready.text
        assert ready.json()["docker"]["ok"] is False, ready.text
        assert ready.json()["storage"]["ok"] is True, ready.text
        uploaded = ok_json(api.upload("while-down.txt", b"stored while the engine is down"))

        engine.start()
        end = time.monotonic() + 30
        while api.ready().status_code != 200:
            assert time.monotonic() < end, "/ready stayed down after the engine came back"
            time.sleep(0.5)
        for attempt in range(3):
            back = ok_json(
                api.exec("print(open('while-down.txt').read())", session_id=uploaded["session_id"])
            )
            assert back["stdout"] == "stored while the engine is down\n", (attempt, back)
        assert running.server.alive()
    # The API stopped gracefully with the engine up: every sandbox it made is gone,
    # including any it failed to remove while the engine was unreachable.
    left = _wait_removed(docker_client, engine.created, 30.0)
    force_remove(docker_client, left)
    assert not left, f"sandboxes made during the outage test were never removed: {left}"


def _wait_removed(client: docker.DockerClient, names: list[str], timeout_s: float) -> list[str]:
    end = time.monotonic() + timeout_s
    while True:
        left = existing(client, list(names))
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.25)


# --- the API is killed ----------------------------------------------------------------


def _kill(running: Running) -> None:
    os.killpg(running.server.process.pid, signal.SIGKILL)
    running.server.process.wait(timeout=10)


def _deadline(client: docker.DockerClient, name: str) -> float:
    labels = client.api.inspect_container(name)["Config"]["Labels"]
    return float(labels["org.rce.deadline"])


@pytest.mark.s3
@pytest.mark.timeout(600)
def test_api_killed_mid_exec_orphan_reaped_and_no_partial_file(
    docker_client: docker.DockerClient,
    seaweed: SeaweedServer,
    engine: EngineForwarder,
    sandbox_image: str,
    tmp_path: Path,
) -> None:
    """SIGKILL the API while an exec sleeps (its program would overwrite one file and
    add another). After the orphan's deadline, a restarted API (same store) reaps it
    at start-up; the session shows no partial or half-replaced file and every file
    downloads whole."""
    env = api_env(
        s3_settings(seaweed.endpoint),
        image=sandbox_image,
        engine=engine,
        api_key=KEY,
        pool_size=0,
        extra={"RCE_RUN_TIMEOUT_S": "8", "RCE_REAPER_INTERVAL_S": "3600"},
    )
    with start_api(env, tmp_path / "first", H, check_tmp=False) as first:
        session_id, before = _seed_session(first.api)
        known = set(engine.created)
        with ThreadPoolExecutor(1) as pool:
            pending = _in_background(
                pool,
                first.api,
                "import time; time.sleep(5)\n"
                "open('made.txt', 'w').write('overwritten' * 100000)\n"
                "open('late.bin', 'wb').write(b'L' * 5000000)\n",
                session_id=session_id,
            )
            orphan = _wait_new_container(engine, known, 20.0)
            time.sleep(1.0)
            _kill(first)
            with pytest.raises(httpx.TransportError):
                pending.result(timeout=60).raise_for_status()
    assert existing(docker_client, [orphan]) == [orphan], "the orphan vanished by itself"
    deadline = _deadline(docker_client, orphan)
    assert deadline - time.time() < 400, "the orphan's deadline is unreasonably far"
    time.sleep(max(0.0, deadline - time.time() + 1.5))

    with start_api(env, tmp_path / "second", H) as second:
        left = _wait_removed(docker_client, [orphan], 30.0)
        assert not left, f"the start-up reaper did not remove the orphan {orphan}"
        assert snapshot(second.api, session_id) == before, "a partial write survived the kill"
        again = ok_json(
            second.api.exec("print(len(open('made.txt').read()))", session_id=session_id)
        )
        assert again["stdout"] == f"{len('made by exec')}\n", again


def _wait_new_container(engine: EngineForwarder, known: set[str], timeout_s: float) -> str:
    end = time.monotonic() + timeout_s
    while True:
        new = [name for name in engine.created if name not in known]
        if new:
            return new[0]
        assert time.monotonic() < end, "the exec never created a sandbox"
        time.sleep(0.05)


@pytest.mark.s3
@pytest.mark.timeout(300)
@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.3])
def test_api_killed_mid_upload_leaves_no_partial_file(
    seaweed: SeaweedServer, tmp_path: Path, delay_s: float
) -> None:
    """SIGKILL the API ``delay_s`` after the last byte of a 24 MB upload went out
    (while it spools, hashes and streams it to S3): after a restart the session holds
    its earlier file and, at most, the whole new one, never a part."""
    settings = s3_settings(seaweed.endpoint)
    env = api_env(settings, image="unused:latest", engine=None, api_key=KEY)
    payload = os.urandom(24 * 1024 * 1024)
    with start_api(env, tmp_path / "first", H, check_tmp=False) as first:
        up = ok_json(first.api.upload("keep.txt", b"keep me"))
        session_id = up["session_id"]
        sent = threading.Event()

        def body() -> Iterator[bytes]:
            boundary = b"killboundary"
            yield b"--" + boundary + b"\r\n"
            yield b'Content-Disposition: form-data; name="session_id"\r\n\r\n'
            yield session_id.encode() + b"\r\n--" + boundary + b"\r\n"
            yield b'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            yield b"Content-Type: application/octet-stream\r\n\r\n"
            for offset in range(0, len(payload), 1024 * 1024):
                yield payload[offset : offset + 1024 * 1024]
            yield b"\r\n--" + boundary + b"--\r\n"
            sent.set()

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                first.api.client.post,
                "/upload",
                content=body(),
                headers={"Content-Type": "multipart/form-data; boundary=killboundary"},
            )
            assert sent.wait(60), "the upload body was never sent"
            time.sleep(delay_s)
            _kill(first)
            with contextlib.suppress(httpx.TransportError):
                pending.result(timeout=60)
    with start_api(env, tmp_path / "second", H) as second:
        files = snapshot(second.api, session_id)
        assert files.get("keep.txt") == sha256(b"keep me"), files
        assert set(files) <= {"keep.txt", "big.bin"}, files
        if "big.bin" in files:
            assert files["big.bin"] == sha256(payload), "a partial upload is listed"


# --- a sandbox is killed from outside -------------------------------------------------


def _running_with(client: docker.DockerClient, names: list[str], needle: str) -> list[str]:
    """Which of ``names`` run a process whose command line contains ``needle``."""
    found = []
    for name in existing(client, names):
        try:
            top = client.api.top(name)
        except docker.errors.APIError:
            continue
        commands = [" ".join(map(str, proc)) for proc in top.get("Processes") or []]
        if any(needle in command for command in commands):
            found.append(name)
    return found


@pytest.mark.timeout(300)
@pytest.mark.parametrize("pool_size", [0, 1])
def test_sandbox_killed_from_outside_gives_a_clear_error_fast(
    docker_client: docker.DockerClient,
    engine: EngineForwarder,
    sandbox_image: str,
    tmp_path: Path,
    pool_size: int,
) -> None:
    """``docker kill`` the sandbox while its program sleeps: the exec answers within
    a few seconds with a clear error (200 + non-zero exit code + explanatory stderr,
    or a 503 in the error shape), the session is intact and the next exec works."""
    env = api_env(
        {"RCE_STORAGE": f"file://{tmp_path / 'store'}"},
        image=sandbox_image,
        engine=engine,
        api_key=KEY,
        pool_size=pool_size,
    )
    with start_api(env, tmp_path / "api", H) as running, ThreadPoolExecutor(1) as pool:
        api = running.api
        if pool_size:
            _wait_pool_ready(api, pool_size)
        up = ok_json(api.upload("keep.csv", b"a,b\n1,2\n"))
        session_id = up["session_id"]
        before = snapshot(api, session_id)
        pending = _in_background(
            pool,
            api,
            "import subprocess; subprocess.run(['sleep', '47.5'])\n"
            "open('never.txt', 'w').write('x')",
            session_id=session_id,
        )
        end = time.monotonic() + 30
        victims: list[str] = []
        while not victims:
            assert time.monotonic() < end, "never saw the sandbox run the program"
            victims = _running_with(docker_client, list(engine.created), "sleep 47.5")
            time.sleep(0.2)
        assert len(victims) == 1, victims
        time.sleep(0.5)
        docker_client.api.kill(victims[0])
        killed = time.monotonic()
        response = pending.result(timeout=120)
        waited = time.monotonic() - killed
        assert waited < 10, f"the exec answered {waited:.1f} s after its sandbox died"
        if response.status_code == 200:
            result = response.json()
            assert result["exit_code"] != 0, result
            assert result["stderr"].strip(), f"no explanation in stderr: {result}"
            assert not result["files"], result
        else:
            assert_error_shape(response, 503)
        assert snapshot(api, session_id) == before
        again = ok_json(api.exec("print(open('keep.csv').read())", session_id=session_id))
        assert again["stdout"] == "a,b\n1,2\n\n", again
