"""The rce sandbox agent: the process a sandbox container starts; it runs one job.

It runs INSIDE the sandbox image (Debian bookworm's Python 3.11, standard library
only), as uid 1000, with a read-only root, ``/mnt/data`` and ``/tmp`` on tmpfs and
no network. Nothing it reports is trusted by the host, which re-validates every name,
size and count.

Protocol, over the container's attached stdin (job) and stdout (reply):

Job (stdin, then EOF):
    b"RCEJ" + u32 big-endian length + JSON header, then, when the header lists
    files, a tar stream of the input files.
    header = {"lang": "py" | "bash", "code": str, "args": [str],
              "files": [{"name": str, "sha256": str}],
              "limits": {"run_timeout_s", "max_output_bytes", "max_file_bytes",
                         "max_files"}}

Reply (stdout): frames of a 1-byte kind + u32 big-endian length + payload:
    P  ready: the preloaded agent finished its imports (before the job)
    O  stdout bytes of the program (capped)       E  stderr bytes (capped)
    F  an output file: JSON {"name", "size"}, then D frames totalling size
    D  file data
    R  the result, JSON (last frame): exit_code, timed_out, oom_killed,
       stdout_bytes, stderr_bytes, deleted, skipped, notices, error

The agent's own diagnostics go to stderr.

``RCE_AGENT_PRELOAD`` makes a warm-pool agent: it reports ready (``P``) before it
waits for its job, and runs Python code in a forked child of itself, set up to
behave as ``python3 main.py`` would. With ``data`` (or ``1``) it first imports
numpy, pandas and matplotlib; with ``light`` it imports nothing more. Without it
(a cold start) Python code runs as ``python3 main.py``. Bash always runs cold.
"""

import builtins
import errno
import json
import os
import selectors
import signal
import stat
import struct
import sys
import time

WORKDIR = "/mnt/data"
CODE_DIR = "/tmp/rce"
JOB_MAGIC = b"RCEJ"
MAX_HEADER_BYTES = 64 * 1024 * 1024
CHUNK = 256 * 1024
MAX_SKIPPED = 1000
MAX_ENTRIES = 200_000
DRAIN_AFTER_EXIT_S = 2.0
AGENT_ENV = ("RCE_AGENT_PRELOAD",)
PRELOAD_MODULES = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot")
#: RCE_AGENT_PRELOAD values: the modules each warm flavour imports before the job.
WARM_FLAVOURS = {"data": PRELOAD_MODULES, "1": PRELOAD_MODULES, "light": ()}

# The interpreter state a cold ``python3 main.py`` starts from, captured before any
# preloading so a forked child can be put back into it.
_BASE_SYS_PATH = list(sys.path)
_BASE_ORIG_ARGV0 = sys.orig_argv[0] if getattr(sys, "orig_argv", None) else "python3"


# --------------------------------------------------------------------------- io


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def send_frame(kind, payload=b""):
    """Write one reply frame to stdout."""
    _write_all(1, kind + struct.pack(">I", len(payload)) + payload)


def send_json(kind, obj):
    send_frame(kind, json.dumps(obj, ensure_ascii=True).encode("ascii"))


def read_exact(fd, size):
    """Exactly ``size`` bytes from ``fd``, or fewer at EOF."""
    parts = []
    while size > 0:
        chunk = os.read(fd, min(size, CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


class FdReader:
    """A minimal file object over a raw fd, for tarfile's stream mode."""

    def __init__(self, fd):
        self.fd = fd

    def read(self, size=-1):
        if size is None or size < 0:
            size = CHUNK
        return os.read(self.fd, size)


def drain(fd):
    while os.read(fd, CHUNK):
        pass


def read_job():
    """The job header (a dict), or None when stdin closed before a job came."""
    head = read_exact(0, 8)
    if len(head) < 8:
        return None
    if head[:4] != JOB_MAGIC:
        raise ValueError("job does not start with the protocol magic")
    (size,) = struct.unpack(">I", head[4:])
    if size > MAX_HEADER_BYTES:
        raise ValueError("job header too large")
    raw = read_exact(0, size)
    if len(raw) != size:
        raise ValueError("job header truncated")
    return json.loads(raw.decode("utf-8"))


# --------------------------------------------------------------------- names


def safe_relative(name):
    """``name`` as a normalized relative path under the workspace, or None."""
    if not isinstance(name, str) or not name or "\x00" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return name


# ------------------------------------------------------------------ restore


def _open_parent(root_fd, parts):
    """A directory fd for ``parts[:-1]`` under ``root_fd``, created as needed."""
    fd = os.dup(root_fd)
    for part in parts[:-1]:
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        try:
            sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = sub
    return fd


def _write_member(root_fd, name, source, hashlib):
    parts = name.split("/")
    parent = _open_parent(root_fd, parts)
    try:
        out = os.open(
            parts[-1],
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            0o644,
            dir_fd=parent,
        )
        digest = hashlib.sha256()
        try:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                _write_all(out, chunk)
        except OSError:
            os.close(out)
            os.unlink(parts[-1], dir_fd=parent)
            raise
        os.close(out)
        return digest.hexdigest()
    finally:
        os.close(parent)


def restore(notices, source=None):
    """Unpack the tar on stdin (or ``source``) into the workspace; return {name: sha256}."""
    import hashlib
    import tarfile

    manifest = {}
    root_fd = os.open(WORKDIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with tarfile.open(fileobj=source or FdReader(0), mode="r|") as tar:
            for member in tar:
                name = safe_relative(member.name)
                if name is None or not member.isreg():
                    if member.isdir():
                        continue
                    notices.append(f"rce: input {member.name[:200]!r} was not restored")
                    continue
                try:
                    manifest[name] = _write_member(
                        root_fd, name, tar.extractfile(member), hashlib
                    )
                except OSError as exc:
                    if len(notices) < 20:
                        notices.append(
                            f"rce: could not restore input file {name!r}: {exc.strerror}"
                        )
    finally:
        os.close(root_fd)
    return manifest


# ---------------------------------------------------------------------- run


class Capped:
    """Keeps the first ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap):
        self.cap = cap
        self.data = bytearray()
        self.total = 0

    def feed(self, chunk):
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]


def oom_kills():
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


def child_env(lang):
    env = {k: v for k, v in os.environ.items() if k not in AGENT_ENV}
    if lang == "py":
        env["PYTHONPATH"] = WORKDIR
    return env


def _child_setup(out_w, err_w):
    """In the forked child: new session, stdio on the pipes, cwd, OOM victim first."""
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.closerange(3, 65536)
    os.chdir(WORKDIR)
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as fh:
            fh.write("1000")
    except OSError:
        pass


def spawn(argv, env, in_process):
    """Fork the program; return (pid, stdout read fd, stderr read fd).

    ``argv[0]`` is looked up on PATH and exec'ed, except with ``in_process`` (a
    preloaded agent running Python): the child then runs ``argv[1]`` itself.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            _child_setup(out_w, err_w)
            if in_process:
                run_preloaded(argv[1], argv[2:], env)  # never returns
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:
            try:
                os.write(2, f"rce: cannot start {argv[0]}: {exc!r}\n".encode())
            finally:
                os._exit(127)
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


def kill_everything(pid):
    """SIGKILL the program's group, then every process of our uid but us and init."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(-1, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass


def supervise(pid, out_r, err_r, timeout_s, cap, relay=None):
    """Drain the pipes until the program exits (or times out); kill stragglers.

    Returns (wait status, timed_out, stdout Capped, stderr Capped). ``relay``: see
    rce_ptc.Relay (programmatic tool calling), None for a plain job.
    """
    out, err = Capped(cap), Capped(cap)
    sinks = {out_r: out, err_r: err}
    sel = selectors.DefaultSelector()
    for fd in sinks:
        sel.register(fd, selectors.EVENT_READ)
    try:
        pidfd = os.pidfd_open(pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):
        pidfd = None
    deadline = time.monotonic() + timeout_s
    if relay is not None:  # PTC hook 1/3: the relay's sockets join the selector
        relay.register(sel, pid)
    status = None
    timed_out = False
    drain_until = None
    while sinks or status is None:
        now = time.monotonic()
        if relay is not None and status is None:  # PTC hook 2/3: no clock while tools run
            deadline = relay.deadline(deadline, now)
        if status is None:
            if now >= deadline:
                kill_everything(pid)
                timed_out = True
                status = os.waitpid(pid, 0)[1]
                if pidfd is not None:
                    sel.unregister(pidfd)
                drain_until = time.monotonic() + DRAIN_AFTER_EXIT_S
                continue
            if pidfd is None:
                reaped, st = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    status = st
                    kill_everything(pid)
                    drain_until = now + DRAIN_AFTER_EXIT_S
                    continue
            wait = deadline - now if pidfd is not None else min(deadline - now, 0.02)
        else:
            if now >= drain_until:
                break
            wait = drain_until - now
        for key, _ in sel.select(wait):
            fd = key.fd
            if relay is not None and relay.handle(key):  # PTC hook 3/3: calls and results
                continue
            if fd == pidfd:
                sel.unregister(pidfd)
                status = os.waitpid(pid, 0)[1]
                kill_everything(pid)
                drain_until = time.monotonic() + DRAIN_AFTER_EXIT_S
                continue
            if fd not in sinks:
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
    if pidfd is not None:
        os.close(pidfd)
    sel.close()
    return status, timed_out, out, err


def exit_code_of(status):
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


# ---------------------------------------------------------------- collection


def _file_digest(fd):
    import hashlib  # only when an input must be compared: it loads OpenSSL

    digest = hashlib.sha256()
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


def _send_file(fd, name, size):
    send_json(b"F", {"name": name, "size": size})
    os.lseek(fd, 0, os.SEEK_SET)
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(CHUNK, remaining))
        if not chunk:
            chunk = b"\x00" * min(CHUNK, remaining)  # shrank: keep the framing intact
        send_frame(b"D", chunk)
        remaining -= len(chunk)


def open_nofollow(name, flags, dir_fd, mode_bits):
    """``os.open`` without following a link; a mode the program removed is restored.

    The agent owns every file of the workspace and no program runs any more when
    it collects, so giving back read (and search) permission is safe.
    """
    try:
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=dir_fd)
    except PermissionError:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise
        os.chmod(name, stat.S_IMODE(st.st_mode) | mode_bits, dir_fd=dir_fd)
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=dir_fd)


def open_dir(prefix):
    """A directory fd for ``prefix`` under the workspace, never following a link."""
    fd = os.open(WORKDIR, os.O_RDONLY | os.O_DIRECTORY)
    for part in prefix.split("/"):
        if not part:
            continue
        try:
            sub = open_nofollow(part, os.O_RDONLY | os.O_DIRECTORY, fd, 0o500)
        finally:
            os.close(fd)
        fd = sub
    return fd


class Collector:
    """Walks the workspace without following links and sends new or changed files."""

    def __init__(self, before, max_file_bytes, max_files):
        self.before = before
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.sent = 0
        self.seen = set()
        self.skipped = []
        self.skipped_more = 0
        self.visited = 0

    def skip(self, name, reason):
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append([name, reason])
        else:
            self.skipped_more += 1

    def run(self):
        stack = [""]
        while stack:
            prefix = stack.pop()
            try:
                dir_fd = open_dir(prefix)
            except OSError as exc:
                self.skip(prefix.rstrip("/"), f"unreadable directory: {exc.strerror}")
                continue
            try:
                with os.scandir(dir_fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
                subdirs = []
                for entry in entries:
                    self.visited += 1
                    if self.visited > MAX_ENTRIES:
                        self.skip(prefix + entry.name, f"more than {MAX_ENTRIES} entries")
                        return self.deleted()
                    sub = self.visit(dir_fd, entry, prefix)
                    if sub is not None:
                        subdirs.append(sub)
                stack.extend(reversed(subdirs))
            except OSError as exc:
                self.skip(prefix.rstrip("/") or ".", f"unreadable directory: {exc.strerror}")
            finally:
                os.close(dir_fd)
        return self.deleted()

    def deleted(self):
        return sorted(name for name in self.before if name not in self.seen)

    def visit(self, dir_fd, entry, prefix):
        rel = prefix + entry.name
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            self.skip(shown, "name is not valid UTF-8")
            return None
        try:
            if entry.is_symlink():
                self.skip(rel, "symbolic link (not followed)")
                return None
            if entry.is_dir(follow_symlinks=False):
                return rel + "/"
            if not entry.is_file(follow_symlinks=False):
                self.skip(rel, "not a regular file (device, fifo or socket)")
                return None
            self.visit_file(dir_fd, entry.name, rel)
        except OSError as exc:
            self.skip(rel, f"unreadable: {exc.strerror}")
        return None

    def visit_file(self, dir_fd, name, rel):
        fd = open_nofollow(name, os.O_RDONLY | os.O_NONBLOCK, dir_fd, 0o400)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.skip(rel, "not a regular file")
                return
            self.seen.add(rel)
            if rel in self.before and st.st_size <= self.max_file_bytes:
                if _file_digest(fd) == self.before[rel]:
                    return
            if st.st_size > self.max_file_bytes:
                self.skip(
                    rel,
                    f"larger than the {self.max_file_bytes} byte limit (RCE_MAX_FILE_BYTES)",
                )
                return
            if self.sent >= self.max_files:
                self.skip(rel, f"more than {self.max_files} output files (RCE_MAX_FILES)")
                return
            self.sent += 1
            _send_file(fd, rel, st.st_size)
        finally:
            os.close(fd)


# ------------------------------------------------------- preloaded python child


def _std_stream(fd, write, old, label):
    import io

    buf = io.open(fd, "wb" if write else "rb", -1, closefd=False)
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
    stream.mode = "w" if write else "r"
    return stream


def _reset_interpreter(path, args, env):
    """Make this forked agent look like a fresh ``python3 path args...``."""
    for key in list(os.environ):
        if key not in env:
            del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    sys.stdin = sys.__stdin__ = _std_stream(0, False, sys.__stdin__, "<stdin>")
    sys.stdout = sys.__stdout__ = _std_stream(1, True, sys.__stdout__, "<stdout>")
    sys.stderr = sys.__stderr__ = _std_stream(2, True, sys.__stderr__, "<stderr>")
    sys.argv = [path, *args]
    sys.orig_argv = [_BASE_ORIG_ARGV0, path, *args]
    extra = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    sys.path[:] = [os.path.dirname(path), *extra, *_BASE_SYS_PATH[1:]]
    for name in ("last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            delattr(sys, name)


def _main_module(path):
    import importlib.machinery
    import types

    module = types.ModuleType("__main__")
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    module.__annotations__ = {}
    module.__builtins__ = builtins
    module.__file__ = path
    module.__cached__ = None
    sys.modules["__main__"] = module
    return module


def _strip_agent_frames(tb):
    here = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    return tb


def _print_uncaught(exc):
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
        hook_exc.__traceback__ = _strip_agent_frames(hook_exc.__traceback__)
        sys.stderr.write("Error in sys.excepthook:\n")
        sys.__excepthook__(type(hook_exc), hook_exc, hook_exc.__traceback__)
        sys.stderr.write("\nOriginal exception was:\n")
        sys.__excepthook__(type(exc), exc, exc.__traceback__)
    sys.stderr.flush()


def _exit_status(exc):
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
    except Exception:
        pass
    return 1


def _clear_module_dict(namespace):
    """What interpreter shutdown does to a module: single-underscore names, then the rest."""
    for single in (True, False):
        for key in list(namespace):
            if not isinstance(key, str) or namespace.get(key) is None or key == "__builtins__":
                continue
            if single and not (key[:1] == "_" and key[1:2] != "_"):
                continue
            namespace[key] = None


def _finalize_and_exit(status, main_namespace, by_sigint):
    """Py_FinalizeEx for the preloaded child, then exit without tearing down libraries.

    Non-daemon threads are joined, atexit handlers run and stdio is flushed (a failed
    flush makes the status 120) as in CPython; then ``__main__`` is cleared and a
    collection runs, so finalizers of the program's objects (unclosed files...) run,
    and the process exits without the slow teardown of the preloaded modules.
    """
    import atexit
    import gc
    import threading

    try:
        threading._shutdown()
    except BaseException:
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            status = 120
    try:
        _clear_module_dict(main_namespace)
        gc.collect()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            pass
    if by_sigint:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def _offset_recursion_limit():
    """Give the program the stack depth it has cold: the agent's frames sit below it.

    (``sys.getrecursionlimit()`` therefore reads a few more than a cold run's.)
    """
    depth, frame = 0, sys._getframe(1)
    while frame is not None:
        depth += 1
        frame = frame.f_back
    sys.setrecursionlimit(sys.getrecursionlimit() + depth + 1)


def run_preloaded(path, args, env):
    """Run ``path`` as ``__main__`` in this forked interpreter, then exit; never returns.

    Observable behaviour matches ``python3 path args...``: ``__main__`` globals,
    ``sys.argv``/``sys.path``/stdio, uncaught exceptions through ``sys.excepthook``
    with the agent's frames stripped, SystemExit codes, threads, atexit, buffering.
    """
    _reset_interpreter(path, args, env)
    module = _main_module(path)
    _offset_recursion_limit()
    status, by_sigint = 0, False
    try:
        with open(path, "rb") as fh:
            source = fh.read()
        code = compile(source, path, "exec", dont_inherit=True)
        del source
        exec(code, module.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc)
        del exc
    except BaseException as exc:
        exc.__traceback__ = _strip_agent_frames(exc.__traceback__)
        _print_uncaught(exc)
        status, by_sigint = 1, isinstance(exc, KeyboardInterrupt)
        del exc
    _finalize_and_exit(status, module.__dict__, by_sigint)


def preload(modules):
    """Import ``modules`` (the heavy data libraries) before the job arrives (warm pool).

    The warning filters these imports add stay: a program that imports them cold
    gets the same ones.
    """
    for name in modules:
        try:
            __import__(name)
        except Exception as exc:  # a library missing from this image is not fatal
            sys.stderr.write(f"rce-agent: preload of {name} failed: {exc!r}\n")
    # Keep the preloaded objects out of the child's collections: a full collection
    # would walk (and copy-on-write) the whole preloaded heap.
    import gc

    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------- main


def write_code(lang, code):
    os.makedirs(CODE_DIR, mode=0o755, exist_ok=True)
    path = os.path.join(CODE_DIR, "main.py" if lang == "py" else "main.sh")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(code)
    return path


def _ptc_relay(job):
    """The programmatic-tool-calling relay of a ``ptc`` job (rce_ptc.py), else None."""
    if not job.get("ptc"):
        return None
    import rce_ptc

    return rce_ptc.Relay(job)


def run_job(job, preloaded):
    limits = job.get("limits", {})
    cap = int(limits.get("max_output_bytes", 1_000_000))
    timeout_s = float(limits.get("run_timeout_s", 30.0))
    notices = []
    # --- PTC hook: a ``ptc`` job keeps stdin open for tool results (rce_ptc.Relay) ---
    relay = _ptc_relay(job)
    if job.get("files"):
        before = restore(notices, relay.tar_source() if relay else None)
    else:
        before = {}
    if relay is None:
        drain(0)
    else:
        relay.end_of_input()
    lang = job.get("lang", "py")
    args = [str(a) for a in job.get("args", [])]
    path = write_code(lang, job.get("code", ""))
    env = child_env(lang)
    if lang == "py":
        argv = [_BASE_ORIG_ARGV0, path, *args]
    else:
        argv = ["bash", path, *args]
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    if relay is not None:  # PTC hook: the tools, and the relay's socket
        argv, env = relay.program(lang, path, argv, env)
        relay.listen()
    oom_before = oom_kills()
    started = time.monotonic()
    pid, out_r, err_r = spawn(argv, env, preloaded and lang == "py")
    status, timed_out, out, err = supervise(pid, out_r, err_r, timeout_s, cap, relay)
    if relay is not None:  # PTC hook: tell the host the reply follows
        relay.finish()
        notices.extend(relay.notices())
    duration = time.monotonic() - started
    exit_code = exit_code_of(status)
    oom_after = oom_kills()
    oom_killed = (
        not timed_out
        and exit_code != 0
        and oom_before is not None
        and oom_after is not None
        and oom_after > oom_before
    )
    for stream, frames in ((out, b"O"), (err, b"E")):
        data = bytes(stream.data)
        for start in range(0, len(data), CHUNK):
            send_frame(frames, data[start : start + CHUNK])
    collector = Collector(
        before, int(limits.get("max_file_bytes", 50 << 20)), int(limits.get("max_files", 100))
    )
    deleted = collector.run()
    send_json(
        b"R",
        {
            "exit_code": exit_code,
            "timed_out": timed_out,
            "oom_killed": oom_killed,
            "stdout_bytes": out.total,
            "stderr_bytes": err.total,
            "deleted": deleted,
            "skipped": collector.skipped,
            "skipped_more": collector.skipped_more,
            "notices": notices,
            "duration_s": duration,
        },
    )


def main():
    # Files uploaded to the workspace must not shadow what the agent imports.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != WORKDIR]
    modules = WARM_FLAVOURS.get(os.environ.get("RCE_AGENT_PRELOAD", ""))
    preloaded = modules is not None
    if preloaded:
        if modules:
            preload(modules)
        send_frame(b"P")
    try:
        job = read_job()
        if job is None:
            return 0
        run_job(job, preloaded)
    except BrokenPipeError:
        return 1
    except Exception as exc:
        import traceback

        traceback.print_exc()
        try:
            send_json(b"R", {"error": f"agent failed: {type(exc).__name__}: {exc}"[:2000]})
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
