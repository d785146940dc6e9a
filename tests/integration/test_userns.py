"""The runner on an engine with ``userns-remap``: a sandbox's uid is no host account.

The test starts its own dockerd (own network namespace, socket, data root, exec root,
pid file, no bridge, no iptables) with ``--userns-remap=default``, loads the sandbox image into
it, and checks what must still work: the warm pool, the attach stream, output files
and their ownership; and, read from ``/proc/<pid>/status`` on the host, that the
sandbox's uid 1000 is a high host uid inside the engine's subordinate range, owned
by no account. The engine and its directories are removed afterwards; a leftover
engine from an interrupted run is stopped first.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.base import Limits
from runner.docker import DockerSandbox
from tests.support.docker_plugin import RUN_LABELS, execute, our_containers
from tests.support.services import service_missing

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE = Path("/var/lib/rce-userns-test")
EXEC_ROOT = Path("/var/run/rce-userns-test")
PIDFILE = Path("/var/run/rce-userns-test.pid")
SOCKET = Path("/var/run/rce-userns-test.sock")
REMAP_USER = "dockremap"


def _subordinate_range(user: str) -> tuple[int, int]:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == user:
            start, _, count = rest.partition(":")
            return int(start), int(count)
    raise AssertionError(f"no /etc/subuid range for {user}")


def _stop_leftover() -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(PIDFILE.read_text().strip())
        if "dockerd" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.2)


def _remove_dirs() -> None:
    for path in (EXEC_ROOT, BASE):
        if path.exists():
            # overlay mounts left by a killed engine would make rmtree fail
            subprocess.run(
                f"grep -o ' {path}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                shell=True,
                check=False,
            )
            shutil.rmtree(path, ignore_errors=True)
    for path in (PIDFILE, SOCKET):
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def userns_engine(
    sandbox_image: str, docker_client: docker.DockerClient
) -> Iterator[docker.DockerClient]:
    if os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("unshare") is None:
        service_missing("the user-namespace tier needs root, dockerd and unshare")
    _stop_leftover()
    _remove_dirs()
    BASE.mkdir(parents=True)
    log = (BASE / "dockerd.log").open("wb")
    # Its own network namespace (unshare --net execs dockerd, same pid): a dockerd with
    # --bridge=none deletes the host's docker0, the default engine's bridge, at start;
    # in a namespace of its own it touches nothing of the host's network (sandboxes
    # here have no network; the socket is a file). Same pattern as local/cluster.sh.
    process = subprocess.Popen(
        [
            "unshare",
            "--net",
            "dockerd",
            f"--host=unix://{SOCKET}",
            f"--data-root={BASE / 'data'}",
            f"--exec-root={EXEC_ROOT}",
            f"--pidfile={PIDFILE}",
            "--userns-remap=default",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip6tables=false",
            "--cgroup-parent=/rce-userns-test",
            "--containerd-namespace=rce-userns-test",
            "--containerd-plugins-namespace=rce-userns-test-plugins",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client: docker.DockerClient | None = None
    try:
        for _ in range(150):
            if process.poll() is not None:
                pytest.fail((BASE / "dockerd.log").read_text(errors="replace")[-3000:])
            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=f"unix://{SOCKET}", timeout=300)
                client.ping()
                break
            time.sleep(0.2)
        else:
            pytest.fail("the user-namespace engine did not answer")
        assert client is not None
        assert "name=userns" in client.info()["SecurityOptions"], client.info()["SecurityOptions"]
        save = subprocess.Popen(["docker", "save", sandbox_image], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            ["docker", "--host", f"unix://{SOCKET}", "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            timeout=600,
        )
        assert save.wait(timeout=60) == 0 and loaded.returncode == 0, loaded.stderr
        yield client
    finally:
        if client is not None:
            for item in our_containers(client):
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_container(item.name, force=True)
            client.close()
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()
        _remove_dirs()


@pytest.fixture
def userns_sandbox(
    userns_engine: docker.DockerClient, sandbox_image: str
) -> Iterator[Callable[..., DockerSandbox]]:
    made: list[DockerSandbox] = []

    def make(**kwargs: object) -> DockerSandbox:
        sandbox = DockerSandbox(
            userns_engine,
            image=sandbox_image,
            labels=RUN_LABELS,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()


def _host_uids_of(container_id: str) -> set[int]:
    """Real uids (from the host's /proc/<pid>/status) of the container's processes."""
    uids: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if container_id not in (proc / "cgroup").read_text():
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    uids.add(int(line.split()[1]))
    return uids


def test_the_sandbox_uid_is_a_high_host_uid_of_no_account(
    userns_engine: docker.DockerClient, userns_sandbox: Callable[..., DockerSandbox]
) -> None:
    start, count = _subordinate_range(REMAP_USER)
    expected = start + 1000
    assert expected > 65535, (start, count)
    with pytest.raises(KeyError):
        pwd.getpwuid(expected)
    sandbox = userns_sandbox()
    seen: dict[str, set[int]] = {}

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not seen:
            for item in userns_engine.api.containers(filters={"label": "org.rce.service=rce"}):
                uids = _host_uids_of(item["Id"])
                if uids:
                    seen[item["Id"]] = uids
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = execute(sandbox, "import os, time; print(os.getuid(), os.getgid()); time.sleep(4)")
    watcher.join()
    assert result.stdout.strip() == "1000 1000", result
    assert seen, "no process of the sandbox was found on the host"
    (uids,) = seen.values()
    assert uids == {expected}, (uids, expected)


def test_pool_attach_stream_and_output_ownership(
    userns_sandbox: Callable[..., DockerSandbox],
) -> None:
    sandbox = userns_sandbox(pool_size=1, pool_limits=Limits())
    code = (
        "import os, sys\n"
        "open('/mnt/data/out.txt', 'w').write('made under userns')\n"
        "st = os.stat('/mnt/data/out.txt')\n"
        "print(st.st_uid, st.st_gid, oct(os.stat('/mnt/data').st_mode & 0o777))\n"
        "sys.stdout.write('x' * 200000 + '\\n'); sys.stderr.write('e' * 1000)\n"
    )
    for _ in range(2):  # the second run is served by the refilled pool
        result = execute(sandbox, code)  # asserts a pool hit
        first, big = result.stdout.split("\n", 2)[:2]
        assert first == "1000 1000 0o755", result.stdout[:200]
        assert big == "x" * 200000
        assert result.stderr == "e" * 1000
        outputs = {f.name: f for f in result.outputs}
        assert "out.txt" in outputs, result.outputs
        assert outputs["out.txt"].data.read() == b"made under userns"
