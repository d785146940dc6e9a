"""``scripts/ensure-runsc.sh`` registers gVisor idempotently, merged into the engine's config.

The engine and runsc are stand-ins: ``docker`` on ``PATH`` lists the runtimes the
config names, ``runsc`` is an empty executable, and the "dockerd" is a shell that
counts the reloads (``SIGHUP``) it receives.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-runsc.sh"

# Lists the runtimes of the config file it is given, as `docker info --format ...` would.
FAKE_DOCKER = """#!/bin/sh
exec python3 -c '
import json, sys
print(" ".join(["runc", *json.load(open(sys.argv[1])).get("runtimes", {})]))
' "$RCE_DOCKER_DAEMON_JSON"
"""


@dataclass
class Engine:
    config: Path
    reloads: Path
    env: dict[str, str]

    def ensure(self, *, platform: str = "ptrace") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT)],
            env={**self.env, "RCE_RUNSC_PLATFORM": platform},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def reload_count(self) -> int:
        time.sleep(0.3)  # the trap runs when the stand-in's sleep ends
        return len(self.reloads.read_text().splitlines()) if self.reloads.exists() else 0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"docker": FAKE_DOCKER, "runsc": "#!/bin/sh\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    reloads = tmp_path / "reloads"
    dockerd = subprocess.Popen(
        ["bash", "-c", f"trap 'echo hup >> {reloads}' HUP; while :; do sleep 0.1; done"]
    )
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(f"{dockerd.pid}\n")
    config = tmp_path / "etc" / "daemon.json"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RCE_DOCKER_DAEMON_JSON": str(config),
        "RCE_DOCKERD_PIDFILE": str(pidfile),
    }
    time.sleep(0.2)  # the trap is set
    try:
        yield Engine(config=config, reloads=reloads, env=env)
    finally:
        dockerd.kill()
        dockerd.wait()


def test_registers_both_runtimes_into_the_existing_config_and_reloads_once(
    engine: Engine,
) -> None:
    engine.config.parent.mkdir()
    existing = {"log-level": "warn", "runtimes": {"other": {"path": "/x"}}}
    engine.config.write_text(json.dumps(existing))
    first = engine.ensure()
    assert first.returncode == 0, first.stderr
    config = json.loads(engine.config.read_text())
    assert config["log-level"] == "warn"
    runtimes = config["runtimes"]
    assert runtimes["other"] == {"path": "/x"}
    assert runtimes["runsc"]["runtimeArgs"] == ["--platform=ptrace", "--network=none"]
    assert runtimes["runsc-net"]["runtimeArgs"] == ["--platform=ptrace", "--network=host"]
    assert runtimes["runsc"]["path"].endswith("/bin/runsc")
    assert engine.reload_count() == 1

    again = engine.ensure()
    assert again.returncode == 0, again.stderr
    assert json.loads(engine.config.read_text()) == config
    assert engine.reload_count() == 1, "a second run must not reload the engine"


def test_a_fresh_machine_without_a_config_gets_one(engine: Engine) -> None:
    result = engine.ensure(platform="kvm")
    assert result.returncode == 0, result.stderr
    runtimes = json.loads(engine.config.read_text())["runtimes"]
    assert runtimes["runsc"]["runtimeArgs"] == ["--platform=kvm", "--network=none"]
    assert engine.reload_count() == 1


def test_an_unknown_platform_is_refused_before_anything_changes(engine: Engine) -> None:
    result = engine.ensure(platform="bogus")
    assert result.returncode != 0
    assert "RCE_RUNSC_PLATFORM" in result.stderr
    assert not engine.config.exists()
    assert engine.reload_count() == 0
