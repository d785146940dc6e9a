"""The agent's wire, restore, supervision and collection, outside Docker."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from rce_agent import pychild, wire
from rce_agent.main import linger_seconds
from rce_agent.restore import restore, safe_relative
from rce_agent.supervise import Forked, Reaper, exit_code_of, linger, spawn, supervise

from runner.base import Language, Limits, RunRequest
from runner.protocol import ChunkedSink, ReplyReader, encode_job_header

from .conftest import AGENT_ROOT


class TestWire:
    def header(self, body: bytes, magic: bytes = wire.JOB_MAGIC) -> dict[str, object] | None:
        raw = magic + struct.pack(">I", len(body)) + body
        stream = io.BytesIO(raw)
        return wire.parse_header(stream.read(8), stream.read)

    def test_a_job_header_round_trips(self) -> None:
        assert self.header(b'{"lang": "c"}') == {"lang": "c"}

    @pytest.mark.parametrize(
        ("raw", "magic"),
        [(b"{}", b"XXXX"), (b"[1]", wire.JOB_MAGIC), (b"{", wire.JOB_MAGIC)],
    )
    def test_bad_headers_are_refused(self, raw: bytes, magic: bytes) -> None:
        with pytest.raises(ValueError):
            self.header(raw, magic)

    def test_oversized_and_truncated_headers_are_refused(self) -> None:
        big = wire.JOB_MAGIC + struct.pack(">I", wire.MAX_HEADER_BYTES + 1)
        with pytest.raises(ValueError, match="too large"):
            wire.parse_header(big, lambda n: b"")
        with pytest.raises(ValueError, match="truncated"):
            wire.parse_header(wire.JOB_MAGIC + struct.pack(">I", 10), lambda n: b"{}")

    def test_eof_before_a_job_is_none(self) -> None:
        assert wire.parse_header(b"", lambda n: b"") is None

    @pytest.mark.parametrize(
        "value",
        [
            {"exit_code": 0, "timed_out": False, "duration_s": 0.0123, "deleted": []},
            {"notices": ['\u00e9 \u2028 "q" \\ \n \U0001f600'], "none": None, "big": 10**30},
            [1, 2.5, True, -0.0, 1e-300, ""],
            "a string",
        ],
    )
    def test_json_is_what_the_json_module_reads_and_writes(self, value: object) -> None:
        text = wire.dumps(value)
        assert text == json.dumps(value, ensure_ascii=True)
        assert wire.loads(text) == json.loads(text) == value
        assert wire.loads(f" \n{json.dumps(value, indent=2)}\t") == value

    @pytest.mark.parametrize("text", ["", " ", "{", "{} x", "[1,]", '{"a": 1}{}', "nul", "'a'"])
    def test_what_is_not_one_json_document_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            wire.loads(text)
        with pytest.raises(ValueError):
            json.loads(text)

    def test_a_value_json_cannot_write_is_refused(self) -> None:
        with pytest.raises(TypeError):
            wire.dumps({"x": object()})


class TestRestore:
    @pytest.mark.parametrize("name", ["", "/etc/x", "a/../b", "./a", "a//b", "a\x00b"])
    def test_unsafe_names_are_refused(self, name: str) -> None:
        assert safe_relative(name) is None

    def test_restores_regular_files_and_refuses_links(self, tmp_path: Path) -> None:
        work = tmp_path / "work"
        work.mkdir()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (("a/b.txt", b"hi"), ("../evil", b"x")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        r, w = os.pipe()
        framed = io.BytesIO()
        sink = ChunkedSink(framed)
        data = buf.getvalue()
        for start in range(0, len(data), 700):  # chunks cut anywhere in the tar
            sink.write(data[start : start + 700])
        os.write(w, framed.getvalue() + struct.pack(">I", 0) + b"after")
        notices: list[str] = []
        manifest = restore(str(work), notices, fd=r)
        os.close(w)
        # restore reads up to the zero-length chunk and no further (stdin stays open).
        assert os.read(r, 100) == b"after"
        os.close(r)
        assert list(manifest) == ["a/b.txt"] and (work / "a" / "b.txt").read_bytes() == b"hi"
        assert len(notices) == 2 and not (tmp_path / "evil").exists()
        assert not (work / "link").exists()


class TestSupervise:
    def run(
        self, argv: list[str], timeout_s: float = 10.0, cap: int = 1000
    ) -> tuple[int, bool, bytes, bytes]:
        reaper = Reaper()
        try:
            pid, out_r, err_r = spawn(argv, dict(os.environ), "/")
            outcome = supervise(pid, out_r, err_r, timeout_s, cap, reaper)
        finally:
            reaper.close()
        return (
            exit_code_of(outcome.status),
            outcome.timed_out,
            bytes(outcome.stdout.data),
            bytes(outcome.stderr.data),
        )

    def test_output_and_exit_code(self) -> None:
        code, timed_out, out, err = self.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
        assert (code, timed_out, out, err) == (7, False, b"out\n", b"err\n")

    def test_timeout_kills_the_program(self) -> None:
        started = time.monotonic()
        code, timed_out, _, _ = self.run(["sleep", "30"], timeout_s=0.5)
        assert timed_out and code == 137 and time.monotonic() - started < 5

    def test_output_is_capped(self) -> None:
        _, _, out, _ = self.run(["sh", "-c", "head -c 5000 /dev/zero"], cap=100)
        assert len(out) == 100

    def test_only_stdio_is_inherited(self) -> None:
        keep = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(keep, True)
        try:
            _, _, out, _ = self.run(["sh", "-c", "ls /proc/self/fd"])
        finally:
            os.close(keep)
        assert sorted(int(n) for n in out.split()) == [0, 1, 2, 3]  # 3: ls's own dir fd

    def test_a_signal_is_128_plus_its_number(self) -> None:
        code, _, _, _ = self.run(["sh", "-c", "kill -9 $$"])
        assert code == 137


def supervised(pid: int, out_r: int, err_r: int, reaper: Reaper) -> tuple[int, bytes, bytes]:
    outcome = supervise(pid, out_r, err_r, 10.0, 100_000, reaper)
    return exit_code_of(outcome.status), bytes(outcome.stdout.data), bytes(outcome.stderr.data)


#: Runs in a fresh interpreter (the forked child runs Python in the process that
#: forked it): forks a ``Forked``, hands it a Python job, prints what came back.
FORKED_PYTHON = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from rce_agent import wire
from rce_agent.supervise import Forked, Reaper, exit_code_of, supervise
main, work = sys.argv[2], sys.argv[3]
child = Forked.start(dict(os.environ), work)
reaper = Reaper()
job = {"main": main, "args": ["a", "b c"], "env": {"PATH": os.environ["PATH"], "X": "y"}}
pid, out_r, err_r = child.take(wire.dumps(job).encode())
outcome = supervise(pid, out_r, err_r, 10.0, 100_000, reaper)
print(json.dumps([child.pid, pid, exit_code_of(outcome.status),
                  bytes(outcome.stdout.data).decode(), bytes(outcome.stderr.data).decode()]))
"""


def run_forked(main: Path, work: Path) -> tuple[int, int, int, str, str]:
    """``FORKED_PYTHON`` on ``main``: (forked pid, program pid, exit code, out, err)."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED_PYTHON, AGENT_ROOT, str(main), str(work)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    forked_pid, pid, code, out, err = json.loads(done.stdout)
    return forked_pid, pid, code, out, err


class TestForked:
    """The child of the next job, forked before the job (``supervise.Forked``)."""

    def exec_job(self, argv: list[str], **env: str) -> bytes:
        return wire.dumps({"argv": argv, "env": {"PATH": os.environ["PATH"], **env}}).encode()

    def test_an_exec_job_runs_as_a_spawned_child(self, tmp_path: Path) -> None:
        reaper = Reaper()
        try:
            child = Forked.start(dict(os.environ), str(tmp_path))
            handed = child.take(self.exec_job(["sh", "-c", 'echo "$X $(pwd)"; cat; exit 7'], X="y"))
            assert handed is not None and handed[0] == child.pid
            got = supervised(*handed, reaper)
        finally:
            reaper.close()
        assert got == (7, f"y {tmp_path}\n".encode(), b"")  # cat read /dev/null

    def test_only_stdio_is_inherited(self) -> None:
        reaper = Reaper()
        try:
            child = Forked.start(dict(os.environ), "/")
            handed = child.take(self.exec_job(["ls", "/proc/self/fd"]))
            assert handed is not None
            _, out, _ = supervised(*handed, reaper)
        finally:
            reaper.close()
        assert sorted(int(n) for n in out.split()) == [0, 1, 2, 3]  # 3: ls's own dir fd

    def test_a_missing_program_is_127_as_spawned(self) -> None:
        reaper = Reaper()
        try:
            child = Forked.start(dict(os.environ), "/")
            handed = child.take(self.exec_job(["no-such-program-rce"]))
            assert handed is not None
            code, _, err = supervised(*handed, reaper)
        finally:
            reaper.close()
        assert code == 127 and err.startswith(b"rce: cannot start no-such-program-rce: ")

    def test_a_python_job_runs_in_the_forked_child_as_its_main_module(self, tmp_path: Path) -> None:
        main = tmp_path / "main.py"
        main.write_text(
            "import json, os, sys\n"
            "print(json.dumps([__name__, sys.argv, os.getcwd(), sys.stdin.read(),"
            " os.environ['X'], os.getpid()]))\n"
            "sys.exit(3)\n"
        )
        forked_pid, pid, code, out, err = run_forked(main, tmp_path)
        assert (pid, code, err) == (forked_pid, 3, "")
        assert json.loads(out) == [
            "__main__",
            [str(main), "a", "b c"],
            str(tmp_path),
            "",  # stdin is /dev/null, not the pipe the job came through
            "y",  # the job's environment
            forked_pid,
        ]

    def test_a_python_job_has_the_recursion_depth_of_a_cold_run(self, tmp_path: Path) -> None:
        main = tmp_path / "main.py"
        main.write_text("def f(n):\n    return f(n + 1)\n\nf(0)\n")
        cold = subprocess.run(
            [sys.executable, str(main), "a", "b c"], capture_output=True, text=True, timeout=60
        )
        _, _, code, _, err = run_forked(main, tmp_path)
        assert "RecursionError" in err and "more times]" in err
        assert (code, err) == (cold.returncode, cold.stderr)

    def test_a_discarded_child_is_killed_and_left_to_the_reaping(self) -> None:
        child = Forked.start(dict(os.environ), "/")
        child.discard()
        pid, status = os.waitpid(child.pid, 0)
        assert pid == child.pid and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
        assert child.out_r == child.err_r == child.job_w == -1

    def test_a_job_bigger_than_the_pipe_or_a_gone_child_is_declined(self) -> None:
        child = Forked.start(dict(os.environ), "/")
        assert child.take(b" " * (16 << 20)) is None
        os.kill(child.pid, 9)
        os.waitpid(child.pid, 0)
        assert child.take(self.exec_job(["true"])) is None
        child.discard()

    def test_no_job_ends_the_child_with_0(self) -> None:
        child = Forked.start(dict(os.environ), "/")
        os.close(child.job_w)  # the agent went away without a job
        _, status = os.waitpid(child.pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        os.close(child.out_r)
        os.close(child.err_r)


def test_harden_makes_the_agent_non_dumpable() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from rce_agent.supervise import harden; ok = harden();"
        "import ctypes; print(ok, ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
    )
    done = subprocess.run([sys.executable, "-c", code, AGENT_ROOT], capture_output=True, text=True)
    assert done.stdout.split() == ["True", "0"]


def test_collected_frames_parse_on_the_host(tmp_path: Path) -> None:
    """Frames the agent writes (Collector + result) are what runner.protocol reads."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "codebook.csv").write_text("a,b\n")
    (work / "same.txt").write_text("same")
    (work / "link").symlink_to("/etc/passwd")
    import hashlib

    before = {"same.txt": hashlib.sha256(b"same").hexdigest(), "gone.txt": "0" * 64}
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from rce_agent.collect import Collector; from rce_agent.wire import send_json;"
        "c = Collector(sys.argv[2], json.loads(sys.argv[3]), 1000, 10); d = c.run();"
        "send_json(b'R', {'exit_code': 0, 'deleted': d, 'skipped': c.skipped})"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, AGENT_ROOT, str(work), json.dumps(before)],
        capture_output=True,
        check=True,
    )
    request = RunRequest(language=Language.PYTHON, code="", limits=Limits())
    reply = ReplyReader(io.BytesIO(done.stdout), request).read()
    assert [o.name for o in reply.outputs] == ["codebook.csv"]
    assert reply.outputs[0].data.read() == b"a,b\n"
    assert reply.result is not None
    assert reply.result["deleted"] == ["gone.txt"]
    assert reply.result["skipped"] == [["link", "symbolic link (not followed)"]]
    reply.discard_outputs()


class TestLinger:
    """After a complete reply the agent waits for its removal (only as PID 1)."""

    def test_the_host_asks_for_a_linger_only_when_given_one(self) -> None:
        request = RunRequest(language=Language.PYTHON, code="print(1)")

        def header(raw: bytes) -> dict[str, object]:
            parsed = json.loads(raw[8:])
            assert isinstance(parsed, dict)
            return parsed

        assert "linger_s" not in header(encode_job_header(request))
        assert header(encode_job_header(request, linger_s=30.0))["linger_s"] == 30.0

    @pytest.mark.parametrize(
        ("job", "seconds"),
        [({}, 0.0), ({"linger_s": 30}, 30.0), ({"linger_s": "30"}, 0.0), ({"linger_s": True}, 0.0)],
    )
    def test_only_a_number_asks_for_a_linger(self, job: dict[str, object], seconds: float) -> None:
        assert linger_seconds(job) == seconds

    def test_an_agent_that_is_not_pid_1_does_not_linger(self) -> None:
        started = time.monotonic()
        linger(30.0)  # returns at once: this process is not a container's PID 1
        assert time.monotonic() - started < 1.0


class TestMatplotlibCacheSeed:
    """The image's font list is copied where matplotlib looks, before any program."""

    def _seed(self, tmp_path: Path) -> Path:
        seed = tmp_path / "seed"
        seed.mkdir()
        (seed / "fontlist-v330.json").write_text('{"_version": 330}')
        (seed / "README").write_text("not a cache file")
        return seed

    @pytest.mark.parametrize(
        ("env", "where"),
        [
            ({"HOME": "{t}/home"}, "{t}/home/.cache/matplotlib"),
            ({"HOME": "{t}/home", "XDG_CACHE_HOME": "{t}/xdg"}, "{t}/xdg/matplotlib"),
            ({"HOME": "{t}/home", "MPLCONFIGDIR": "{t}/mpl"}, "{t}/mpl"),
        ],
    )
    def test_matplotlib_lookup_order(self, tmp_path: Path, env: dict[str, str], where: str) -> None:
        filled = {k: v.format(t=tmp_path) for k, v in env.items()}
        assert pychild.matplotlib_cache_dir(filled) == where.format(t=tmp_path)
        assert pychild.seed_matplotlib_cache(filled, str(self._seed(tmp_path))) == 1
        target = Path(where.format(t=tmp_path))
        assert sorted(p.name for p in target.iterdir()) == ["fontlist-v330.json"]
        assert (target / "fontlist-v330.json").read_text() == '{"_version": 330}'

    def test_keeps_what_is_there_and_never_follows_a_link(self, tmp_path: Path) -> None:
        seed = self._seed(tmp_path)
        target = tmp_path / "home" / ".cache" / "matplotlib"
        target.mkdir(parents=True)
        elsewhere = tmp_path / "elsewhere"
        (target / "fontlist-v330.json").symlink_to(elsewhere)
        assert pychild.seed_matplotlib_cache({"HOME": str(tmp_path / "home")}, str(seed)) == 0
        assert not elsewhere.exists()

    def test_no_seed_or_unwritable_target_is_quiet(self, tmp_path: Path) -> None:
        assert pychild.seed_matplotlib_cache({"HOME": str(tmp_path)}, str(tmp_path / "no")) == 0
        blocker = tmp_path / "file"
        blocker.write_text("")
        env = {"MPLCONFIGDIR": str(blocker / "sub")}
        assert pychild.seed_matplotlib_cache(env, str(self._seed(tmp_path))) == 0
