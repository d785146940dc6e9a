"""Running the program: hardening the agent, spawning, the time limit, reaping, capture.

The agent is the container's PID 1 and not dumpable (``harden``): a program of the
same uid cannot open ``/proc/1/fd/*`` (the reply channel), read ``/proc/1/mem`` or
ptrace it. A child starts with nothing inherited but its three stdio fds; orphans the
program leaves are reaped here (PID 1's duty), and everything still running when the
program ends or times out is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import math
import os
import selectors
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from rce_agent.pychild import BASE_ORIG_ARGV0, cannot_start, exec_program, run_fed

TYPE_CHECKING = False
if TYPE_CHECKING:  # the agent never imports typing (rce_agent/__init__.py)
    import signal

    from rce_agent.ptc import Relay
else:  # the C module: ``signal`` wraps it in enums, 2 ms of CPU (rce_agent/__init__.py)
    import _signal as signal

CHUNK = 256 * 1024
DRAIN_AFTER_EXIT_S = 2.0
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
_MAX_FD = 65536
#: fcntl's command for a pipe's capacity (Linux; named by Python 3.10 and later).
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def harden() -> bool:
    """Make this process non-dumpable; True when the kernel confirms it.

    A non-dumpable process's ``/proc/<pid>/{fd,mem,environ,...}`` belong to root and
    ptrace of it needs CAP_SYS_PTRACE, which the sandbox never has. Children reset
    the flag when they exec; a forked (not exec'ed) child keeps it, which only
    protects it more.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return False
        return int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class Capped:
    """Keeps the first ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]


def oom_kills() -> int | None:
    """The memory cgroup's OOM-kill count (v1 or v2), or None when unreadable."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            with open(path, encoding="ascii") as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def child_setup(out_w: int, err_w: int, cwd: str, *, stdin: int | None = None) -> None:
    """In the forked child: new session, stdio on the pipes and nothing else, cwd,
    the agent's SIGCHLD handling undone, OOM victim first. Stdin is ``/dev/null``, or
    ``stdin`` when given. Python's own signal dispositions stay (a child that execs
    resets them, ``pychild.exec_program``)."""
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull if stdin is None else stdin, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.closerange(3, _MAX_FD)
    os.chdir(cwd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as fh:
            fh.write("1000")
    except OSError:
        pass


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    in_process: Callable[[], None] | None = None,
    *,
    stdin: int | None = None,
) -> tuple[int, int, int]:
    """Fork the program; return (pid, stdout read fd, stderr read fd).

    ``argv[0]`` is looked up on ``env``'s PATH and exec'ed, except with
    ``in_process``: the child then calls it (it never returns). ``stdin`` is the
    child's fd 0 (default ``/dev/null``).
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child_setup(out_w, err_w, cwd, stdin=stdin)
            if in_process is not None:
                in_process()
        except BaseException as exc:
            cannot_start(argv[0], exc)
        exec_program(list(argv), env)
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


class Forked:
    """The child of the next job, forked before the job (while the pool prepares the
    container): set up as ``spawn``'s, it waits for its job on its stdin, a pipe
    (``pychild.run_fed``), then runs a Python program in its own process or execs the
    program's argv. Under gVisor the fork costs more than a hello program (13 ms on
    the ptrace platform against 0.5 under runc, measured); paid before the job, it
    leaves the request's path.
    """

    __slots__ = ("err_r", "job_w", "out_r", "pid")

    def __init__(self, pid: int, out_r: int, err_r: int, job_w: int) -> None:
        self.pid = pid
        self.out_r = out_r
        self.err_r = err_r
        self.job_w = job_w

    @classmethod
    def start(cls, env: Mapping[str, str], cwd: str) -> Forked:
        """Fork the child (in ``cwd``; a Python job without an ``env`` gets ``env``).

        Not forked from ``__init__``: a class call is a C-level call, one level of the
        recursion limit that no frame shows, and ``pychild.run`` gives the program the
        depth a cold one has by counting the frames below it.
        """
        job_r, job_w = os.pipe2(os.O_CLOEXEC)
        start_env = dict(env)

        def run() -> None:
            run_fed(0, start_env)

        try:
            pid, out_r, err_r = spawn([BASE_ORIG_ARGV0], env, cwd, run, stdin=job_r)
        except BaseException:
            os.close(job_w)
            raise
        finally:
            os.close(job_r)
        return cls(pid, out_r, err_r, job_w)

    def take(self, job: bytes) -> tuple[int, int, int] | None:
        """Hand ``job`` (``run_fed``'s JSON) over: (pid, stdout read fd, stderr read fd)
        to supervise, or None when the child is gone or the job does not fit the pipe
        (then ``discard`` it and spawn)."""
        try:
            if os.waitpid(self.pid, os.WNOHANG)[0] == self.pid:
                return None
            room = fcntl.fcntl(self.job_w, F_GETPIPE_SZ)
        except OSError:
            return None
        if len(job) > room:
            return None
        try:
            os.write(self.job_w, job)  # fits the empty pipe: written whole
        except OSError:
            return None
        os.close(self.job_w)
        self.job_w = -1
        return self.pid, self.out_r, self.err_r

    def discard(self) -> None:
        """Kill the child and close its fds. Its exit is left to the reaping of the run
        (a fork holds next to no memory of its own; its exit takes milliseconds under
        gVisor)."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        for fd in (self.out_r, self.err_r, self.job_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.out_r = self.err_r = self.job_w = -1


def kill_everything(pid: int) -> None:
    """SIGKILL the program's group, then, when we are the container's PID 1, every
    other process (``kill(-1)`` spares the caller)."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if os.getpid() == 1:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)


#: What the agent becomes once its reply is out (``linger``): a process that holds
#: nothing and waits to be removed (its argument: the seconds to wait at most).
LINGER_PROGRAM = "/bin/sleep"
#: Longest linger the agent accepts (seconds).
MAX_LINGER_S = 300
#: Rounds of ``kill(-1)`` before lingering (a process forking meanwhile can escape one).
_LINGER_KILL_ROUNDS = 20


def _other_processes() -> list[int]:
    """PIDs in this PID namespace other than ours (from /proc)."""
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(n) for n in names if n.isdigit() and int(n) != me]


def linger(seconds: float) -> None:
    """After a complete reply, wait up to ``seconds`` (the job's ``linger_s``) for the
    host to remove the container instead of exiting. Only as the container's PID 1
    and for ``seconds`` > 0; returns (the agent then exits) otherwise or when nothing
    can be exec'ed.

    The container's exit is engine work (its teardown) that, done at once, shares the
    cores with the next run of a client sending execs back to back; lingering moves
    it to the removal, which the host does when the host is quiet (``runner.activity``)
    and at once under concurrent load. Every other process is killed and reaped first
    (``kill(-1)`` until none is left), then the agent becomes ``LINGER_ARGV``: the
    program cannot outlive its reply, and the memory the agent held (a data
    flavour's preloaded libraries) is released. The engine's SIGKILL ends it, or it
    exits once ``seconds`` have passed (a host that died meanwhile never removes it).
    """
    if os.getpid() != 1 or not seconds > 0:
        return
    for _ in range(_LINGER_KILL_ROUNDS):
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        while True:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        if not _other_processes():
            break
    else:
        return  # something survived every round: exit, and the kernel ends it with us
    sys.stdout.flush()
    sys.stderr.flush()
    wait_s = str(math.ceil(min(seconds, MAX_LINGER_S)))
    with contextlib.suppress(OSError):
        os.execv(LINGER_PROGRAM, [LINGER_PROGRAM, wait_s])  # noqa: S606 - a fixed argv, no shell


class Reaper:
    """Reaps every exited child (PID 1's duty), keeping the status of the program's.

    SIGCHLD wakes the supervision loop through a pipe (``signal.set_wakeup_fd``).
    """

    def __init__(self) -> None:
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_fd = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self._old_handler = signal.signal(signal.SIGCHLD, lambda *_: None)
        self.statuses: dict[int, int] = {}

    def reap(self) -> None:
        """Collect every exited child without blocking."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.statuses[pid] = status

    def close(self) -> None:
        signal.signal(signal.SIGCHLD, self._old_handler)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self.wake_r)
        os.close(self.wake_w)


class Outcome:
    """How the program ended and what it printed."""

    __slots__ = ("status", "stderr", "stdout", "timed_out")

    def __init__(self, status: int, timed_out: bool, stdout: Capped, stderr: Capped) -> None:
        self.status = status
        self.timed_out = timed_out
        self.stdout = stdout
        self.stderr = stderr


def supervise(
    pid: int,
    out_r: int,
    err_r: int,
    timeout_s: float,
    cap: int,
    reaper: Reaper,
    relay: Relay | None = None,
) -> Outcome:
    """Drain the pipes until the program exits (or times out); kill what remains.

    The pipes are drained for up to ``DRAIN_AFTER_EXIT_S`` after the exit, since
    background processes may hold them; then everything left is killed. ``relay``
    (programmatic tool calling, ``rce_agent.ptc``) joins the loop when given.
    """
    out, err = Capped(cap), Capped(cap)
    sinks = {out_r: out, err_r: err}
    sel = selectors.DefaultSelector()
    for fd in sinks:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(reaper.wake_r, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    if relay is not None:  # PTC hook 1/3: the relay's socket and stdin join the selector
        relay.register(sel)
    status: int | None = None
    timed_out = False
    drain_until = 0.0
    reaper.reap()
    while sinks or status is None:
        now = time.monotonic()
        if relay is not None and status is None:  # PTC hook 2/3: no clock while tools run
            deadline = relay.deadline(deadline, now)
        if status is None:
            status = reaper.statuses.pop(pid, None)
            if status is not None:
                kill_everything(pid)
                drain_until = now + DRAIN_AFTER_EXIT_S
                continue
            if now >= deadline:
                kill_everything(pid)
                timed_out = True
                status = reaper.statuses.pop(pid, None)
                if status is None:
                    _, status = os.waitpid(pid, 0)
                drain_until = time.monotonic() + DRAIN_AFTER_EXIT_S
                continue
            wait = deadline - now
            if relay is not None:  # PTC: wake up in time to end a wait at the cap
                wait = min(wait, relay.wake_in(now))
        else:
            if now >= drain_until:
                break
            wait = drain_until - now
        for key, _ in sel.select(wait):
            if relay is not None and relay.handle(key):  # PTC hook 3/3: calls and results
                continue
            fd = key.fd
            if fd == reaper.wake_r:
                reaper.reap()
                continue
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                chunk = b""
            if chunk:
                sinks[fd].feed(chunk)
            else:
                sel.unregister(fd)
                os.close(fd)
                del sinks[fd]
    for fd in sinks:
        sel.unregister(fd)
        os.close(fd)
    sel.close()
    kill_everything(pid)
    reaper.reap()
    return Outcome(status, timed_out, out, err)


def exit_code_of(status: int) -> int:
    """The shell's view of a wait status: the exit code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
