"""The job, start to end: harden, (preload), read the job, restore, run, reply."""

from __future__ import annotations

import contextlib
import os
import sys
import time

from rce_agent import pychild
from rce_agent.langs import plan_for
from rce_agent.supervise import (
    Forked,
    Reaper,
    exit_code_of,
    harden,
    linger,
    oom_kills,
    spawn,
    supervise,
)
from rce_agent.wire import CHUNK, dumps, read_job, send_frame, send_json

TYPE_CHECKING = False
if TYPE_CHECKING:  # the agent never imports typing (rce_agent/__init__.py)
    from typing import Any

    from rce_agent.warm import WarmChild

WORKDIR = "/mnt/data"
#: The private, exec-able tmpfs where sources and build products live: outside the
#: workspace, so they never come back as outputs.
BUILD_DIR = "/var/rce"
#: Environment variables meant for the agent only.
AGENT_ENV = ("RCE_AGENT_PRELOAD",)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The program's environment: the agent's, without its own settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in AGENT_ENV and k != "PYTHONPATH"}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(extra)
    return env


def build_dir() -> str:
    """The build directory: ``BUILD_DIR`` when it is mounted, else one under /tmp."""
    if os.path.isdir(BUILD_DIR) and os.access(BUILD_DIR, os.W_OK):
        return os.path.join(BUILD_DIR, "job")
    return "/tmp/rce"


def warm_dir() -> str:
    """Where a warm interpreter's FIFO (and boot script) live until it started."""
    return build_dir() + "-warm"


def start_warm(kind: str) -> WarmChild | None:
    """The warm interpreter of ``kind`` (before the job), or None when it cannot start."""
    from rce_agent.warm import WarmChild  # not on a light sandbox's start

    try:
        return WarmChild.start(
            kind,
            warm_dir=warm_dir(),
            env=child_env({}),
            cwd=WORKDIR,
            main=os.path.join(build_dir(), "main.js"),
        )
    except OSError as exc:
        sys.stderr.write(f"rce-agent: warm {kind} did not start: {exc!r}\n")
        return None


def fork_ahead() -> Forked | None:
    """The child of the job, forked before it (``supervise.Forked``), or None."""
    try:
        return Forked.start(child_env({}), WORKDIR)
    except OSError as exc:
        sys.stderr.write(f"rce-agent: no child forked before the job: {exc!r}\n")
        return None


def run_job(
    job: dict[str, Any],
    preloaded: bool,
    warm: WarmChild | None = None,
    forked: Forked | None = None,
) -> None:
    limits = job.get("limits", {})
    cap = int(limits.get("max_output_bytes", 1_000_000))
    timeout_s = float(limits.get("run_timeout_s", 30.0))
    notices: list[str] = []
    before: dict[str, str] = {}
    if job.get("files"):
        from rce_agent.restore import restore

        before = restore(WORKDIR, notices)
    args = [str(a) for a in job.get("args", [])]
    lang = str(job.get("lang", "py"))
    plan = plan_for(lang, str(job.get("code", "")), build_dir())
    env = child_env(plan.env)
    argv = [*plan.argv, *args]
    in_process = None
    in_process_path = None
    relay = None
    if job.get("ptc"):  # programmatic tool calling: the program runs with the tools
        from rce_agent.ptc import Relay

        relay = Relay(job, os.path.join(build_dir(), "ptc"))
        python = plan.python and pychild.BASE_ORIG_ARGV0
        argv = relay.program(lang, plan.python, [python] if python else plan.argv, args, env)
        relay.listen()
    elif plan.python is not None:
        argv = [pychild.BASE_ORIG_ARGV0, plan.python, *args]
        if preloaded:
            path = in_process_path = plan.python

            def in_process() -> None:
                pychild.run(path, args, env)

    reaper = Reaper()  # before a discard: the discarded child is reaped with the rest
    handed = None
    if warm is not None:  # a warm interpreter runs the program when it can, as cold
        if relay is None and plan.warm is not None:
            handed = warm.take(plan.warm, args, env, WORKDIR)
        if handed is None:
            warm.discard()
    if forked is not None:  # the child forked ahead runs what spawn's would
        fed: dict[str, Any] = {"argv": argv, "env": env}
        if in_process_path is not None:
            fed = {"main": in_process_path, "args": args, "env": env}
        handed = forked.take(dumps(fed).encode("utf-8"))
        if handed is None:
            forked.discard()
    oom_before = oom_kills()
    started = time.monotonic()
    if handed is not None:
        pid, out_r, err_r = handed
    else:
        pid, out_r, err_r = spawn(argv, env, WORKDIR, in_process)
    outcome = supervise(pid, out_r, err_r, timeout_s, cap, reaper, relay)
    duration = time.monotonic() - started
    reaper.close()
    if relay is not None:  # tell the host the reply follows
        relay.finish()
        notices.extend(relay.notices())
    exit_code = exit_code_of(outcome.status)
    oom_after = oom_kills()
    oom_killed = (
        not outcome.timed_out
        and exit_code != 0
        and oom_before is not None
        and oom_after is not None
        and oom_after > oom_before
    )
    for stream, kind in ((outcome.stdout, b"O"), (outcome.stderr, b"E")):
        data = bytes(stream.data)
        for start in range(0, len(data), CHUNK):
            send_frame(kind, data[start : start + CHUNK])
    from rce_agent.collect import Collector

    collector = Collector(
        WORKDIR,
        before,
        int(limits.get("max_file_bytes", 50 << 20)),
        int(limits.get("max_files", 100)),
    )
    deleted = collector.run()
    send_json(
        b"R",
        {
            "exit_code": exit_code,
            "timed_out": outcome.timed_out,
            "oom_killed": oom_killed,
            "stdout_bytes": outcome.stdout.total,
            "stderr_bytes": outcome.stderr.total,
            "deleted": deleted,
            "skipped": collector.skipped,
            "skipped_more": collector.skipped_more,
            "notices": notices,
            "duration_s": duration,
        },
    )


def linger_seconds(job: dict[str, Any]) -> float:
    """The job's ``linger_s`` (0 when absent or not a number)."""
    value = job.get("linger_s", 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def main() -> int:
    hardened = harden()
    # Files uploaded to the workspace must not shadow what the agent imports.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != WORKDIR]
    pychild.seed_matplotlib_cache(os.environ)
    flavour = os.environ.get("RCE_AGENT_PRELOAD", "")
    modules = pychild.WARM_FLAVOURS.get(flavour)
    kind = pychild.WARM_KINDS.get(flavour)
    preloaded = modules is not None or kind is not None
    warm = None
    forked = None
    if preloaded:
        if kind is not None and hardened:
            warm = start_warm(kind)
        if modules and warm is None:  # no warm data interpreter: the agent preloads
            pychild.preload(modules)
        else:
            pychild.freeze_heap()
        if warm is None and hardened:
            forked = fork_ahead()
        send_frame(b"P")
    try:
        job = read_job()
        if job is None:
            return 0
        if not hardened:
            raise RuntimeError("the agent could not make itself unreachable (prctl)")
        run_job(job, preloaded, warm, forked)
    except BrokenPipeError:
        return 1
    except Exception as exc:
        import traceback

        traceback.print_exc()
        with contextlib.suppress(OSError):
            send_json(b"R", {"error": f"agent failed: {type(exc).__name__}: {exc}"[:2000]})
        return 1
    # The reply is complete: the host removes the container when it has time.
    linger(linger_seconds(job))
    return 0
