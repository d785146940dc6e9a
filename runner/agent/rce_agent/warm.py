"""Warm interpreters: R, node, java or a data Python started before the job, waiting
for it (warm pools).

An agent of the ``r``, ``node``, ``java`` or ``data`` flavour starts its interpreter
while the pool prepares the container, as the program child the job would have
(``supervise.spawn``: its own session, stdio on the pipes the supervision drains, cwd
/mnt/data, the program's environment). The interpreter does its start-up (R loads its
default packages, node its bootstrap), says so on its stdout (``READY``, read off by
the agent) and blocks on a FIFO. When the job is of its kind, the agent hands the
program over through the FIFO and supervises that child as it would a fresh one: the
time limit, output caps, exit code and OOM detection are unchanged, and the start-up
was paid before the request. Otherwise the agent kills it and runs the plan as usual.

R: the child is ``R --no-echo --no-restore --file=FIFO``, what ``Rscript main.R``
execs (same wrapper script, flags and environment; only the file differs). The agent
writes one line that makes ``commandArgs()`` answer what it answers under ``Rscript
main.R args...``, then the program's text, and closes the FIFO: R's own file REPL
parses and evaluates the program as it would main.R (auto-printing, ``Error in ...``,
``Execution halted``, deferred warnings, ``quit(status=)``, exit status 1 on an
error). Start-up files the program's inputs could hold (``.Rprofile``,
``.Renviron`` in /mnt/data, read by a cold R at its start) send the job to a fresh
``Rscript``, as does a program too big for the FIFO's buffer. What differs: R's
process age (``proc.time()`` counts the wait in the pool) and the parser's line
count (two lines ahead).

node: the child is ``node [--snapshot-blob BLOB] -r BOOT main.js``. BOOT, preloaded
before the main module, reads the job (program path and arguments) from the FIFO,
sets ``process.argv`` and ``process.execArgv`` to those of ``node main.js args...``,
forgets itself (``require.cache``) and returns; node then runs ``process.argv[1]``
as the main module by its own ``runMain``, as it does cold: ``require.main ===
module``, stack traces and exit codes as with ``node main.js``. For TypeScript, BOOT
first runs esbuild in the build directory; its failure ends the run with its exit
code, as the cold plan's ``|| exit``. Only the process age
(``performance.now()``, ``process.uptime()``) differs.

python (the data flavour): the child is ``python3 pywarm.py FIFO``
(``rce_agent.pywarm``): it imports numpy, pandas and matplotlib, reads the job (the
program's path and arguments) and becomes the program in its own process, with the
interpreter state of ``python3 main.py args...`` (``pychild.run``, as a forked child
of a preloading agent had it). When it cannot start, the agent preloads the libraries
itself and forks per job as before.

java: the child is ``java FLAGS --add-exports <the launcher's package> BOOT.java
FIFO``: the source launcher compiles BOOT (loading and warming javac) and runs it;
BOOT reads the job (source path and arguments), sets ``sun.java.command`` to the
cold value and calls the source launcher's own ``Main.main`` for the program, on the
JVM's main thread: the program is compiled in memory and run as by ``java
Main.java args...`` (compile errors, exit codes, the uncaught exception's trace,
which BOOT pads so the outer launcher trims it to what a cold run prints). What
differs: the ``--add-exports`` among the JVM's input arguments (and granted to the
program's compilation) and the JVM's age. Only the single-file case runs warm (the
``javac`` + ``java`` plan of a file whose public class is not its first stays cold).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import time
from collections.abc import Mapping, Sequence

from rce_agent import pychild
from rce_agent.langs.base import Record, WarmRun
from rce_agent.langs.interpreted import node
from rce_agent.langs.java import jvm_flags
from rce_agent.supervise import F_GETPIPE_SZ, spawn
from rce_agent.wire import READY, dumps

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # the C module: ``signal`` wraps it in enums, 2 ms of CPU (rce_agent/__init__.py)
    import _signal as signal

#: Longest wait for it (the pool waits longer for the agent's own READY frame).
READY_TIMEOUT_S = 60.0
#: The package of the JDK's source launcher, which the java boot class calls.
JAVA_LAUNCHER_EXPORT = "jdk.compiler/com.sun.tools.javac.launcher=ALL-UNNAMED"
#: The R front end ``Rscript`` execs.
R_BIN = "/usr/lib/R/bin/R"
#: Files R reads at start-up from its working directory (the workspace).
R_STARTUP_FILES = (".Rprofile", ".Renviron")
#: The pipe buffer asked for the FIFO (the unprivileged maximum by default).
FIFO_BYTES = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

_NODE_BOOT = """'use strict';
// rce: a warm node waiting for its job (rce_agent.warm). Preloaded by -r; once the
// job is read it returns, and node runs process.argv[1] as the main module.
{
  const fs = require('fs');
  delete require.cache[__filename];
  const fd = fs.openSync(%(fifo)s, 'r');
  fs.writeSync(1, %(ready)s);
  const job = JSON.parse(fs.readFileSync(fd, 'utf8'));
  fs.closeSync(fd);
  const at = process.execArgv.indexOf('-r');
  if (at >= 0) process.execArgv.splice(at, 2);
  process.argv.splice(1, process.argv.length - 1, job.main, ...job.args);
  if (job.compile.length) {
    const r = require('child_process').spawnSync(job.compile[0], job.compile.slice(1), {
      cwd: job.build_dir,
      env: { ...process.env, TMPDIR: job.build_dir },
      stdio: 'inherit',
    });
    if (r.error) {
      fs.writeSync(2, `main: 1: ${job.compile[0]}: not found\\n`);
      process.exit(127);
    }
    if (r.status !== 0) {
      process.exit(r.status === null ? 128 + require('os').constants.signals[r.signal] : r.status);
    }
  }
}
"""


_JAVA_BOOT = """import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** rce: a warm JVM waiting for its job (rce_agent.warm). */
public class RceWarmJavaBoot {
    public static void main(String[] a) throws Throwable {
        String[] job;
        try (InputStream in = new FileInputStream(a[0])) {
            System.out.write(%(ready)s.getBytes(StandardCharsets.UTF_8));
            System.out.flush();
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] chunk = new byte[65536];
            for (int n; (n = in.read(chunk)) > 0; ) buf.write(chunk, 0, n);
            job = new String(buf.toByteArray(), StandardCharsets.UTF_8).split("\\0", -1);
        }
        String launcher = "jdk.compiler/com.sun.tools.javac.launcher.Main ";
        System.setProperty("sun.java.command", launcher + String.join(" ", job));
        try {
            com.sun.tools.javac.launcher.Main.main(job);
        } catch (Throwable t) {
            // The launcher running this class cuts as many frames off the trace as lie
            // below this method: append them, so it leaves the program's own trace.
            StackTraceElement[] mine = new Throwable().getStackTrace();
            StackTraceElement[] st = t.getStackTrace();
            StackTraceElement[] padded = Arrays.copyOf(st, st.length + mine.length - 1);
            System.arraycopy(mine, 1, padded, st.length, mine.length - 1);
            t.setStackTrace(padded);
            throw t;
        }
    }
}
"""


class Launch(Record):
    """How to start one warm interpreter: its argv and what to write to the FIFO first."""

    __slots__ = ("argv", "preamble")

    def __init__(self, argv: list[str], preamble: bytes = b"") -> None:
        self.argv = argv
        self.preamble = preamble


def launch_for(kind: str, fifo: str, warm_dir: str, main: str) -> Launch | None:
    """The ``Launch`` of ``kind`` (None when this image lacks the interpreter)."""
    import shutil  # not at import: the light agent never starts an interpreter

    if kind == "r" and os.access(R_BIN, os.X_OK):
        return Launch(
            [R_BIN, "--no-echo", "--no-restore", f"--file={fifo}"], b'cat("rce-ready\\n")\n'
        )
    if kind == "node" and shutil.which("node"):
        boot = os.path.join(warm_dir, "boot.js")
        with open(boot, "w", encoding="utf-8") as fh:
            fh.write(_NODE_BOOT % {"fifo": dumps(fifo), "ready": dumps(READY.decode())})
        return Launch([*node(), "-r", boot, main])
    if kind == "python":
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pywarm.py")
        return Launch([pychild.BASE_ORIG_ARGV0, script, fifo])
    if kind == "java" and shutil.which("java"):
        boot = os.path.join(warm_dir, "RceWarmJavaBoot.java")
        with open(boot, "w", encoding="utf-8") as fh:
            fh.write(_JAVA_BOOT % {"ready": dumps(READY.decode())})
        return Launch(["java", *jvm_flags(), "--add-exports", JAVA_LAUNCHER_EXPORT, boot, fifo])
    return None


def _r_raw(text: str) -> str:
    """An R expression for ``text`` as the bytes a command line would carry (UTF-8)."""
    data = text.encode("utf-8")
    return f"rawToChar(as.raw(c({','.join(str(b) for b in data)})))" if data else '""'


def r_feed(main: str, program: bytes, args: Sequence[str]) -> bytes:
    """What the FIFO carries for an R job: one line that makes ``commandArgs()`` what
    ``Rscript main args...`` gives (``--file=main``, then ``--args`` and the arguments
    when there are some), then the program."""
    extra = ["--args", *args] if args else []
    parts = ",".join(_r_raw(a) for a in extra)
    line = (
        "local({a <- commandArgs(); "
        f'a[startsWith(a, "--file=")] <- {_r_raw("--file=" + main)}; '
        f"a <- c(a, c({parts})); "
        "f <- local(function(trailingOnly = FALSE) { if (trailingOnly) { "
        'm <- match("--args", args, 0L); if (m) args[-seq_len(m)] else character() '
        "} else args }, envir = list2env(list(args = a), parent = baseenv())); "
        'unlockBinding("commandArgs", baseenv()); '
        'assign("commandArgs", f, envir = baseenv()); '
        'lockBinding("commandArgs", baseenv()); invisible(NULL)})\n'
    )
    return line.encode("ascii") + program


def node_feed(run: WarmRun, args: Sequence[str]) -> bytes:
    """What the FIFO carries for a node job (read by the boot script)."""
    job = {"main": run.main, "args": list(args), "compile": run.compile, "build_dir": run.build_dir}
    return dumps(job).encode("utf-8")


def python_feed(run: WarmRun, args: Sequence[str]) -> bytes:
    """What the FIFO carries for a Python job (read by ``rce_agent.pywarm``)."""
    return dumps({"main": run.main, "args": list(args)}).encode("utf-8")


def java_feed(run: WarmRun, args: Sequence[str]) -> bytes:
    """What the FIFO carries for a java job: the source path and the arguments,
    NUL-separated (the boot class's ``String[]`` for the launcher)."""
    return "\0".join([run.main, *args]).encode("utf-8")


def _plain(args: Sequence[str]) -> bool:
    """Arguments that reach a program the same way through a FIFO as through exec
    (no NUL, which exec refuses; no lone surrogate, which it passes as raw bytes)."""
    for arg in args:
        if "\0" in arg:
            return False
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


class WarmChild:
    """One interpreter started before the job; see the module docstring."""

    def __init__(
        self, kind: str, pid: int, out_r: int, err_r: int, fifo_fd: int, env: dict[str, str]
    ) -> None:
        self.kind = kind
        self.pid = pid
        self.out_r = out_r
        self.err_r = err_r
        self.fifo_fd = fifo_fd
        self.env = env
        self._exited = False

    @classmethod
    def start(
        cls,
        kind: str,
        *,
        warm_dir: str,
        env: Mapping[str, str],
        cwd: str,
        main: str,
        launch: Launch | None = None,
        timeout_s: float = READY_TIMEOUT_S,
    ) -> WarmChild | None:
        """Start ``kind``'s interpreter and wait until it waits for the job; None when
        it cannot (the job then runs as usual). ``launch`` replaces ``launch_for``."""
        import shutil  # not at import: the light agent never starts an interpreter

        shutil.rmtree(warm_dir, ignore_errors=True)
        os.makedirs(warm_dir, mode=0o700)
        fifo = os.path.join(warm_dir, "job.fifo")
        os.mkfifo(fifo, 0o600)
        # Read-write: the child's open never blocks, and the buffer outlives it.
        fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(fifo_fd, _F_SETPIPE_SZ, FIFO_BYTES)
        launch = launch or launch_for(kind, fifo, warm_dir, main)
        if launch is None:
            os.close(fifo_fd)
            shutil.rmtree(warm_dir, ignore_errors=True)
            return None
        pid, out_r, err_r = spawn(launch.argv, env, cwd)
        child = cls(kind, pid, out_r, err_r, fifo_fd, dict(env))
        try:
            if launch.preamble:
                os.write(fifo_fd, launch.preamble)
            ready = child._await_ready(timeout_s)
        except OSError:
            ready = False
        # The child holds the FIFO (and node its boot script) open: no path is left
        # for the program to find.
        shutil.rmtree(warm_dir, ignore_errors=True)
        if not ready:
            child.discard()
            return None
        return child

    def _await_ready(self, timeout_s: float) -> bool:
        got = b""
        end = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.out_r, selectors.EVENT_READ)
            while got != READY:
                left = end - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return False
                chunk = os.read(self.out_r, len(READY) - len(got))
                if not chunk or not READY.startswith(got + chunk):
                    return False
                got += chunk
        return True

    def alive(self) -> bool:
        """Whether the interpreter still runs (reaps it when it does not)."""
        if self._exited:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid = self.pid
        if pid == self.pid:
            self._exited = True
        return not self._exited

    def feed_for(self, run: WarmRun, args: Sequence[str], cwd: str) -> bytes | None:
        """What to write for ``run``, or None when this child cannot run it as a fresh
        interpreter would."""
        if run.kind != self.kind or not _plain(args):
            return None
        if self.kind == "r":
            if any(os.path.lexists(os.path.join(cwd, name)) for name in R_STARTUP_FILES):
                return None
            with open(run.main, "rb") as fh:
                return r_feed(run.main, fh.read(), args)
        if self.kind == "java":
            return java_feed(run, args)
        if self.kind == "python":
            return python_feed(run, args)
        return node_feed(run, args)

    def take(
        self, run: WarmRun, args: Sequence[str], env: Mapping[str, str], cwd: str
    ) -> tuple[int, int, int] | None:
        """Hand the job to the interpreter: (pid, stdout read fd, stderr read fd) to
        supervise, or None (then ``discard`` it and run the plan)."""
        if dict(env) != self.env or not self.alive():
            return None
        feed = self.feed_for(run, args, cwd)
        if feed is None:
            return None
        try:
            room = fcntl.fcntl(self.fifo_fd, F_GETPIPE_SZ)
        except OSError:
            room = 65536
        if len(feed) > room:
            return None
        view = memoryview(feed)
        try:
            while view:  # the FIFO is empty: all of it fits without blocking
                view = view[os.write(self.fifo_fd, view) :]
        except BlockingIOError:  # pragma: no cover - never seen: the room was checked
            pass
        os.close(self.fifo_fd)
        self.fifo_fd = -1
        return self.pid, self.out_r, self.err_r

    def discard(self) -> None:
        """Kill the interpreter (and anything it started) and close its fds."""
        if not self._exited:
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self._exited = True
        for fd in (self.out_r, self.err_r, self.fifo_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.out_r = self.err_r = self.fifo_fd = -1
