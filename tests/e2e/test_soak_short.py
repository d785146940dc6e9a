"""A short soak of the real API (uvicorn subprocess, folder store, Docker sandbox)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import service_missing

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = "custom-rce-kernel:latest"

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


def _docker_ready() -> str | None:
    for argv, reason in (
        (["docker", "info"], "no Docker engine answers"),
        (["docker", "image", "inspect", IMAGE], f"sandbox image {IMAGE} is missing"),
    ):
        try:
            subprocess.run(argv, capture_output=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return reason
    return None


@pytest.mark.timeout(240)
def test_short_soak_has_no_server_errors_and_leaves_nothing(tmp_path: Path) -> None:
    """Four clients for 20 s: exit 0, no 5xx, no wrong answer, no leftover container
    or temp file (soak.py exits non-zero on any of these)."""
    reason = _docker_ready()
    if reason:
        service_missing(reason)
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "bench/soak.py", "--seconds", "20", "--clients", "4", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert out.exists(), f"soak wrote no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    summary = f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    assert report["http_5xx"] == 0, summary
    assert report["wrong_answers"] == 0, summary
    assert report["operations"] > 20, summary
    assert proc.returncode == 0, summary
