"""Interpreted languages: py, bash, js, ts (types stripped by esbuild), php, r."""

from __future__ import annotations

import os

from rce_agent.langs.base import Plan, WarmRun, compile_and_run, write_source

#: A start-up snapshot of node's bootstrap and core modules, built at image build time
#: by this node (Debian's node has no embedded snapshot or code cache): about 40% less
#: CPU per start. Only ``process.execArgv`` shows it.
NODE_SNAPSHOT = "/opt/rce/node.blob"


def node() -> list[str]:
    """``node``, from the image's start-up snapshot when there is one."""
    if os.path.isfile(NODE_SNAPSHOT):
        return ["node", "--snapshot-blob", NODE_SNAPSHOT]
    return ["node"]


def python(code: str, build_dir: str) -> Plan:
    """``python3 main.py``; a warm data interpreter runs it as its main module, and
    another warm agent in a forked child of itself."""
    path = write_source(build_dir, "main.py", code)
    return Plan(argv=["python3", path], python=path, warm=WarmRun("python", path))


def bash(code: str, build_dir: str) -> Plan:
    return Plan(argv=["bash", write_source(build_dir, "main.sh", code)])


def javascript(code: str, build_dir: str) -> Plan:
    """``node main.js``; a warm node runs it as its main module."""
    path = write_source(build_dir, "main.js", code)
    return Plan(argv=[*node(), path], warm=WarmRun("node", path))


def typescript(code: str, build_dir: str) -> Plan:
    """esbuild strips the types (milliseconds, no type-check), node runs the result."""
    write_source(build_dir, "main.ts", code)
    out = os.path.join(build_dir, "main.js")
    esbuild = [
        "esbuild",
        "main.ts",
        f"--outfile={out}",
        "--format=cjs",
        "--platform=node",
        "--target=node18",
        "--log-level=warning",
    ]
    plan = compile_and_run(build_dir, esbuild, [*node(), out])
    return Plan(argv=plan.argv, warm=WarmRun("node", out, esbuild, build_dir))


def php(code: str, build_dir: str) -> Plan:
    """``php main.php``, errors on stderr (the CLI prints them on stdout by default)."""
    path = write_source(build_dir, "main.php", code)
    return Plan(argv=["php", "-d", "display_errors=stderr", path])


def r(code: str, build_dir: str) -> Plan:
    """``Rscript main.R``; the image makes Cairo the bitmap device (no X11). A warm R
    reads the program through its own REPL, as ``Rscript`` does."""
    path = write_source(build_dir, "main.R", code)
    return Plan(argv=["Rscript", path], warm=WarmRun("r", path))
