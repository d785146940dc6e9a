"""Warm interpreters (``rce_agent.warm``) outside Docker: the hand-over through the
FIFO with a stand-in interpreter, the cases that decline it, the R feed, and a real
warm node when this machine has one."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rce_agent import warm
from rce_agent.langs.base import WarmRun
from rce_agent.supervise import Reaper, exit_code_of, supervise
from rce_agent.warm import Launch, WarmChild, java_feed, node_feed, r_feed

#: A stand-in interpreter: opens the FIFO, says it is ready, reads the job to EOF,
#: prints it and exits 3.
FAKE = (
    "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.write(1, b'rce-ready\\n');"
    "data = b''.join(iter(lambda: os.read(fd, 65536), b''));"
    "os.write(1, b'job:' + data); sys.exit(3)"
)


def fake_launch(warm_dir: Path, script: str = FAKE) -> Launch:
    return Launch([sys.executable, "-c", script, str(warm_dir / "job.fifo")])


def supervised(pid: int, out_r: int, err_r: int) -> tuple[int, bytes, bytes]:
    reaper = Reaper()
    try:
        outcome = supervise(pid, out_r, err_r, 10.0, 100_000, reaper)
    finally:
        reaper.close()
    return exit_code_of(outcome.status), bytes(outcome.stdout.data), bytes(outcome.stderr.data)


def start(tmp_path: Path, kind: str = "node", script: str = FAKE, **kw: float) -> WarmChild | None:
    warm_dir = tmp_path / "warm"
    return WarmChild.start(
        kind,
        warm_dir=str(warm_dir),
        env=dict(os.environ),
        cwd=str(tmp_path),
        main=str(tmp_path / "main.js"),
        launch=fake_launch(warm_dir, script),
        **kw,
    )


def test_the_job_goes_through_the_fifo_to_the_started_child(tmp_path: Path) -> None:
    child = start(tmp_path)
    assert child is not None
    assert not (tmp_path / "warm").exists()  # nothing left for the program to find
    run = WarmRun("node", str(tmp_path / "main.js"))
    handed = child.take(run, ["a", "b c"], dict(os.environ), str(tmp_path))
    assert handed is not None and handed[0] == child.pid
    code, out, _ = supervised(*handed)
    assert code == 3
    assert json.loads(out.removeprefix(b"job:")) == {
        "main": run.main,
        "args": ["a", "b c"],
        "compile": [],
        "build_dir": "",
    }


@pytest.mark.parametrize(
    "script",
    [
        "import sys; sys.exit(0)",  # exits before it is ready
        "import os; os.write(1, b'hello\\n')",  # says something else
        "import time; time.sleep(30)",  # never ready
    ],
)
def test_a_child_that_does_not_become_ready_is_none(tmp_path: Path, script: str) -> None:
    assert start(tmp_path, script=script, timeout_s=1.0) is None


class TestDeclines:
    @pytest.fixture
    def child(self, tmp_path: Path) -> Iterator[WarmChild]:
        child = start(tmp_path, kind="r")
        assert child is not None
        yield child
        child.discard()

    def test_another_kind(self, child: WarmChild, tmp_path: Path) -> None:
        run = WarmRun("node", str(tmp_path / "main.js"))
        assert child.take(run, [], dict(os.environ), str(tmp_path)) is None

    def test_another_environment(self, child: WarmChild, tmp_path: Path) -> None:
        main = tmp_path / "main.R"
        main.write_text("1")
        env = {**os.environ, "EXTRA": "1"}
        assert child.take(WarmRun("r", str(main)), [], env, str(tmp_path)) is None

    @pytest.mark.parametrize("name", [".Rprofile", ".Renviron"])
    def test_an_r_start_up_file_in_the_workspace(
        self, child: WarmChild, tmp_path: Path, name: str
    ) -> None:
        main = tmp_path / "main.R"
        main.write_text("1")
        (tmp_path / name).write_text("x")
        assert child.take(WarmRun("r", str(main)), [], dict(os.environ), str(tmp_path)) is None

    @pytest.mark.parametrize("arg", ["a\0b", "\udc80"])
    def test_arguments_exec_would_not_pass_as_is(
        self, child: WarmChild, tmp_path: Path, arg: str
    ) -> None:
        main = tmp_path / "main.R"
        main.write_text("1")
        assert child.take(WarmRun("r", str(main)), [arg], dict(os.environ), str(tmp_path)) is None

    def test_a_program_bigger_than_the_fifo(self, child: WarmChild, tmp_path: Path) -> None:
        main = tmp_path / "main.R"
        main.write_bytes(b"#" * (warm.FIFO_BYTES + 1))
        assert child.take(WarmRun("r", str(main)), [], dict(os.environ), str(tmp_path)) is None

    def test_a_dead_child(self, child: WarmChild, tmp_path: Path) -> None:
        main = tmp_path / "main.R"
        main.write_text("1")
        os.kill(child.pid, 9)
        for _ in range(50):
            if not child.alive():
                break
            time.sleep(0.1)
        assert child.take(WarmRun("r", str(main)), [], dict(os.environ), str(tmp_path)) is None


def test_discard_kills_the_child(tmp_path: Path) -> None:
    child = start(tmp_path)
    assert child is not None
    pid = child.pid
    child.discard()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_r_feed_sets_command_args_then_carries_the_program() -> None:
    feed = r_feed("/b/main.R", b"cat(1)\n", ["a", "é"])
    line, program = feed.split(b"\n", 1)
    assert program == b"cat(1)\n"
    text = line.decode("ascii")
    assert text.startswith("local({") and text.endswith("invisible(NULL)})")
    # The values travel as raw bytes: UTF-8 of "--file=/b/main.R", "--args", "a", "é".
    for value in ("--file=/b/main.R", "--args", "a", "é"):
        assert ",".join(str(b) for b in value.encode()) in text
    assert "a <- c(a, c());" in r_feed("/m", b"", []).decode()


def test_the_node_feed_is_json() -> None:
    run = WarmRun("node", "/b/main.js", ["esbuild", "main.ts"], "/b")
    assert json.loads(node_feed(run, ["x"])) == {
        "main": "/b/main.js",
        "args": ["x"],
        "compile": ["esbuild", "main.ts"],
        "build_dir": "/b",
    }


def test_the_java_feed_is_the_launchers_arguments() -> None:
    run = WarmRun("java", "/b/Main.java")
    assert java_feed(run, ["a b", "", "é"]).split(b"\0") == [
        b"/b/Main.java",
        b"a b",
        b"",
        "é".encode(),
    ]


def start_real(tmp_path: Path, kind: str, name: str, code: str) -> tuple[WarmChild, Path, Path]:
    """A real warm interpreter of ``kind`` (this machine's), with ``code`` written to
    ``build/name`` and ``work`` as its workspace: (child, main, work)."""
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    main = build / name
    main.write_text(code)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    child = WarmChild.start(
        kind, warm_dir=str(tmp_path / "warm"), env=dict(os.environ), cwd=str(work), main=str(main)
    )
    assert child is not None
    return child, main, work


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on this machine")
class TestRealNode:
    """The boot script with this machine's node: node main.js, as cold."""

    def run(
        self, tmp_path: Path, code: str, args: list[str], compile_: list[str] | None = None
    ) -> tuple[int, bytes, bytes]:
        child, main, work = start_real(tmp_path, "node", "main.js", code)
        run = WarmRun("node", str(main), compile_ or [], str(tmp_path / "build"))
        handed = child.take(run, args, dict(os.environ), str(work))
        assert handed is not None
        return supervised(*handed)

    def test_it_runs_the_program_as_the_main_module(self, tmp_path: Path) -> None:
        code = (
            "console.log(JSON.stringify([require.main === module, process.argv.slice(1),"
            " process.execArgv, process.cwd(), Object.keys(require.cache)]));"
            " process.exitCode = 4"
        )
        status, out, err = self.run(tmp_path, code, ["a", "b c"])
        main = str(tmp_path / "build" / "main.js")
        assert (status, err) == (4, b"")
        assert json.loads(out) == [True, [main, "a", "b c"], [], str(tmp_path / "work"), [main]]

    def test_an_uncaught_error_is_reported_as_cold(self, tmp_path: Path) -> None:
        status, _, err = self.run(tmp_path, "throw new Error('boom')", [])
        assert status == 1 and b"Error: boom" in err and b"boot.js" not in err

    def test_a_failed_compile_step_ends_the_run_with_its_code(self, tmp_path: Path) -> None:
        status, out, _ = self.run(tmp_path, "console.log('ran')", [], ["sh", "-c", "exit 5"])
        assert (status, out) == (5, b"")
        status, _, err = self.run(tmp_path, "console.log('ran')", [], ["/no/such/compiler"])
        assert status == 127 and b"not found" in err


class TestRealPython:
    """The warm data interpreter (``rce_agent.pywarm``) with this machine's Python:
    the program runs as ``python3 main.py args...`` would, in the waiting process."""

    def run(self, tmp_path: Path, code: str, args: list[str]) -> tuple[int, bytes, bytes, int]:
        child, main, work = start_real(tmp_path, "python", "main.py", code)
        handed = child.take(WarmRun("python", str(main)), args, dict(os.environ), str(work))
        assert handed is not None and handed[0] == child.pid
        status, out, err = supervised(*handed)
        return status, out, err, child.pid

    def test_it_runs_the_program_as_the_main_module(self, tmp_path: Path) -> None:
        code = (
            "import json, os, sys\n"
            "print(json.dumps([__name__, sys.argv, sys.path[0], os.getcwd(), os.getpid()]))\n"
            "sys.exit(4)\n"
        )
        status, out, err, pid = self.run(tmp_path, code, ["a", "b c"])
        main = str(tmp_path / "build" / "main.py")
        assert (status, err) == (4, b"")
        assert json.loads(out) == [
            "__main__",
            [main, "a", "b c"],
            str(tmp_path / "build"),
            str(tmp_path / "work"),
            pid,  # the waiting process itself: no fork per job
        ]

    def test_an_uncaught_error_is_reported_as_cold(self, tmp_path: Path) -> None:
        status, out, err, _ = self.run(tmp_path, "print('before')\nraise ValueError('boom')\n", [])
        assert status == 1 and out == b"before\n"
        assert err.startswith(b"Traceback (most recent call last):\n")
        assert b"ValueError: boom" in err
        assert b"pywarm" not in err and b"pychild" not in err

    def test_the_feed_is_json(self) -> None:
        feed = warm.python_feed(WarmRun("python", "/b/main.py"), ["x", "é"])
        assert json.loads(feed) == {"main": "/b/main.py", "args": ["x", "é"]}
