"""What the agent imports at its start: every sandbox pays for it, before the job.

``rce_agent.main`` (every sandbox) and the data flavour's warm interpreter
(``rce_agent.pywarm``) stay off ``typing``, ``dataclasses`` (with ``inspect``) and
``shutil``: in the sandbox image they cost about 12 and 17 ms of CPU per sandbox. The
start of every sandbox also stays off ``re``, ``enum`` (which ``signal`` and ``re``
import) and ``json`` (which imports ``re``): about 6 ms more.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import AGENT_ROOT

#: Modules the agent's start must not import (see the module docstring).
HEAVY = ("typing", "dataclasses", "inspect", "shutil")
#: What ``rce_agent.main`` must not import either (its start is every sandbox's).
EVERY_SANDBOX = (*HEAVY, "re", "enum", "json", "signal", "shlex", "threading")


def imported_by(statement: str) -> set[str]:
    """Modules a fresh interpreter (no site, so no .pth file imports anything) holds
    after ``statement`` and not before it."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{statement}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    env = {**os.environ, "PYTHONPATH": AGENT_ROOT}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import rce_agent.main",
        # What pywarm.py imports before the job (it runs main() when imported).
        "from rce_agent import pychild\nfrom rce_agent.wire import READY",
    ],
)
def test_the_start_path_stays_off_heavy_modules(statement: str) -> None:
    got = imported_by(statement)
    assert "rce_agent.wire" in got  # the statement did import the agent
    assert not got & set(HEAVY), sorted(got & set(HEAVY))


def test_every_sandbox_start_stays_off_re_enum_and_json() -> None:
    got = imported_by("import rce_agent.main")
    assert not got & set(EVERY_SANDBOX), sorted(got & set(EVERY_SANDBOX))


def test_a_light_sandbox_start_stays_off_the_warm_interpreters_module() -> None:
    # rce_agent.warm (1 ms of imports) is for the agents that start a waiting
    # interpreter: data, r, node and java.
    assert "rce_agent.warm" not in imported_by("import rce_agent.main")


def test_pywarm_imports_only_pychild_and_wire_from_the_agent() -> None:
    source = (Path(AGENT_ROOT) / "rce_agent" / "pywarm.py").read_text()
    modules = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    agent = {m for m in modules if m.startswith("rce_agent")}
    assert agent == {"rce_agent", "rce_agent.wire"}, agent


@pytest.mark.parametrize(("job", "status"), [(b"", 0), (b"not a job", 1)])
def test_the_agent_exits_with_mains_status_and_no_interpreter_teardown(
    job: bytes, status: int
) -> None:
    # An atexit handler stands for the teardown: the container ends with the agent, so
    # the interpreter's clean-up would be CPU spent on nothing.
    package = Path(AGENT_ROOT) / "rce_agent"
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('teardown ran\\n'))\n"
        "source = open('__main__.py').read()\n"
        "exec(compile(source, '__main__.py', 'exec'), {'__name__': '__main__'})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=package, input=job, capture_output=True, check=False
    )
    assert done.returncode == status, done.stderr.decode()
    assert b"teardown ran" not in done.stderr
    if status:  # the failure was reported on the reply channel before the exit
        assert done.stdout.startswith(b"R") and b"agent failed" in done.stdout
