"""One runner per language: what to write where, and the command that compiles and runs it.

A runner writes the source into the private build directory (an exec-able tmpfs
outside the scanned workspace) and returns a ``Plan``. Compiled languages run one
``sh -c`` command, ``compile || exit; cd /mnt/data && exec ./program "$@"``, so the
compile counts against the run's time limit, its diagnostics are the run's stderr
and its exit code is the run's exit code; build products never reach ``/mnt/data``.
"""

from __future__ import annotations

from collections.abc import Callable

from rce_agent.langs import compiled, interpreted, java
from rce_agent.langs.base import Plan

RUNNERS: dict[str, Callable[[str, str], Plan]] = {
    "py": interpreted.python,
    "bash": interpreted.bash,
    "js": interpreted.javascript,
    "ts": interpreted.typescript,
    "php": interpreted.php,
    "r": interpreted.r,
    "c": compiled.c,
    "cpp": compiled.cpp,
    "d": compiled.d,
    "f90": compiled.fortran,
    "rs": compiled.rust,
    "go": compiled.go,
    "java": java.java,
}

__all__ = ["RUNNERS", "Plan", "plan_for"]


def plan_for(lang: str, code: str, build_dir: str) -> Plan:
    """The ``Plan`` for ``lang`` (a canonical name), or ``ValueError``."""
    try:
        runner = RUNNERS[lang]
    except KeyError:
        raise ValueError(f"unsupported language {lang[:40]!r}") from None
    return runner(code, build_dir)
