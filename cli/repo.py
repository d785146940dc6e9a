"""Where the checkout is, and the sandbox image recipe hash it would build."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: The checkout holding images/ and bench/ (the package is installed editable from it).
REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "images" / "build.sh"
BENCH_SCRIPT = REPO_ROOT / "bench" / "bench.py"
#: ``rce bench --suite NAME``: the benchmark scripts, by suite.
BENCH_SUITES = {
    "http": BENCH_SCRIPT,
    "lang": REPO_ROOT / "bench" / "lang_bench.py",
    "ptc": REPO_ROOT / "bench" / "ptc_bench.py",
    "runner": REPO_ROOT / "bench" / "runner_bench.py",
    "load": REPO_ROOT / "bench" / "load_bench.py",
}


def recipe_hash() -> str | None:
    """The recipe hash ``images/build.sh`` would label the CPU image with (one source of
    truth: the script computes it), or None outside a checkout."""
    if not BUILD_SCRIPT.is_file():
        return None
    done = subprocess.run(
        [str(BUILD_SCRIPT), "--recipe-hash"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None
