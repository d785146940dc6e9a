"""The multi-engine topology of ``local/cluster.sh``: three dockerd engines behind their
socket proxies, three API replicas on one SeaweedFS bucket, an HAProxy load balancer
(round robin, health checks on /ready).

The real ``@librechat/agents`` client runs through the load balancer (its plain and
programmatic tools: every continuation goes back through the balancer, so it lands
on whichever replica is next); a session continues over many execs spread over the
replicas and engines; then one engine is killed under load: only clear 503s for the
runs that were on it, no file lost, and the remaining engines carry the load.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Api, ok_json
from tests.e2e.test_librechat_conformance import (
    Credentials,
    _failure_text,
    _run_script,
    credentials,  # noqa: F401 - a fixture used by name
    node,  # noqa: F401 - a fixture used by name
)
from tests.support.live_server import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.s3, pytest.mark.slow]

PORT = 18200
SCRIPT = REPO_ROOT / "local" / "cluster.sh"


@dataclass
class Cluster:
    """A running topology: the balancer's URL and the script's environment."""

    base_url: str
    env: dict[str, str]
    state: Path

    def log_tail(self, max_chars: int = 4000) -> str:
        logs = sorted((self.state / "log").glob("api*.log"))
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-max_chars:]}" for p in logs
        )

    def script(self, *args: str, timeout_s: float = 900) -> str:
        result = subprocess.run(
            [str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert result.returncode == 0, f"cluster.sh {args}: {result.stderr[-3000:]}"
        return result.stdout


@pytest.fixture(scope="module")
def cluster(
    credentials: Credentials,  # noqa: F811
    sandbox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        "RCE_CLUSTER_DIR": str(state),
        "RCE_CLUSTER_PORT": str(PORT),
        "RCE_IMAGE_NAME": sandbox_image,
        "CUSTOM_RCE_API_KEY": credentials.api_key,
        "RCE_CLUSTER_JWT_PUBLIC_KEY_FILE": str(credentials.public_key_file),
    }
    env.pop("DOCKER_HOST", None)
    started = time.monotonic()
    handle = Cluster(f"http://127.0.0.1:{PORT}", env, state)
    try:
        out = handle.script("up")
        assert out.strip().splitlines()[-1] == handle.base_url
        print(f"cluster up in {time.monotonic() - started:.0f} s")
        yield handle
    finally:
        handle.script("down", timeout_s=300)


def _api(cluster: Cluster, creds: Credentials, user: str) -> Api:
    return Api(cluster.base_url, {"X-API-Key": creds.api_key, "User-Id": user})


@pytest.mark.timeout(400)
@pytest.mark.parametrize("script", ["exec_tools.mjs", "ptc_tools.mjs"])
def test_the_librechat_client_through_the_load_balancer(
    node: str,  # noqa: F811
    cluster: Cluster,
    credentials: Credentials,  # noqa: F811
    script: str,
) -> None:
    """Every check passes; each request (continuations too) is balanced round robin."""
    report = _run_script(node, script, cluster, credentials)  # type: ignore[arg-type]
    failed = [r for r in report["results"] if not r["ok"]]
    assert report["results"], f"{script} ran no checks"
    assert not failed, _failure_text(report, cluster)  # type: ignore[arg-type]


@pytest.mark.timeout(300)
def test_a_session_continues_across_replicas_and_engines(
    cluster: Cluster,
    credentials: Credentials,  # noqa: F811
) -> None:
    """Nine execs through the balancer append to one file: each sees all before it."""
    api = _api(cluster, credentials, "cluster-session")
    session_id = ok_json(api.upload("log.txt", b"start\n"))["session_id"]
    for i in range(9):
        out = ok_json(
            api.exec(
                f"lines = open('log.txt').read().splitlines()\n"
                f"assert len(lines) == {i + 1}, lines\n"
                f"open('log.txt', 'a').write('step {i}\\n')\nprint(len(lines))",
                session_id=session_id,
            )
        )
        assert out["exit_code"] == 0 and out["stdout"] == f"{i + 1}\n", out
    body = api.download(session_id, "log.txt")
    assert body.text == "start\n" + "".join(f"step {i}\n" for i in range(9))
    # Three replicas each place on the engine with the least work: all three served.
    metrics = [
        Api(f"http://127.0.0.1:{PORT + r}", api.headers).client.get("/metrics").text
        for r in (1, 2, 3)
    ]
    assert all("rce_" in m for m in metrics)


@dataclass
class _Outcome:
    at: float
    status: int
    body: dict[str, Any]
    session_id: str
    name: str


@pytest.mark.timeout(300)
def test_an_engine_lost_under_load(
    cluster: Cluster,
    credentials: Credentials,  # noqa: F811
) -> None:
    """Kill engine 2 while 8 clients run execs that write a file each: only clear 503s
    (runs that were on engine 2), every 200's file is in the store, and the two
    remaining engines carry the load after the kill."""
    api = _api(cluster, credentials, "cluster-load")
    session_id = ok_json(api.upload("seed.txt", b"seed"))["session_id"]
    outcomes: list[_Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def client(worker: int) -> None:
        count = 0
        while not stop.is_set():
            name = f"w{worker}-{count}.txt"
            count += 1
            response = api.exec(
                f"import time\ntime.sleep(0.5)\nopen({name!r}, 'w').write({name!r})",
                session_id=session_id,
            )
            body = response.json() if response.content else {}
            with lock:
                outcomes.append(
                    _Outcome(
                        time.monotonic() - started, response.status_code, body, session_id, name
                    )
                )

    workers = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(10)
    killed_at = time.monotonic() - started
    cluster.script("kill-node", "2")
    time.sleep(20)
    stop.set()
    for worker in workers:
        worker.join(timeout=120)

    statuses = {o.status for o in outcomes}
    assert statuses <= {200, 503}, [
        (o.status, o.body) for o in outcomes if o.status not in (200, 503)
    ]
    failed = [o for o in outcomes if o.status == 503]
    for o in failed:
        assert o.body.get("error") in ("sandbox_lost", "sandbox_unavailable"), o.body
        assert "run the code again" in o.body.get("message", "") or "engine" in o.body.get(
            "message", ""
        ), o.body
        # Only runs in flight when the engine died (or placed before it left the rotation).
        assert killed_at - 2 <= o.at <= killed_at + 15, (o.at, killed_at, o.body)
    assert len(failed) <= 8 * 2, len(failed)

    before = [o for o in outcomes if o.status == 200 and o.at < killed_at]
    after = [o for o in outcomes if o.status == 200 and o.at > killed_at + 5]
    rate_before = len(before) / killed_at
    rate_after = len(after) / (outcomes[-1].at - killed_at - 5)
    print(f"throughput {rate_before:.2f}/s before, {rate_after:.2f}/s after; {len(failed)} 503s")
    assert after, "no exec succeeded after the engine was lost"
    assert rate_after >= 0.4 * rate_before, (rate_before, rate_after)

    listed = {e["name"] for e in ok_json(api.files(session_id, "normalized"))}
    succeeded = {o.name for o in outcomes if o.status == 200}
    assert succeeded <= listed, sorted(succeeded - listed)[:10]
    assert "seed.txt" in listed
    ready = api.ready()
    assert ready.status_code == 200, ready.text
