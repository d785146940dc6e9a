"""Concurrent requests on one session through the real API (uvicorn subprocess, real
Docker engine; folder store and S3 on SeaweedFS): no output is lost, no file is
torn, no upload disappears.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Api,
    EngineForwarder,
    Running,
    api_env,
    ok_json,
    s3_settings,
    sha256,
    snapshot,
    start_api,
)
from tests.support.seaweed import SeaweedServer

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

KEY = "concurrency-key-0123456789"
H = {"X-API-Key": KEY, "User-Id": "racer"}
EXECS = 16


@pytest.fixture(
    params=[
        pytest.param(("folder", 0), id="folder-nopool"),
        pytest.param(("s3", 2), id="s3-pool2", marks=pytest.mark.s3),
    ]
)
def running(
    request: pytest.FixtureRequest,
    engine: EngineForwarder,
    sandbox_image: str,
    tmp_path: Path,
) -> Iterator[Running]:
    """The API on a folder store without a warm pool, then on S3 with one."""
    store, pool_size = request.param
    if store == "s3":
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        storage = s3_settings(seaweed.endpoint)
    else:
        storage = {"RCE_STORAGE": f"file://{tmp_path / 'store'}"}
    env = api_env(storage, image=sandbox_image, engine=engine, api_key=KEY, pool_size=pool_size)
    with start_api(env, tmp_path / "api", H) as server:
        yield server


def _new_session(api: Api) -> str:
    up = ok_json(api.upload("seed.txt", b"seed\n"))
    return str(up["session_id"])


@pytest.mark.timeout(300)
def test_sixteen_concurrent_execs_on_one_session_lose_no_file(running: Running) -> None:
    """16 execs at once on one session, each writing its own file: afterwards the
    session lists all 16 (and the seed), each downloads whole with its content."""
    api = running.api
    session_id = _new_session(api)
    expected = {"seed.txt": sha256(b"seed\n")}
    for i in range(EXECS):
        expected[f"out_{i:02d}.txt"] = sha256(f"exec {i}\n".encode() * 1000)

    def one(i: int) -> dict[str, Any]:
        code = f"open('out_{i:02d}.txt', 'w').write('exec {i}\\n' * 1000)\nprint('done', {i})"
        return dict(ok_json(api.exec(code, session_id=session_id)))

    with ThreadPoolExecutor(EXECS) as pool:
        results = list(pool.map(one, range(EXECS)))
    for i, result in enumerate(results):
        assert (result["exit_code"], result["stdout"]) == (0, f"done {i}\n"), result
        assert result["session_id"] == session_id
        assert [f["name"] for f in result["files"]] == [f"out_{i:02d}.txt"], result
    assert snapshot(api, session_id) == expected
    print(f"concurrency: {EXECS} execs, {len(expected)} files checked, none lost")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("preexisting", [True, False], ids=["replace", "create"])
def test_concurrent_writes_to_one_name_leave_one_whole_version(
    running: Running, preexisting: bool
) -> None:
    """Four execs write ``same.bin`` (2 MB, each its own byte) at once: the session
    then holds exactly one ``same.bin``, and it is one writer's whole version."""
    api = running.api
    session_id = _new_session(api)
    if preexisting:
        ok_json(api.upload("same.bin", b"old version", session_id=session_id))
    writers = "ABCD"
    versions = {sha256(c.encode() * 2_000_000): c for c in writers}

    def write(letter: str) -> dict[str, object]:
        code = f"open('same.bin', 'wb').write(b'{letter}' * 2_000_000)"
        return dict(ok_json(api.exec(code, session_id=session_id)))

    with ThreadPoolExecutor(len(writers)) as pool:
        results = list(pool.map(write, writers))
    assert all(r["exit_code"] == 0 for r in results), results
    names = [e["name"] for e in ok_json(api.files(session_id, "normalized"))]
    assert names.count("same.bin") == 1, (
        f"{names.count('same.bin')} files named same.bin after {len(writers)} concurrent "
        f"writes (ids: {[r['files'] for r in results]})"
    )
    files = snapshot(api, session_id)  # checks each file whole
    assert set(files) == {"seed.txt", "same.bin"}, files
    assert files["same.bin"] in versions, "same.bin is no writer's whole version"


@pytest.mark.timeout(300)
def test_uploads_racing_an_exec_are_all_kept(running: Running) -> None:
    """Twelve uploads (up to 3 MB) land in a session while an exec of it runs and
    writes its own output: every upload is listed and intact, and so is the output."""
    api = running.api
    session_id = _new_session(api)
    payloads = {f"up_{i:02d}.bin": os.urandom(1000 + i * 250_000) for i in range(12)}

    def upload(item: tuple[str, bytes]) -> str:
        name, data = item
        body = ok_json(api.upload(name, data, session_id=session_id))
        assert body["session_id"] == session_id, body
        return str(body["files"][0]["fileId"])

    code = (
        "import os, time\n"
        "for _ in range(30):\n"
        "    time.sleep(0.1)\n"
        "open('exec_out.txt', 'w').write(str(sorted(os.listdir('.'))))\n"
    )
    with ThreadPoolExecutor(13) as pool:
        pending = pool.submit(api.exec, code, session_id=session_id)
        ids = list(pool.map(upload, payloads.items()))
        result = ok_json(pending.result(timeout=120))
    assert result["exit_code"] == 0, result
    assert len(set(ids)) == len(payloads)
    files = snapshot(api, session_id)
    for name, data in payloads.items():
        assert files.get(name) == sha256(data), f"{name} lost or changed"
    assert set(files) == {"seed.txt", "exec_out.txt", *payloads}, sorted(files)
    print(f"concurrency: {len(payloads)} uploads raced an exec, {len(files)} files intact")
