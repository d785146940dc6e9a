"""What every language runner shares: the ``Plan`` and writing the source."""

from __future__ import annotations

import os

WORKDIR = "/mnt/data"


class Record:
    """A plain record: equal when of the same class with equal fields (``__slots__``).

    Not a dataclass: importing ``dataclasses`` (and ``inspect``) costs every sandbox
    about 5 ms of CPU at its start (``rce_agent/__init__.py``)."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable fields, like a dataclass

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({fields})"


class WarmRun(Record):
    """How an interpreter started before the job (``rce_agent.warm``) runs the program.

    ``kind`` names the interpreter (``"r"``, ``"node"``), ``main`` the file it runs as
    its main program; ``compile`` (run first, in ``build_dir`` with ``TMPDIR`` there)
    ends the run with its own exit code when it fails, as the plan's ``|| exit`` does.
    """

    __slots__ = ("kind", "main", "compile", "build_dir")

    def __init__(
        self, kind: str, main: str, compile: list[str] | None = None, build_dir: str = ""
    ) -> None:
        self.kind = kind
        self.main = main
        self.compile: list[str] = compile if compile is not None else []
        self.build_dir = build_dir


class Plan(Record):
    """How to run one program: ``argv`` + the user's arguments, with ``env`` added.

    ``python`` is the path of a Python program that a warm agent runs in a forked
    child of itself instead of exec'ing ``argv``; ``warm`` says how a warm interpreter
    of its kind runs it instead (same program, same arguments, same outcome).
    """

    __slots__ = ("argv", "env", "python", "warm")

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        python: str | None = None,
        warm: WarmRun | None = None,
    ) -> None:
        self.argv = argv
        self.env: dict[str, str] = env if env is not None else {}
        self.python = python
        self.warm = warm


def write_source(build_dir: str, name: str, code: str) -> str:
    """Write ``code`` to ``build_dir/name`` (0644) and return the path."""
    os.makedirs(build_dir, mode=0o700, exist_ok=True)
    path = os.path.join(build_dir, name)
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(code)
    return path


def compile_and_run(build_dir: str, compile_cmd: list[str], program: list[str]) -> Plan:
    """A ``Plan`` that compiles in ``build_dir`` (TMPDIR there too) and, when that
    succeeded, execs ``program`` in the workspace with the user's arguments."""
    import shlex  # not at import: it loads re, and the compiled languages alone need it

    build = shlex.quote(build_dir)
    script = (
        f"cd {build} && TMPDIR={build} {shlex.join(compile_cmd)} || exit; "
        f'cd {WORKDIR} && exec {shlex.join(program)} "$@"'
    )
    return Plan(argv=["/bin/sh", "-c", script, "main"])
