"""The CPU a sandbox's agent costs inside the image, beside a bare ``python3``.

    uv run python bench/agent_cpu.py                 # 30 runs of each
    uv run python bench/agent_cpu.py --runs 50 --json agent_cpu.json

One container of the image (the sandbox's user, tmpfs layout and no network) runs a
driver that starts each process ``--runs`` times back to back, with its stdin given,
and reads the CPU its children used (``getrusage(RUSAGE_CHILDREN)``: user + system,
the process and everything it forked):

- ``python3 -c pass`` and ``python3 -c 'print(2+2)'``: what a bare container's
  program costs (the lifecycle ceiling of ``load_bench.py`` runs the latter);
- the agent of a light sandbox given no job (stdin closed): its start;
- the agent of a light sandbox given a hello job: its start, the forked child that
  runs the program, the collection of outputs and the reply;
- the agent of a cold sandbox given the same job (the program runs in a fresh
  ``python3``).

The agent's share of an exec is the difference between the light hello and the bare
print. Runs inside one container, so container creation and the engine are not in
these figures (``load_bench.py`` has the whole machine's CPU per exec).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess

from _common import DEFAULT_IMAGE, write_json

from runner import _docker_config as cfg
from runner.base import Language, RunRequest
from runner.protocol import encode_job_header

AGENT = ["python3", "/opt/rce/rce_agent/__main__.py"]

#: Runs inside the image: argv[1] is the run count; the cases come as JSON on stdin.
DRIVER = """
import base64, json, os, resource, subprocess, sys

def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

runs = int(sys.argv[1])
out = {}
for case in json.load(sys.stdin):
    env = {**os.environ, **case["env"]}
    stdin = base64.b64decode(case["stdin"])
    first = subprocess.run(case["argv"], input=stdin, capture_output=True, env=env)
    if first.returncode != 0:
        raise SystemExit(f"{case['name']}: exit {first.returncode}: {first.stderr[-500:]!r}")
    before = children_cpu()
    for _ in range(runs):
        subprocess.run(case["argv"], input=stdin, capture_output=True, env=env, check=True)
    out[case["name"]] = round((children_cpu() - before) * 1000 / runs, 2)
print(json.dumps(out))
"""


def cases() -> list[dict[str, object]]:
    hello = encode_job_header(RunRequest(language=Language.PYTHON, code="print(2+2)"))
    light = {"RCE_AGENT_PRELOAD": cfg.Flavour.LIGHT.value}

    def case(
        name: str, argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None
    ) -> dict[str, object]:
        return {
            "name": name,
            "argv": argv,
            "stdin": base64.b64encode(stdin).decode(),
            "env": env or {},
        }

    return [
        case("python3 -c pass", ["python3", "-c", "pass"]),
        case("python3 -c 'print(2+2)'", ["python3", "-c", "print(2+2)"]),
        case("light agent, no job", AGENT, env=light),
        case("light agent, hello job", AGENT, hello, light),
        case("cold agent, hello job", AGENT, hello),
    ]


def measure(image: str, runs: int) -> dict[str, float]:
    argv = [
        "docker", "run", "--rm", "-i", "--network", "none",
        "--user", cfg.SANDBOX_USER,
        "--read-only",
        "--tmpfs", f"{cfg.WORKDIR}:uid=1000,gid=1000,mode=0755",
        "--tmpfs", "/tmp:mode=1777",
        "--tmpfs", f"{cfg.BUILD_DIR}:uid=1000,gid=1000,mode=0700,exec",
        "--workdir", cfg.WORKDIR,
        "--label", "org.rce.agent-cpu=1",
        image, "python3", "-c", DRIVER, str(runs),
    ]  # fmt: skip
    proc = subprocess.run(
        argv, input=json.dumps(cases()), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"the driver failed: {proc.stderr[-2000:]}")
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default=os.environ.get("RCE_IMAGE_NAME") or DEFAULT_IMAGE)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = measure(args.image, args.runs)
    bare = result["python3 -c 'print(2+2)'"]
    print(f"CPU per process in {args.image}, {args.runs} runs each (ms):\n")
    print("| process | CPU ms | beside python3 -c 'print(2+2)' |")
    print("|---|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value} | {value - bare:+.2f} |")
    if args.json:
        write_json(args.json, {"image": args.image, "runs": args.runs, "cpu_ms": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
