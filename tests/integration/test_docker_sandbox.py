"""``DockerSandbox`` on the real engine: behaviour, limits and hardening.

Every hardening and limit test runs three times (``mode``): with cold containers,
with a warm LIGHT pool and with a warm DATA pool (agents that preloaded numpy, pandas
and matplotlib). Each test asserts the outcome a user or an attacker would see.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import docker
import psutil
import pytest

from core.errors import InvalidRequest, SandboxImageMissing, SandboxUnavailable
from runner import _docker_config as cfg
from runner.base import Language, Limits, RunRequest, RunResult
from runner.docker import LINGER_S, DockerSandbox
from tests.support.docker_plugin import (
    START_SLACK_S,
    UNDER_GVISOR,
    execute,
    input_file,
    is_pooled,
    our_containers,
    wait_until_gone,
)

pytestmark = pytest.mark.docker

MiB = 1024 * 1024

#: A known gap of the packaged gVisor (20221219), see SECURITY.md: a process of the
#: agent's uid can open /proc/1/fd/* of the non-dumpable PID 1 and SIGKILL it. Strict:
#: a gVisor that closes the gap makes these pass, and the marker must go.
GVISOR_AGENT_GAP = pytest.mark.xfail(
    UNDER_GVISOR,
    strict=True,
    reason="gVisor 20221219 ignores PID 1's dumpable flag for /proc/1/fd and lets its uid kill it",
)


#: DockerSandbox pool arguments of each mode (without a LIGHT pool, DATA serves all).
POOLS: dict[str, dict[str, Any]] = {
    "cold": {},
    "pooled": {"pool_size": 1},
    "pooled_data": {"pool_data_size": 1},
}


@pytest.fixture(scope="module", params=sorted(POOLS))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def sandbox(
    mode: str, docker_client: docker.DockerClient, sandbox_image: str, run_labels: dict[str, str]
) -> Iterator[DockerSandbox]:
    """One sandbox per mode with the default limits (pool of one when pooled)."""
    box = DockerSandbox(
        docker_client,
        image=sandbox_image,
        labels=run_labels,
        pool_limits=Limits() if POOLS[mode] else None,
        **POOLS[mode],
    )
    yield box
    box.close()


@pytest.fixture
def sandbox_with(
    mode: str, make_sandbox: Callable[..., DockerSandbox]
) -> Callable[..., DockerSandbox]:
    """A sandbox (in the current mode) whose containers have other limits."""

    def make(**limits: Any) -> DockerSandbox:
        if POOLS[mode]:
            return make_sandbox(pool_limits=replace(Limits(), **limits), **POOLS[mode])
        return make_sandbox()

    return make


class TestBasics:
    def test_hello_world_separates_stdout_stderr_and_exit_code(
        self, sandbox: DockerSandbox
    ) -> None:
        result = execute(
            sandbox,
            "import sys\nprint('hello world')\nprint('oops', file=sys.stderr)\nsys.exit(3)\n",
        )
        assert (result.stdout, result.stderr, result.exit_code) == ("hello world\n", "oops\n", 3)
        assert not (result.timed_out or result.oom_killed or result.stdout_truncated)
        assert result.outputs == [] and result.deleted == [] and result.skipped == []

    def test_arguments_reach_the_program(self, sandbox: DockerSandbox) -> None:
        result = execute(sandbox, "import sys; print(sys.argv[1:])", args=("a b", "--x", "ü"))
        assert result.stdout == "['a b', '--x', 'ü']\n"

    def test_a_program_silent_longer_than_the_idle_limit_completes(
        self, sandbox: DockerSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Only the run limit bounds a program's silence: the idle limit applies once
        its reply streams (the agent's ready signal does not start it)."""
        monkeypatch.setattr(cfg, "IDLE_TIMEOUT_S", 0.5)
        result = execute(sandbox, "import time\ntime.sleep(1.5)\nprint('done')\n")
        assert (result.stdout, result.exit_code, result.timed_out) == ("done\n", 0, False)

    def test_binary_output_is_decoded_safely(self, sandbox: DockerSandbox) -> None:
        result = execute(sandbox, "import sys; sys.stdout.buffer.write(b'ok\\xff\\xfe\\n')")
        assert result.stdout == "ok\ufffd\ufffd\n"

    def test_files_are_restored_and_changes_collected(self, sandbox: DockerSandbox) -> None:
        binary = bytes(range(256)) * 4
        big = secrets.token_bytes(3 * MiB + 17)
        files = (
            input_file("keep.txt", b"keep me"),
            input_file("change.txt", b"old"),
            input_file("delete.txt", b"bye"),
            input_file("nested/deep/bin.dat", binary),
            input_file("big.bin", big, chunk=100_000),
        )
        code = """
import hashlib, os
assert open('nested/deep/bin.dat', 'rb').read() == bytes(range(256)) * 4
print(hashlib.sha256(open('big.bin', 'rb').read()).hexdigest())
print(sorted(os.listdir('.')))
open('change.txt', 'w').write('new')
os.remove('delete.txt')
open('new.txt', 'w').write('created')
os.makedirs('out/sub')
open('out/sub/data.bin', 'wb').write(bytes([0, 255]) * 1000)
"""
        result = execute(sandbox, code, files=files)
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == hashlib.sha256(big).hexdigest()
        assert lines[1] == "['big.bin', 'change.txt', 'delete.txt', 'keep.txt', 'nested']"
        got = {o.name: o.data.read() for o in result.outputs}
        assert got == {
            "change.txt": b"new",
            "new.txt": b"created",
            "out/sub/data.bin": bytes([0, 255]) * 1000,
        }
        for out in result.outputs:
            assert out.sha256 == hashlib.sha256(got[out.name]).hexdigest()
            assert out.size == len(got[out.name])
        assert result.deleted == ["delete.txt"]
        result.close()

    def test_bash_runs_with_cat_heredoc_and_args(self, sandbox: DockerSandbox) -> None:
        code = "cat notes.txt\necho \"arg=$1\"\npython3 - <<'PY'\nprint(6 * 7)\nPY\necho err >&2\n"
        result = execute(
            sandbox,
            code,
            lang=Language.BASH,
            files=(input_file("notes.txt", b"from a file\n"),),
            args=("one",),
        )
        assert (result.stdout, result.stderr, result.exit_code) == (
            "from a file\narg=one\n42\n",
            "err\n",
            0,
        )

    def test_outputs_the_program_made_unreadable_are_still_collected(
        self, sandbox: DockerSandbox
    ) -> None:
        code = (
            "import os\nos.makedirs('locked/inner')\n"
            "open('locked/inner/f.txt', 'w').write('deep')\nopen('secret.txt', 'w').write('s')\n"
            "os.chmod('secret.txt', 0)\nos.chmod('locked/inner', 0)\nos.chmod('locked', 0)\n"
        )
        result = execute(sandbox, code)
        assert result.exit_code == 0, result.stderr
        assert {o.name: o.data.read() for o in result.outputs} == {
            "locked/inner/f.txt": b"deep",
            "secret.txt": b"s",
        }
        result.close()

    def test_too_many_and_too_large_outputs_are_skipped_and_named(
        self, sandbox: DockerSandbox
    ) -> None:
        code = (
            "for i in range(5): open(f'f{i}.txt', 'w').write(str(i))\n"
            "open('huge.bin', 'wb').write(b'x' * 5000)\n"
        )
        result = execute(sandbox, code, max_files=3, max_file_bytes=4000)
        assert [o.name for o in result.outputs] == ["f0.txt", "f1.txt", "f2.txt"]
        reasons = {s.name: s.reason for s in result.skipped}
        assert set(reasons) == {"f3.txt", "f4.txt", "huge.bin"}
        assert "RCE_MAX_FILES" in reasons["f3.txt"]
        assert "RCE_MAX_FILE_BYTES" in reasons["huge.bin"]
        result.close()

    def test_concurrent_runs_are_independent(self, sandbox: DockerSandbox) -> None:
        results: dict[int, RunResult] = {}

        def one(i: int) -> None:
            results[i] = sandbox.run(
                RunRequest(
                    language=Language.PYTHON,
                    code=f"import os; open('mine', 'w').write('{i}'); print(os.listdir('.'), {i})",
                )
            )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(4):
            assert results[i].stdout == f"['mine'] {i}\n"
            assert [o.data.read() for o in results[i].outputs] == [str(i).encode()]
            results[i].close()


def settle(sandbox: DockerSandbox) -> None:
    """Before a timed run: a pooled sandbox's pools full, so the time measured is the
    run's (a pool grown by earlier tests may take seconds to refill on a busy host)."""
    if is_pooled(sandbox):
        assert sandbox.wait_pool_ready(120), sandbox.stats()


class TestLimits:
    def test_infinite_loop_times_out_at_the_limit(self, sandbox: DockerSandbox) -> None:
        settle(sandbox)
        started = time.monotonic()
        result = execute(
            sandbox, "print('started', flush=True)\nwhile True: pass\n", run_timeout_s=2
        )
        elapsed = time.monotonic() - started
        assert result.timed_out and result.exit_code != 0
        assert result.stdout == "started\n"
        assert (
            "rce: killed after exceeding the run time limit of 2 s (RCE_RUN_TIMEOUT_S)"
            in result.stderr
        )
        # Killed at the 2 s limit, not the 30 s default. The bound leaves room for a
        # pooled request that waits for a warm container being prepared (the pool's
        # measured waiting rule) on a busy machine; the wall time adds the removal.
        assert 2 <= result.duration_s < 12, result.duration_s
        assert 2 <= elapsed < 12 + START_SLACK_S, elapsed

    def test_a_program_that_closes_its_output_still_times_out(self, sandbox: DockerSandbox) -> None:
        code = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n"
        settle(sandbox)
        started = time.monotonic()
        result = execute(sandbox, code, run_timeout_s=2)
        # As above: room for a pooled request waiting for a warm container.
        assert result.timed_out and time.monotonic() - started < 12 + START_SLACK_S

    def test_background_processes_do_not_hold_the_run(self, sandbox: DockerSandbox) -> None:
        code = "import subprocess\nsubprocess.Popen(['sleep', '60'])\nprint('done')\n"
        settle(sandbox)
        started = time.monotonic()
        result = execute(sandbox, code, run_timeout_s=20)
        assert result.stdout == "done\n" and not result.timed_out
        # Well below the 20 s limit and the 60 s sleep; room for a pooled wait as above.
        assert time.monotonic() - started < 12 + START_SLACK_S

    def test_fork_bomb_is_stopped_by_the_pids_limit(self, sandbox: DockerSandbox) -> None:
        # The bomb runs in the background while the script waits with builtins only.
        # Forks are slower under gVisor (ptrace): the bomb gets 8 s to reach the limit,
        # and the script, sharing the Sentry with the bomb, once took 20 s to end.
        wait_s = 8 if UNDER_GVISOR else 3
        code = (
            "bomb() { bomb | bomb & }\nbomb\n"
            f"while [ $SECONDS -lt {wait_s} ]; do :; done\necho survived\n"
        )
        settle(sandbox)
        started = time.monotonic()
        result = execute(
            sandbox, code, lang=Language.BASH, run_timeout_s=40 if UNDER_GVISOR else 15
        )
        assert time.monotonic() - started < 25 + START_SLACK_S
        if UNDER_GVISOR and result.exit_code != 0 and not result.stdout:
            # gVisor refuses the bomb's forks at the nproc limit, but on the ptrace
            # platform the Sentry's host tasks grow with the bomb's churn: past the
            # host bound (GVISOR_HOST_PIDS_FACTOR x the limit) the sandbox ends, and
            # only that one (measured without a bound: a bash bomb makes 2000 host tasks in
            # 3 s and 3600 in 19 s).
            assert "rce: the sandbox stopped" in result.stderr, result
            assert not result.timed_out
        else:
            assert result.stdout == "survived\n" and not result.timed_out, result
            # Under gVisor the bomb's forks are slow enough that it may not reach the
            # limit in its window (test_fork_loop_hits_the_pids_limit shows the limit).
            assert UNDER_GVISOR or "Resource temporarily unavailable" in result.stderr
        follow_up = execute(sandbox, "print('alive')")
        assert follow_up.stdout == "alive\n"

    def test_fork_loop_hits_the_pids_limit(self, sandbox: DockerSandbox) -> None:
        # The children are spawned sleeps (vfork and exec). Under gVisor a forked Python
        # child holds about 4 MB of the memory limit (measured: 127 of them, 492 MiB), so
        # a loop of Python children meets the 512 MiB limit first; and a fork of a
        # process holding pandas copies its address space, 0.45 s a child under ptrace
        # (58 s for the loop). Spawned sleeps (107 MiB) meet nproc, in 22 s there.
        code = """
import os
children = 0
try:
    while True:
        os.posix_spawnp('sleep', ['sleep', '30'], os.environ)
        children += 1
except OSError as exc:
    print('refused after', children, exc.strerror)
"""
        result = execute(sandbox, code, run_timeout_s=60 if UNDER_GVISOR else 20)
        assert result.stdout.startswith("refused after"), result
        assert "Resource temporarily unavailable" in result.stdout
        assert int(result.stdout.split()[2]) < 128

    def test_memory_bomb_is_reported_as_out_of_memory(self, sandbox: DockerSandbox) -> None:
        code = "chunks = []\nwhile True:\n    chunks.append(b'x' * (16 * 1024 * 1024))\n"
        result = execute(sandbox, code, run_timeout_s=30)
        assert result.oom_killed and not result.timed_out
        assert result.exit_code == 137
        assert "rce: killed: out of memory (limit 512 MiB, RCE_MEM_LIMIT)" in result.stderr

    def test_huge_stdout_is_truncated_with_bounded_host_memory(
        self, sandbox: DockerSandbox
    ) -> None:
        proc = psutil.Process()
        baseline = proc.memory_info().rss
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            code = (
                "import sys\nline = 'x' * 999 + '\\n'\n"
                "for _ in range(100_000): sys.stdout.write(line)\n"
            )
            result = execute(sandbox, code, run_timeout_s=60)
        finally:
            done.set()
            sampler.join()
        assert result.exit_code == 0 and result.stdout_truncated
        marker = "[rce: output truncated at 1000000 bytes (RCE_MAX_OUTPUT_BYTES)]"
        assert result.stdout.endswith(marker + "\n")
        assert len(result.stdout) < 1_000_000 + 200
        assert peak - baseline < 64 * MiB, (peak - baseline) / MiB

    def test_filling_the_disk_hits_the_cap_and_a_later_run_is_clean(
        self, sandbox_with: Callable[..., DockerSandbox]
    ) -> None:
        small = sandbox_with(workspace_bytes=16 * MiB)
        code = """
import errno
try:
    with open('fill.bin', 'wb') as fh:
        for _ in range(100):
            fh.write(b'x' * (1024 * 1024))
except OSError as exc:
    print('full', exc.errno == errno.ENOSPC)
"""
        result = execute(small, code, workspace_bytes=16 * MiB, max_file_bytes=1024)
        assert result.stdout == "full True\n", result
        assert [s.name for s in result.skipped] == ["fill.bin"]
        later = execute(
            small,
            "import os; print(os.listdir('.')); open('ok', 'wb').write(b'y' * 1024 * 1024)",
            workspace_bytes=16 * MiB,
        )
        assert later.stdout == "[]\n" and later.exit_code == 0
        assert [o.size for o in later.outputs] == [MiB]
        later.close()


class TestIsolation:
    def test_network_is_off(self, sandbox: DockerSandbox) -> None:
        code = """
import socket
try:
    socket.getaddrinfo('example.com', 80)
    print('dns ok')
except OSError as exc:
    print('dns failed')
try:
    socket.create_connection(('1.1.1.1', 53), timeout=3).close()
    print('tcp ok')
except OSError as exc:
    print('tcp failed')
"""
        result = execute(sandbox, code)
        assert result.stdout == "dns failed\ntcp failed\n", result

    def test_links_bring_back_no_content_from_outside(self, sandbox: DockerSandbox) -> None:
        code = """
import os
os.symlink('/etc/passwd', 'leak')
os.symlink('/etc', 'etcdir')
try:
    os.link('/etc/passwd', 'hard')
    print('hard link made')
except OSError as exc:
    print('hard link refused')
open('real.txt', 'w').write('mine')
"""
        result = execute(sandbox, code)
        assert result.exit_code == 0, result.stderr
        assert "hard link refused" in result.stdout
        contents = {o.name: o.data.read() for o in result.outputs}
        assert contents == {"real.txt": b"mine"}
        reasons = {s.name: s.reason for s in result.skipped}
        assert set(reasons) == {"leak", "etcdir"}
        assert all("symbolic link" in r for r in reasons.values())
        result.close()

    def test_no_way_to_root(self, sandbox: DockerSandbox) -> None:
        code = """
import ctypes, json, os, shutil
lines = open('/proc/self/status').read().splitlines()
status = dict(line.split(':\\t', 1) for line in lines if ':\\t' in line)
try:
    os.setuid(0)
    setuid = 'worked'
except PermissionError:
    setuid = 'refused'
# prctl rather than /proc/self/status: gVisor's status has no NoNewPrivs line.
libc = ctypes.CDLL(None, use_errno=True)
print(json.dumps({
    'uid': os.getuid(), 'euid': os.geteuid(), 'setuid': setuid,
    'sudo': shutil.which('sudo'),
    'su_setuid': os.path.exists('/bin/su') and bool(os.stat('/bin/su').st_mode & 0o4000),
    'caps': {k: status[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')
             if k in status},  # gVisor's status has no CapAmb line
    'no_new_privs': libc.prctl(39, 0, 0, 0, 0), 'seccomp': libc.prctl(21, 0, 0, 0, 0),
    'new_user_namespace': libc.unshare(0x10000000),
    'docker_sock': [p for p in ('/var/run/docker.sock', '/run/docker.sock') if os.path.exists(p)],
}))
"""
        result = execute(sandbox, code)
        facts = json.loads(result.stdout)
        assert facts["uid"] == facts["euid"] == 1000
        assert facts["setuid"] == "refused"
        assert facts["sudo"] is None and facts["su_setuid"] is False
        assert {"CapPrm", "CapEff", "CapBnd"} <= set(facts["caps"])
        assert set(facts["caps"].values()) == {"0000000000000000"}
        assert facts["no_new_privs"] == 1  # PR_GET_NO_NEW_PRIVS
        if UNDER_GVISOR:
            # The engine's profile is not loaded inside gVisor (scripts/ensure-runsc.sh:
            # --oci-seccomp breaks thread creation in this release); the program's calls
            # reach gVisor's kernel, and only the Sentry's own filter reaches the host's.
            assert facts["seccomp"] == 0
        else:
            # PR_GET_SECCOMP: the engine's default profile is on: no new user namespace.
            assert facts["seccomp"] == 2
            assert facts["new_user_namespace"] == -1
        assert facts["docker_sock"] == []

    def test_root_filesystem_is_read_only(self, sandbox: DockerSandbox) -> None:
        code = """
for path in ('/etc/x', '/usr/x', '/opt/rce/x', '/x'):
    try:
        open(path, 'w')
        print(path, 'writable')
    except OSError as exc:
        print(path, 'refused')
"""
        result = execute(sandbox, code)
        assert result.stdout.count("refused") == 4, result.stdout

    def test_container_is_hardened_as_inspected_during_a_run(
        self, sandbox: DockerSandbox, docker_client: docker.DockerClient
    ) -> None:
        seen: list[dict[str, Any]] = []
        runner = threading.Thread(target=execute, args=(sandbox, "import time; time.sleep(4)"))
        runner.start()
        end = time.monotonic() + 10
        while not seen and time.monotonic() < end:
            for container in our_containers(docker_client):
                if container.state == "running":
                    try:
                        seen.append(docker_client.api.inspect_container(container.name))
                    except docker.errors.NotFound:
                        continue
            time.sleep(0.2)
        runner.join()
        assert seen, "no running sandbox found"
        for info in seen:
            host, config = info["HostConfig"], info["Config"]
            assert info["Name"].startswith("/rce-sbx-")
            assert host["ReadonlyRootfs"] is True
            assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
            assert host["SecurityOpt"] == ["no-new-privileges"]
            assert host["NetworkMode"] == "none"
            ulimits = {u["Name"]: u["Soft"] for u in host["Ulimits"]}
            if UNDER_GVISOR:
                # The program's limit is gVisor's nproc; the cgroup bounds the Sentry.
                assert ulimits["nproc"] == 128
                assert host["PidsLimit"] == 128 * cfg.GVISOR_HOST_PIDS_FACTOR
            else:
                assert host["PidsLimit"] == 128 and "nproc" not in ulimits
            assert host["Memory"] == host["MemorySwap"] == 512 * MiB
            assert host["NanoCpus"] == 500_000_000
            assert host["Init"] is False and host["Privileged"] is False
            assert not host.get("Binds") and not host.get("Devices") and info["Mounts"] == []
            assert set(host["Tmpfs"]) == {"/mnt/data", "/tmp", "/var/rce"}
            assert {u["Name"] for u in host["Ulimits"]} >= {"nofile", "fsize"}
            assert config["User"] == "1000:1000"
            labels = config["Labels"]
            assert labels["org.rce.service"] == "rce"
            assert int(labels["org.rce.deadline"]) > int(labels["org.rce.created-at"])

    @GVISOR_AGENT_GAP
    def test_the_agent_and_its_reply_channel_are_unreachable_from_python(
        self, sandbox: DockerSandbox
    ) -> None:
        code = """
import ctypes, os
ppid = os.getppid()
print('ppid', ppid)
attempts = [
    (f'/proc/{ppid}/fd/1', 'wb'), ('/proc/1/fd/1', 'wb'), ('/proc/1/fd/0', 'rb'),
    ('/proc/1/mem', 'rb'), ('/proc/1/environ', 'rb'), (f'/proc/{ppid}/fd/2', 'wb'),
]
for path, how in attempts:
    try:
        with open(path, how) as fh:
            fh.write(b'R\\0\\0\\0\\x02{}') if 'w' in how else fh.read(1)
        print('reached', path)
    except OSError as exc:
        print('refused', path)
try:
    os.listdir('/proc/1/fd')
    print('listed fds')
except OSError:
    print('refused listing')
libc = ctypes.CDLL(None, use_errno=True)
print('ptrace', libc.ptrace(16, 1, 0, 0), ctypes.get_errno() != 0)
"""
        result = execute(sandbox, code)
        lines = result.stdout.splitlines()
        assert lines[0] == "ppid 1", result
        assert [x.split()[0] for x in lines[1:7]] == ["refused"] * 6, result.stdout
        assert lines[7:] == ["refused listing", "ptrace -1 True"], result.stdout
        assert result.exit_code == 0

    @GVISOR_AGENT_GAP
    def test_the_reply_channel_is_unreachable_from_bash(self, sandbox: DockerSandbox) -> None:
        code = (
            "echo forged > /proc/$PPID/fd/1 && echo reached-ppid\n"
            "echo forged > /proc/1/fd/1 && echo reached-1\n"
            "ls /proc/1/fd >/dev/null && echo listed\n"
            "head -c1 /proc/1/mem >/dev/null && echo mem\n"
            "echo done $PPID\n"
        )
        result = execute(sandbox, code, lang=Language.BASH)
        assert result.stdout == "done 1\n", result
        assert result.stderr.count("Permission denied") >= 4, result.stderr

    def test_session_files_never_shadow_the_standard_library_or_libraries(
        self, sandbox: DockerSandbox
    ) -> None:
        planted = b"import sys\nprint('PLANTED', __name__)\nsys.exit(9)\n"
        files = tuple(
            input_file(name, planted)
            for name in ("sitecustomize.py", "usercustomize.py", "pandas.py", "numpy.py", "json.py")
        ) + (input_file("mymodule.py", b"VALUE = 42\n"),)
        code = (
            "import json, numpy, pandas, mymodule\n"
            "print(json.__file__.startswith('/usr/lib/python3'),"
            " numpy.__file__.startswith('/usr/lib/python3'),"
            " pandas.__file__.startswith('/usr/lib/python3'), mymodule.VALUE)\n"
        )
        result = execute(sandbox, code, files=files)
        assert (result.exit_code, result.stdout) == (0, "True True True 42\n"), result
        assert "PLANTED" not in result.stderr
        shell = execute(
            sandbox,
            "python3 /dev/stdin <<'EOF'\nimport json; print(json.dumps(1))\nEOF\n",
            lang=Language.BASH,
            files=files,
        )
        assert (shell.exit_code, shell.stdout) == (0, "1\n"), shell

    def test_orphan_processes_are_reaped(self, sandbox: DockerSandbox) -> None:
        code = """
import os, time
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
time.sleep(1)
zombies = 0
for entry in os.listdir('/proc'):
    if entry.isdigit():
        try:
            state = open(f'/proc/{entry}/stat').read().rsplit(')', 1)[1].split()[0]
        except OSError:
            continue
        zombies += state == 'Z'
print('zombies', zombies)
"""
        result = execute(sandbox, code)
        assert result.stdout == "zombies 0\n", result


class TestFailures:
    @GVISOR_AGENT_GAP
    def test_the_agent_survives_a_kill_of_every_process(self, sandbox: DockerSandbox) -> None:
        # The agent is PID 1 of the container: a signal from inside cannot kill it.
        code = (
            "import contextlib, os, signal\n"
            "for pid in (-1, 1):\n"
            "    with contextlib.suppress(OSError):\n"
            "        os.kill(pid, signal.SIGKILL)\n"
            "print('ok')\n"
        )
        result = execute(sandbox, code, run_timeout_s=20)
        assert (result.exit_code, result.stdout) == (0, "ok\n"), result

    @pytest.mark.parametrize(
        ("lang", "code"),
        [
            (
                Language.PYTHON,
                "import os\n"
                "try:\n"
                "    with open(f'/proc/{os.getppid()}/fd/1', 'wb') as fh:\n"
                "        fh.write(b'R\\0\\0\\0\\x02{}')\n"
                "except OSError:\n"
                "    print('still here')\n",
            ),
            (Language.BASH, "kill -9 1\nkill -9 $PPID\necho still here\n"),
        ],
        ids=["forged-reply", "agent-killed"],
    )
    def test_reaching_the_agent_ends_at_most_the_programs_own_exec(
        self, sandbox: DockerSandbox, lang: Language, code: str
    ) -> None:
        # Refused under runc (the tests above); under gVisor (GVISOR_AGENT_GAP) the
        # program can forge or end its own reply, and that is all it reaches.
        result = execute(sandbox, code, lang=lang, run_timeout_s=10)
        assert not result.timed_out, result
        if not UNDER_GVISOR:
            assert (result.exit_code, result.stdout) == (0, "still here\n"), result
        follow_up = execute(sandbox, "print('clean')")
        assert (follow_up.exit_code, follow_up.stdout) == (0, "clean\n"), follow_up

    def test_a_stuck_agent_is_cut_off_by_the_host_deadline(self, sandbox: DockerSandbox) -> None:
        # The program freezes its supervisor: only the host's own deadline can end the run.
        code = "import os, signal, time\nos.kill(os.getppid(), signal.SIGSTOP)\ntime.sleep(120)\n"
        started = time.monotonic()
        result = execute(sandbox, code, run_timeout_s=2)
        elapsed = time.monotonic() - started
        assert result.timed_out and result.exit_code != 0
        assert "run time limit of 2 s (RCE_RUN_TIMEOUT_S)" in result.stderr
        assert 2 <= elapsed < 2 + 15 + START_SLACK_S, elapsed

    def test_a_container_killed_from_outside_gives_an_error_result(
        self, sandbox: DockerSandbox, docker_client: docker.DockerClient
    ) -> None:
        exec_id = secrets.token_hex(6)

        # Asked inside the container: under gVisor `docker top` lists the sandbox's own
        # pids as if they were the host's, so it cannot find the job.
        runs_the_job = [
            "sh",
            "-c",
            "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -q 'sleep[ ]29'",
        ]

        def killer() -> None:
            # The container running the job is the one running "sleep 29".
            end = time.monotonic() + 10
            while time.monotonic() < end:
                for container in our_containers(docker_client):
                    if container.state != "running":
                        continue
                    try:
                        probe = docker_client.api.exec_create(container.name, runs_the_job)
                        docker_client.api.exec_start(probe["Id"])
                        if docker_client.api.exec_inspect(probe["Id"])["ExitCode"] == 0:
                            docker_client.api.kill(container.name)
                            return
                    except docker.errors.APIError:
                        continue
                time.sleep(0.2)

        thread = threading.Thread(target=killer)
        thread.start()
        started = time.monotonic()
        result = execute(
            sandbox,
            "import subprocess; subprocess.run(['sleep', '29'])",
            exec_id=exec_id,
            run_timeout_s=25,
        )
        thread.join()
        assert time.monotonic() - started < 15 + START_SLACK_S
        assert result.exit_code != 0 and not result.timed_out
        assert "rce: the sandbox stopped" in result.stderr

    def test_unsafe_input_names_are_refused_before_any_container(
        self, sandbox: DockerSandbox
    ) -> None:
        started = sandbox.stats()["containers_started"]
        for name in ("../x", "/etc/x", "a/../../b", "a//b", "./a", ""):
            with pytest.raises(InvalidRequest):
                sandbox.run(
                    RunRequest(language=Language.PYTHON, code="", files=(input_file(name, b"x"),))
                )
        assert sandbox.stats()["containers_started"] == started


class TestLifecycle:
    def test_container_is_removed_after_a_run_and_after_a_timeout(
        self, docker_client: docker.DockerClient, make_sandbox: Callable[..., DockerSandbox]
    ) -> None:
        box = make_sandbox()
        for code, timeout in (("print(1)", 30.0), ("while True: pass", 1.0)):
            exec_id = secrets.token_hex(6)
            execute(box, code, exec_id=exec_id, run_timeout_s=timeout)
            assert wait_until_gone(docker_client, 10, **{"org.rce.exec-id": exec_id}) == []

    def test_a_finished_container_lingers_as_one_sleep_until_the_host_is_quiet(
        self, docker_client: docker.DockerClient, make_sandbox: Callable[..., DockerSandbox]
    ) -> None:
        """A run that starts alone: after its reply the agent waits for the removal
        (``linger``), every other process killed, so a daemon the program left does
        not outlive the reply. The removal waits while another run is in flight, and
        comes once none is."""
        box = make_sandbox()
        exec_id = secrets.token_hex(6)
        code = (
            "import os, subprocess, time\n"
            "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    os.execvp('sleep', ['sleep', '301'])\n"
            "time.sleep(2)\n"
            "print('left two daemons')\n"
        )
        observed: list[RunResult] = []
        alone = threading.Thread(
            target=lambda: observed.append(execute(box, code, exec_id=exec_id))
        )
        alone.start()
        time.sleep(1.0)  # it started alone; another run starts before it ends
        busy = threading.Thread(target=execute, args=(box, "import time; time.sleep(6)"))
        busy.start()
        alone.join()
        assert observed[0].stdout == "left two daemons\n"
        [lingering] = our_containers(docker_client, **{"org.rce.exec-id": exec_id})
        assert lingering.state == "running"
        # Listed from inside (``docker top`` maps gVisor's PIDs onto the host's).
        listing = (
            "import os\n"
            "for p in os.listdir('/proc'):\n"
            "    if p.isdigit() and int(p) != os.getpid():\n"
            "        raw = open(f'/proc/{p}/cmdline', 'rb').read()\n"
            "        print(p, raw.replace(bytes(1), b' ').decode().strip())\n"
        )
        found = docker_client.containers.get(lingering.name).exec_run(["python3", "-c", listing])
        assert found.exit_code == 0, found.output
        assert found.output.decode().splitlines() == [f"1 /bin/sleep {int(LINGER_S)}"]
        busy.join()
        assert wait_until_gone(docker_client, 10, **{"org.rce.exec-id": exec_id}) == []

    def test_a_run_beside_another_exits_after_its_reply_and_goes_at_once(
        self, docker_client: docker.DockerClient, make_sandbox: Callable[..., DockerSandbox]
    ) -> None:
        """A run that starts while another is in flight does not linger: its agent
        exits after the reply (a daemon the program left ends with it), and its
        removal, of a container that has exited, comes once the host is quiet."""
        box = make_sandbox()
        busy = threading.Thread(target=execute, args=(box, "import time; time.sleep(8)"))
        busy.start()
        time.sleep(1.0)
        exec_id = secrets.token_hex(6)
        code = (
            "import subprocess\n"
            "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "print('left a daemon')\n"
        )
        assert execute(box, code, exec_id=exec_id).stdout == "left a daemon\n"
        end = time.monotonic() + 5
        while (states := our_containers(docker_client, **{"org.rce.exec-id": exec_id})) and (
            states[0].state != "exited"
        ):
            assert time.monotonic() < end, f"still {states[0].state} after its reply"
            time.sleep(0.1)
        assert states, "removed while another run was in flight"
        assert busy.is_alive()
        busy.join()
        assert wait_until_gone(docker_client, 10, **{"org.rce.exec-id": exec_id}) == []

    def test_pooled_container_is_removed_after_its_run(
        self,
        docker_client: docker.DockerClient,
        make_sandbox: Callable[..., DockerSandbox],
        run_labels: dict[str, str],
    ) -> None:
        case = {"org.rce.test-case": secrets.token_hex(6)}
        box = make_sandbox(pool_size=1, pool_limits=Limits(), labels={**run_labels, **case})
        assert box.wait_pool_ready(120)
        warm = {c.name for c in our_containers(docker_client, **case)}
        assert len(warm) == 1
        assert execute(box, "print(1)").stdout == "1\n"
        end = time.monotonic() + 10
        while warm & {c.name for c in our_containers(docker_client, **case)}:
            assert time.monotonic() < end, "the used warm container was not removed"
            time.sleep(0.2)
        box.close()
        assert wait_until_gone(docker_client, 10, **case) == []

    def test_reaper_removes_expired_labelled_containers_only(
        self,
        docker_client: docker.DockerClient,
        sandbox_image: str,
        run_labels: dict[str, str],
        make_sandbox: Callable[..., DockerSandbox],
    ) -> None:
        now = int(time.time())

        def start(name: str, labels: dict[str, str]) -> str:
            docker_client.containers.run(
                sandbox_image,
                ["sleep", "60"],
                name=name,
                labels={**run_labels, **labels},
                detach=True,
                network_mode="none",
            )
            return name

        ours = {"org.rce.service": "rce", "org.rce.created-at": str(now - 100)}
        expired = start(
            f"rce-sbx-{secrets.token_hex(8)}", {**ours, "org.rce.deadline": str(now - 10)}
        )
        alive = start(
            f"rce-sbx-{secrets.token_hex(8)}", {**ours, "org.rce.deadline": str(now + 600)}
        )
        foreign = start(f"rce-sbx-{secrets.token_hex(8)}", {"org.rce.deadline": str(now - 10)})
        try:
            # (Another process's reaper on the same engine may get there first.)
            assert isinstance(make_sandbox().reap(), int)
            end = time.monotonic() + 10
            while expired in {c.name for c in our_containers(docker_client)}:
                assert time.monotonic() < end, "the expired container was not reaped"
                time.sleep(0.2)
            assert {alive, foreign} <= {c.name for c in our_containers(docker_client)}
        finally:
            for name in (expired, alive, foreign):
                with contextlib.suppress(docker.errors.APIError):
                    docker_client.api.remove_container(name, force=True)


class TestEngineErrors:
    def test_ping_passes_on_a_healthy_engine(
        self, make_sandbox: Callable[..., DockerSandbox]
    ) -> None:
        make_sandbox().ping()

    def test_missing_image_is_reported_with_the_fix(
        self, make_sandbox: Callable[..., DockerSandbox]
    ) -> None:
        box = make_sandbox(image="rce-no-such-image:never")
        with pytest.raises(SandboxImageMissing, match="images/build.sh"):
            box.ping()
        with pytest.raises(SandboxImageMissing, match="images/build.sh"):
            box.run(RunRequest(language=Language.PYTHON, code="print(1)"))

    def test_unreachable_engine_is_unavailable(self, tmp_path: Any) -> None:
        box = DockerSandbox(
            lambda: docker.DockerClient(base_url=f"unix://{tmp_path}/none.sock", version="1.41"),
            image="custom-rce-kernel:latest",
        )
        try:
            with pytest.raises(SandboxUnavailable):
                box.ping()
            with pytest.raises(SandboxUnavailable):
                box.run(RunRequest(language=Language.PYTHON, code="print(1)"))
        finally:
            box.close()
