"""Programmatic tool calling inside the sandbox: the relay and the program's tools.

This module runs INSIDE the sandbox image (Python 3.11, standard library only), in
two roles:

* Imported by the agent (``rce_agent.main``) for a job whose header has a ``ptc``
  object: ``Relay`` carries tool calls from the program to the host and results
  back. The agent's supervision loop hands it its events (``Relay.register``,
  ``Relay.handle``) and lets it move the run's deadline (``Relay.deadline``), so the
  program's clock stops while the host runs the tools.
* Run as a script (``python3 /opt/rce/rce_agent/ptc.py run|call ...``): the Python runtime that
  defines one async function per tool and runs the user's code with top-level
  ``await``, and the command behind each bash tool function.

Wire, on top of the agent's protocol (kind byte + u32 big-endian length + payload):

Host -> agent (stdin; the container keeps stdin open across attaches):
    after the job header and its chunked input tar (``rce_agent.wire``), frames
    U  results JSON {"round", "nonce", "request_id", "results": [{call_id,
       result, is_error, error_message?}]}
    C  cancel JSON {"request_id", "principal", "nonce"}
Agent -> host (stdout): T frames, JSON {"nonce", "event", ...}, where ``nonce``
    names the host request it answers (a host skips the others):
    tool_calls {"round", "calls": [{id, name, input}]}; accepted; refused
    {"reason"}; cancel {"state"}; finished (then the usual O/E/F/D/R frames).

The agent only writes to stdout in answer to something the host wrote (the job
or a frame), so a host that attaches, writes, then reads loses nothing. The
program and the relay talk over a Unix socket with JSON lines: ``call`` {id, name,
input} and ``flush`` (send the pending calls now) one way, {id, result, is_error,
error_message} the other. Python flushes once every coroutine that was ready has
made its calls (so ``asyncio.gather`` calls travel together); a bash tool flushes
20 ms after its call (so commands started together with ``&`` travel together).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

SOCKET_ENV = "RCE_PTC_SOCKET"
TOOLS_ENV = "RCE_PTC_TOOLS"
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "ptc.py")
MAX_FRAME = 64 * 1024 * 1024
MAX_LINE = 16 * 1024 * 1024
MAX_PENDING = 1000
BASH_FLUSH_DELAY_S = 0.02
_FRAME = struct.Struct(">cI")
_LISTEN, _STDIN = "ptc-listen", "ptc-stdin"

Tool = tuple[str, str, str]  # client name, Python name, bash name


# ----------------------------------------------------------------- agent side


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def send_event(nonce: str, event: str, **fields: Any) -> None:
    """One T frame to the host (the agent's stdout)."""
    payload = json.dumps({"nonce": nonce, "event": event, **fields}, ensure_ascii=True).encode()
    _write_all(1, _FRAME.pack(b"T", len(payload)) + payload)


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""


class Relay:
    """The agent's end of programmatic tool calling (see the module docstring)."""

    def __init__(self, job: dict[str, Any], run_dir: str) -> None:
        ptc = job["ptc"]
        self.tools: list[Tool] = [
            (str(t["name"]), str(t["py"]), str(t["sh"])) for t in ptc.get("tools", [])
        ]
        self.nonce = str(ptc["nonce"])
        self.principal = str(ptc.get("principal", ""))
        self.wait_cap_s = float(ptc.get("wait_cap_s", 300.0))
        self.seen_requests = {str(ptc.get("request_id", ""))} - {""}
        self.socket_path = os.path.join(run_dir, "ptc.sock")
        self.tools_file = os.path.join(run_dir, "ptc_tools.sh")
        self.round = 0
        self.pending: list[tuple[str, str, Any, _Conn, Any]] = []
        self.outstanding: dict[str, tuple[_Conn, Any]] = {}
        self.flush_wanted = False
        self.waiting_since: float | None = None
        self.last_tick: float | None = None
        self.expired = False
        self.cancelled = False
        self.finished = False
        self.stdin_buf = b""
        self.conns: dict[int, _Conn] = {}
        self.sel: selectors.BaseSelector | None = None
        self.next_id = 0
        self.listener: socket.socket | None = None

    # --- job shaping (called by the agent before the program starts)

    def notices(self) -> list[str]:
        """Lines for the result's stderr: why the relay stopped the program."""
        if self.cancelled:
            return ["rce: the run was cancelled by the client"]
        if self.expired:
            return [f"rce: no tool results came within {self.wait_cap_s:g} s (RCE_PTC_MAX_WAIT_S)"]
        return []

    def program(
        self,
        lang: str,
        python: str | None,
        argv: list[str],
        args: Sequence[str],
        env: dict[str, str],
    ) -> list[str]:
        """The argv that runs the program with the tools defined (``env`` is updated).

        Python (``python`` is the source path) runs under this module's runtime, exec'ed;
        bash gets one function per tool through ``BASH_ENV``.
        """
        os.makedirs(os.path.dirname(self.socket_path), mode=0o700, exist_ok=True)
        env[SOCKET_ENV] = self.socket_path
        if python is not None:
            env[TOOLS_ENV] = json.dumps([[name, py] for name, py, _ in self.tools])
            return [argv[0], SCRIPT, "run", python, *args]
        with open(self.tools_file, "w", encoding="utf-8") as fh:
            fh.write(bash_functions(self.tools))
        env["BASH_ENV"] = self.tools_file
        return [*argv, *args]

    def listen(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener.bind(self.socket_path)
        listener.listen(64)
        listener.setblocking(False)
        self.listener = listener

    # --- supervision hooks

    def register(self, sel: selectors.BaseSelector) -> None:
        """Join the supervision loop's selector: the program's socket and stdin."""
        assert self.listener is not None, "listen() first"
        self.sel = sel
        sel.register(self.listener, selectors.EVENT_READ, _LISTEN)
        os.set_blocking(0, False)
        sel.register(0, selectors.EVENT_READ, _STDIN)

    def deadline(self, deadline: float, now: float) -> float:
        """The run's deadline, moved by the time spent waiting for the host."""
        if self.last_tick is not None and self.waiting_since is not None:
            deadline += now - self.last_tick
        self.last_tick = now
        if self.waiting_since is not None and now - self.waiting_since > self.wait_cap_s:
            self.expired = True
        if self.expired or self.cancelled:
            return now
        return deadline

    def wake_in(self, now: float) -> float:
        """The longest the loop may sleep and still end a wait at the wait cap."""
        if self.waiting_since is None:
            return float("inf")
        return max(0.0, self.waiting_since + self.wait_cap_s - now) + 0.001

    def handle(self, key: selectors.SelectorKey) -> bool:
        """Process one selector event if it is ours; False otherwise."""
        data = key.data
        if data == _LISTEN:
            self._accept()
        elif data == _STDIN:
            self._read_stdin()
        elif isinstance(data, _Conn):
            self._read_conn(data)
        else:
            return False
        self._maybe_flush()
        return True

    def finish(self) -> None:
        """The program is over: tell the host the reply follows."""
        self.finished = True
        if self.sel is not None:
            for conn in list(self.conns.values()):
                self._drop(conn)
            for fileobj in (self.listener, 0):
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(fileobj)  # type: ignore[arg-type]
            os.set_blocking(0, True)
        if self.listener is not None:
            self.listener.close()
        send_event(self.nonce, "finished")

    # --- program side of the relay

    def _accept(self) -> None:
        assert self.listener is not None and self.sel is not None
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        conn = _Conn(sock)
        self.conns[sock.fileno()] = conn
        self.sel.register(sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: _Conn) -> None:
        if self.sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn.sock)
        self.conns.pop(conn.sock.fileno(), None)
        conn.sock.close()

    def _read_conn(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        conn.buf += chunk
        if len(conn.buf) > MAX_LINE:
            self._drop(conn)
            return
        while b"\n" in conn.buf:
            line, conn.buf = conn.buf.split(b"\n", 1)
            self._on_message(conn, line)

    def _on_message(self, conn: _Conn, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("op") == "flush":
            self.flush_wanted = True
        elif msg.get("op") == "call" and len(self.pending) < MAX_PENDING:
            self.next_id += 1
            call_id = f"call_{self.round + 1}_{self.next_id}"
            self.pending.append(
                (call_id, str(msg.get("name")), msg.get("input"), conn, msg.get("id"))
            )

    def _maybe_flush(self) -> None:
        if not (self.flush_wanted and self.pending) or self.waiting_since is not None:
            return
        self.flush_wanted = False
        self.round += 1
        calls = []
        for call_id, name, value, conn, local_id in self.pending:
            self.outstanding[call_id] = (conn, local_id)
            calls.append({"id": call_id, "name": name, "input": value})
        self.pending = []
        self.waiting_since = time.monotonic()
        send_event(self.nonce, "tool_calls", round=self.round, calls=calls)

    # --- host side of the relay

    def _read_stdin(self) -> None:
        try:
            chunk = os.read(0, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            if self.sel is not None:
                self.sel.unregister(0)
            self.expired = self.waiting_since is not None
            return
        self.stdin_buf += chunk
        while len(self.stdin_buf) >= _FRAME.size:
            kind, size = _FRAME.unpack_from(self.stdin_buf)
            if size > MAX_FRAME:
                self.expired = True
                return
            if len(self.stdin_buf) < _FRAME.size + size:
                return
            payload = self.stdin_buf[_FRAME.size : _FRAME.size + size]
            self.stdin_buf = self.stdin_buf[_FRAME.size + size :]
            try:
                msg = json.loads(payload)
            except ValueError:
                continue
            if isinstance(msg, dict):
                (self._on_results if kind == b"U" else self._on_cancel)(msg)

    def _on_results(self, msg: dict[str, Any]) -> None:
        nonce = str(msg.get("nonce", ""))
        request_id = str(msg.get("request_id", ""))
        if request_id and request_id in self.seen_requests:
            send_event(nonce, "refused", reason="duplicate_request_id")
            return
        if self.waiting_since is None or msg.get("round") != self.round:
            send_event(nonce, "refused", reason="stale_round")
            return
        if request_id:
            self.seen_requests.add(request_id)
        self.nonce = nonce
        self.waiting_since = None
        send_event(nonce, "accepted")
        results: dict[str, dict[str, Any]] = {}
        for item in msg.get("results") or []:
            if isinstance(item, dict):
                results.setdefault(str(item.get("call_id")), item)
        outstanding, self.outstanding = self.outstanding, {}
        for call_id, (conn, local_id) in outstanding.items():
            item = results.get(call_id) or {
                "is_error": True,
                "error_message": "the client returned no result for this call",
            }
            answer = {
                "id": local_id,
                "result": item.get("result"),
                "is_error": bool(item.get("is_error")),
                "error_message": item.get("error_message"),
            }
            try:
                conn.sock.setblocking(True)
                conn.sock.sendall(json.dumps(answer).encode() + b"\n")
                conn.sock.setblocking(False)
            except OSError:
                self._drop(conn)

    def _on_cancel(self, msg: dict[str, Any]) -> None:
        nonce = str(msg.get("nonce", ""))
        request_id = str(msg.get("request_id", ""))
        if request_id not in self.seen_requests:
            state = "unknown"
        elif str(msg.get("principal", "")) != self.principal:
            state = "foreign"
        elif self.finished:
            state = "completed"
        else:
            self.cancelled = True
            state = "cancelled"
        send_event(nonce, "cancel", state=state)


def bash_functions(tools: Sequence[Tool]) -> str:
    """The bash function of each tool, sourced through BASH_ENV."""
    lines = ["# tools of this programmatic run"]
    for name, _, sh_name in tools:
        quoted = "'" + name.replace("'", "'\\''") + "'"
        lines.append(f'{sh_name}() {{ python3 {SCRIPT} call {quoted} "$@"; }}')
        lines.append(f"export -f {sh_name} 2>/dev/null")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- program side


class ToolError(Exception):
    """A tool call failed on the client's side (its ``is_error`` result)."""


class _Channel:
    """The program's connection to the relay: one socket, one reader thread."""

    def __init__(self, path: str) -> None:
        import threading

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.lock = threading.Lock()
        self.waiters: dict[int, tuple[Any, Any]] = {}
        self.next_id = 0
        self.flush_scheduled: set[Any] = set()
        reader = threading.Thread(target=self._read, name="rce-ptc", daemon=True)
        reader.start()

    def send(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                waiter = self.waiters.pop(msg.get("id"), None)
                if waiter is not None:
                    loop, future = waiter
                    loop.call_soon_threadsafe(_resolve, future, msg)
        for loop, future in list(self.waiters.values()):
            loop.call_soon_threadsafe(
                _resolve, future, {"is_error": True, "error_message": "the run is over"}
            )

    def flush(self, loop: Any) -> None:
        self.flush_scheduled.discard(loop)
        self.send({"op": "flush"})

    async def call(self, name: str, value: Any) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.lock:
            self.next_id += 1
            local_id = self.next_id
            self.waiters[local_id] = (loop, future)
        self.send({"op": "call", "id": local_id, "name": name, "input": value})
        if loop not in self.flush_scheduled:
            self.flush_scheduled.add(loop)
            loop.call_soon(self.flush, loop)
        msg = await future
        if msg.get("is_error"):
            raise ToolError(f"{name}: {msg.get('error_message') or 'tool call failed'}")
        return _decoded(msg.get("result"))


def _resolve(future: Any, msg: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(msg)


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _tool_function(channel: _Channel, name: str, py_name: str) -> Any:
    async def tool(*args: Any, **kwargs: Any) -> Any:
        if args and not kwargs and len(args) == 1 and isinstance(args[0], dict):
            value = args[0]
        elif args:
            raise TypeError(f"{py_name}() takes keyword arguments only")
        else:
            value = kwargs
        return await channel.call(name, value)

    tool.__name__ = tool.__qualname__ = py_name
    return tool


def _strip_frames(tb: Any) -> Any:
    here = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    return tb


def run_python(path: str, args: list[str]) -> None:
    """Run the user's ``path`` as ``__main__`` with the tools and top-level ``await``."""
    import ast
    import asyncio
    import builtins
    import inspect
    import types

    tools = json.loads(os.environ.pop(TOOLS_ENV, "[]"))
    channel = _Channel(os.environ[SOCKET_ENV])
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(path)
    module.ToolError = ToolError  # type: ignore[attr-defined]
    for name, py_name in tools:
        setattr(module, py_name, _tool_function(channel, name, py_name))
    with open(path, encoding="utf-8", errors="surrogatepass") as fh:
        source = fh.read()
    try:
        code = compile(
            source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        result = eval(code, module.__dict__)  # noqa: S307 - running the user's program is the job
        if inspect.iscoroutine(result):
            asyncio.run(result)
    except SystemExit:
        raise
    except BaseException as exc:
        exc.__traceback__ = _strip_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        sys.stderr.flush()
        sys.exit(1)


def run_bash_tool(name: str, args: list[str]) -> int:
    """The command behind one bash tool function: call, print the result."""
    raw = " ".join(args) if args else "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ[SOCKET_ENV])
    sock.sendall(json.dumps({"op": "call", "id": 1, "name": name, "input": value}).encode() + b"\n")
    time.sleep(BASH_FLUSH_DELAY_S)
    sock.sendall(b'{"op": "flush"}\n')
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(1 << 16)
        if not chunk:
            sys.stderr.write(f"{name}: the run is over\n")
            return 1
        buf += chunk
    msg = json.loads(buf.split(b"\n", 1)[0])
    if msg.get("is_error"):
        sys.stderr.write(f"{name}: {msg.get('error_message') or 'tool call failed'}\n")
        return 1
    result = msg.get("result")
    if isinstance(result, str):
        decoded = _decoded(result)
        text = result if decoded is result else json.dumps(decoded, separators=(",", ":"))
    else:
        text = json.dumps(result, separators=(",", ":"))
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        run_python(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "call":
        sys.exit(run_bash_tool(sys.argv[2], sys.argv[3:]))
    else:
        sys.stderr.write("usage: ptc.py run PATH [ARGS] | call TOOL [JSON]\n")
        sys.exit(2)
