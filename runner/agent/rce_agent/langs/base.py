"""What every language runner shares: the ``Plan`` and writing the source."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

WORKDIR = "/mnt/data"


@dataclass(frozen=True)
class WarmRun:
    """How an interpreter started before the job (``rce_agent.warm``) runs the program.

    ``kind`` names the interpreter (``"r"``, ``"node"``), ``main`` the file it runs as
    its main program; ``compile`` (run first, in ``build_dir`` with ``TMPDIR`` there)
    ends the run with its own exit code when it fails, as the plan's ``|| exit`` does.
    """

    kind: str
    main: str
    compile: list[str] = field(default_factory=list)
    build_dir: str = ""


@dataclass(frozen=True)
class Plan:
    """How to run one program: ``argv`` + the user's arguments, with ``env`` added.

    ``python`` is the path of a Python program that a warm agent runs in a forked
    child of itself instead of exec'ing ``argv``; ``warm`` says how a warm interpreter
    of its kind runs it instead (same program, same arguments, same outcome).
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    python: str | None = None
    warm: WarmRun | None = None


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
    build = shlex.quote(build_dir)
    script = (
        f"cd {build} && TMPDIR={build} {shlex.join(compile_cmd)} || exit; "
        f'cd {WORKDIR} && exec {shlex.join(program)} "$@"'
    )
    return Plan(argv=["/bin/sh", "-c", script, "main"])
