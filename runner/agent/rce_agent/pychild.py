"""Python in a forked child of a warm agent, set up to behave as ``python3 main.py``.

The warm agent imported its libraries before the job; the child inherits them, then
gets the interpreter state a fresh ``python3 path args...`` would have: ``__main__``,
``sys.argv``/``sys.path``/stdio, uncaught exceptions through ``sys.excepthook`` with
the agent's frames stripped, SystemExit codes, threads, atexit and buffering.
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import io
import os
import sys
from collections.abc import Mapping
from types import ModuleType, TracebackType

TYPE_CHECKING = False
if TYPE_CHECKING:  # the agent never imports typing (rce_agent/__init__.py)
    import signal
    from typing import Any, TextIO
else:  # the C module: ``signal`` wraps it in enums, 2 ms of CPU (rce_agent/__init__.py)
    import _signal as signal

PRELOAD_MODULES = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot")
#: RCE_AGENT_PRELOAD values: the modules each warm flavour imports before the job.
WARM_FLAVOURS: dict[str, tuple[str, ...]] = {
    "data": PRELOAD_MODULES,
    "1": PRELOAD_MODULES,
    "light": (),
}
#: RCE_AGENT_PRELOAD values whose agent starts a waiting interpreter of this kind
#: before the job (``rce_agent.warm``, imported by those agents only).
WARM_KINDS = {"r": "r", "node": "node", "java": "java", "data": "python", "1": "python"}
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: matplotlib's font list, built into the image (images/cpu/layer.sh). A fresh sandbox
#: has an empty cache folder, so without it the first ``import matplotlib.pyplot`` runs
#: fc-list and reads every font to build the list again: about 200 ms of CPU.
MPL_CACHE_SEED = "/opt/rce/mplcache"

# The interpreter state a cold ``python3 main.py`` starts from, captured before any
# preloading so a forked child can be put back into it. The image's
# ``rce-workspace.pth`` puts /mnt/data at the END of it: the standard library and
# site-packages always come first.
BASE_SYS_PATH = list(sys.path)
BASE_ORIG_ARGV0 = sys.orig_argv[0] if getattr(sys, "orig_argv", None) else "python3"


def matplotlib_cache_dir(env: Mapping[str, str]) -> str:
    """Where matplotlib looks for its cache under ``env`` (Linux): ``MPLCONFIGDIR``, else
    ``$XDG_CACHE_HOME/matplotlib``, else ``$HOME/.cache/matplotlib``."""
    configured = env.get("MPLCONFIGDIR")
    if configured:
        return os.path.abspath(configured)
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or "/tmp", ".cache")
    return os.path.join(xdg, "matplotlib")


def seed_matplotlib_cache(env: Mapping[str, str], seed: str = MPL_CACHE_SEED) -> int:
    """Copy the image's font list into matplotlib's cache folder, which must be writable
    (matplotlib warns and uses a temporary folder when it is not, so the cache cannot
    stay in the image). Files already there are kept. Before any program runs; returns
    how many files were copied (0 when the image has no seed)."""
    try:
        names = [n for n in os.listdir(seed) if n.endswith(".json")]
    except OSError:
        return 0
    target = matplotlib_cache_dir(env)
    copied = 0
    try:
        os.makedirs(target, mode=0o700, exist_ok=True)
        for name in names:
            dest = os.path.join(target, name)
            if os.path.lexists(dest):
                continue
            with open(os.path.join(seed, name), "rb") as src:
                data = src.read()
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            copied += 1
    except OSError:
        pass  # only a cache: matplotlib builds the list itself
    return copied


def _std_stream(fd: int, write: bool, old: Any, label: str) -> TextIO:
    buf: Any = io.open(fd, "wb" if write else "rb", -1, closefd=False)  # noqa: UP020, SIM115
    buf.raw.name = label
    line_buffering = write and (buf.isatty() or fd == 2)
    stream = io.TextIOWrapper(
        buf,
        encoding=getattr(old, "encoding", None) or "utf-8",
        errors=getattr(old, "errors", None) or "strict",
        newline="\n",
        line_buffering=line_buffering,
        write_through=False,
    )
    stream.mode = "w" if write else "r"  # type: ignore[misc]
    return stream


def reset_interpreter(path: str, args: list[str], env: Mapping[str, str]) -> None:
    """Make this forked agent look like a fresh ``python3 path args...``."""
    for key in list(os.environ):
        if key not in env:
            del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    for name, fd, write in (("stdin", 0, False), ("stdout", 1, True), ("stderr", 2, True)):
        stream = _std_stream(fd, write, getattr(sys, f"__{name}__"), f"<{name}>")
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.argv = [path, *args]
    sys.orig_argv = [BASE_ORIG_ARGV0, path, *args]
    sys.path[:] = [os.path.dirname(path), *BASE_SYS_PATH[1:]]
    for name in ("last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            delattr(sys, name)


def _main_module(path: str) -> ModuleType:
    import importlib.machinery

    module = ModuleType("__main__")
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    module.__annotations__ = {}
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    module.__file__ = path
    module.__cached__ = None  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    return module


def strip_agent_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames of the agent's own modules."""
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(
        _PACKAGE_DIR + os.sep
    ):
        tb = tb.tb_next
    return tb


def _print_uncaught(exc: BaseException) -> None:
    """What PyErr_Print does: set sys.last_*, call sys.excepthook, survive its failure."""
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
    hook = getattr(sys, "excepthook", None)
    if hook is None:
        sys.stderr.write("sys.excepthook is missing\n")
        sys.__excepthook__(type(exc), exc, exc.__traceback__)
        return
    try:
        hook(type(exc), exc, exc.__traceback__)
    except BaseException as hook_exc:
        hook_exc.__traceback__ = strip_agent_frames(hook_exc.__traceback__)
        sys.stderr.write("Error in sys.excepthook:\n")
        sys.__excepthook__(type(hook_exc), hook_exc, hook_exc.__traceback__)
        sys.stderr.write("\nOriginal exception was:\n")
        sys.__excepthook__(type(exc), exc, exc.__traceback__)
    sys.stderr.flush()


def exit_status(exc: SystemExit) -> int:
    """The exit status CPython derives from a SystemExit (printing a non-int code)."""
    code = getattr(exc, "code", None)
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(2**63) <= code < 2**63 else 255
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(str(code))
            stream.write("\n")
    except Exception:  # noqa: S110 - CPython ignores it too
        pass
    return 1


def clear_module_dict(namespace: dict[str, Any]) -> None:
    """What interpreter shutdown does to a module: single-underscore names, then the rest."""
    for single in (True, False):
        for key in list(namespace):
            if not isinstance(key, str) or namespace.get(key) is None or key == "__builtins__":
                continue
            if single and not (key[:1] == "_" and key[1:2] != "_"):
                continue
            namespace[key] = None


def _finalize_and_exit(status: int, main_namespace: dict[str, Any], by_sigint: bool) -> None:
    """Py_FinalizeEx for the child, then exit without tearing down libraries.

    Non-daemon threads are joined, atexit handlers run and stdio is flushed (a failed
    flush makes the status 120) as in CPython; then ``__main__`` is cleared and a
    collection runs, so finalizers of the program's objects (unclosed files...) run,
    and the process exits without the slow teardown of the preloaded modules.
    """
    import atexit

    # CPython waits for threads only when the program imported threading.
    threading = sys.modules.get("threading")
    if threading is not None:
        with contextlib.suppress(BaseException):
            threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            status = 120
    try:
        clear_module_dict(main_namespace)
        gc.collect()
    except BaseException:  # noqa: S110 - as CPython's shutdown
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:  # noqa: S110 - as CPython's shutdown
            pass
    if by_sigint:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def _offset_recursion_limit() -> None:
    """Give the program the stack depth it has cold: the agent's frames sit below it."""
    depth, frame = 0, sys._getframe(1)
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    sys.setrecursionlimit(sys.getrecursionlimit() + depth + 1)


def run(path: str, args: list[str], env: Mapping[str, str]) -> None:
    """Run ``path`` as ``__main__`` in this forked interpreter, then exit; never returns."""
    reset_interpreter(path, args, env)
    module = _main_module(path)
    _offset_recursion_limit()
    status, by_sigint = 0, False
    try:
        with open(path, "rb") as fh:
            source = fh.read()
        code = compile(source, path, "exec", dont_inherit=True)
        del source
        exec(code, module.__dict__)  # noqa: S102 - running the user's program is the job
    except SystemExit as exc:
        status = exit_status(exc)
        del exc
    except BaseException as exc:
        exc.__traceback__ = strip_agent_frames(exc.__traceback__)
        _print_uncaught(exc)
        status, by_sigint = 1, isinstance(exc, KeyboardInterrupt)
        del exc
    _finalize_and_exit(status, module.__dict__, by_sigint)


def run_fed(fd: int, env: Mapping[str, str]) -> None:
    """Read a job (JSON) from ``fd`` to EOF and become its program; never returns.

    ``{"main": path, "args": [...]}`` runs a Python program in this process as ``run``
    does, with the job's ``"env"`` when it has one, else ``env``. ``{"argv": [...],
    "env": {...}}`` (a forked agent's child only) execs ``argv`` (``exec_program``).
    No job (EOF at once: the agent discarded this child) exits with 0. ``fd`` is
    closed, or, when it is 0, replaced by ``/dev/null``, every program's stdin.
    """
    from rce_agent.wire import loads

    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    if fd == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
    else:
        os.close(fd)
    if not chunks:
        os._exit(0)
    job = loads(b"".join(chunks).decode("utf-8"))
    job_env = job.get("env", env)
    if "argv" in job:
        exec_program(job["argv"], job_env)
    run(str(job["main"]), [str(a) for a in job["args"]], job_env)


def exec_program(argv: list[str], env: Mapping[str, str]) -> None:
    """Become ``argv`` (looked up on ``env``'s PATH), with the default SIGPIPE and
    SIGXFSZ (Python ignores them, and exec would keep that); on failure say so on
    stderr and exit 127. Never returns. What every exec'ed program's child does
    (``supervise.spawn``, and a child forked before the job, ``run_fed``)."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 - argv, no shell
    except BaseException as exc:
        cannot_start(argv[0], exc)


def cannot_start(name: str, exc: BaseException) -> None:
    """Say on stderr that ``name`` could not start, and exit 127 (what a shell does)."""
    try:
        os.write(2, f"rce: cannot start {name}: {exc!r}\n".encode())
    finally:
        os._exit(127)


def preload(modules: tuple[str, ...]) -> None:
    """Import ``modules`` (the heavy data libraries) before the job arrives (warm pool).

    The warning filters these imports add stay: a program that imports them cold
    gets the same ones.
    """
    for name in modules:
        try:
            __import__(name)
        except Exception as exc:  # a library missing from this image is not fatal
            sys.stderr.write(f"rce-agent: preload of {name} failed: {exc!r}\n")
    gc.collect()
    freeze_heap()


def freeze_heap() -> None:
    """Keep the agent's objects out of a forked child's collections: the collection
    at the child's exit would walk, and so copy on write, the whole inherited heap."""
    gc.freeze()
