"""Interpreted languages: py, bash, js, ts (types stripped by esbuild), php, r."""

from __future__ import annotations

import os

from rce_agent.langs.base import Plan, compile_and_run, write_source


def python(code: str, build_dir: str) -> Plan:
    """``python3 main.py``; a warm agent runs it in a forked child of itself."""
    path = write_source(build_dir, "main.py", code)
    return Plan(argv=["python3", path], python=path)


def bash(code: str, build_dir: str) -> Plan:
    return Plan(argv=["bash", write_source(build_dir, "main.sh", code)])


def javascript(code: str, build_dir: str) -> Plan:
    return Plan(argv=["node", write_source(build_dir, "main.js", code)])


def typescript(code: str, build_dir: str) -> Plan:
    """esbuild strips the types (milliseconds, no type-check), node runs the result."""
    write_source(build_dir, "main.ts", code)
    out = os.path.join(build_dir, "main.js")
    return compile_and_run(
        build_dir,
        [
            "esbuild",
            "main.ts",
            f"--outfile={out}",
            "--format=cjs",
            "--platform=node",
            "--target=node18",
            "--log-level=warning",
        ],
        ["node", out],
    )


def php(code: str, build_dir: str) -> Plan:
    """``php main.php``, errors on stderr (the CLI prints them on stdout by default)."""
    path = write_source(build_dir, "main.php", code)
    return Plan(argv=["php", "-d", "display_errors=stderr", path])


def r(code: str, build_dir: str) -> Plan:
    """``Rscript main.R``; the image makes Cairo the bitmap device (no X11)."""
    return Plan(argv=["Rscript", write_source(build_dir, "main.R", code)])
