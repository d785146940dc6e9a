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

    uv run python bench/agent_cpu.py --runtime runsc --runs 5 --rounds 3

With ``--runtime``, each case runs as a container of its own under that runtime
instead (``docker run --rm``, the same hardening), ``--runs`` times back to back,
in ``--rounds`` interleaved rounds, and the figure is the machine's busy CPU per
container (``/proc/stat``; median of the rounds): the whole lifecycle, the engine
and, under gVisor, its Sentry and Gofer, whose work ``getrusage`` inside the sandbox
does not see. Its difference to the bare print container is the agent's share.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess

from _common import DEFAULT_IMAGE, busy_cpu_s, write_json

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


def docker_run(runtime: str | None = None) -> list[str]:
    """``docker run`` of a sandbox-like container (the image's user, tmpfs layout, no
    network), before the image name."""
    return [
        "docker", "run", "--rm", "-i", "--network", "none",
        *(["--runtime", runtime] if runtime else []),
        "--user", cfg.SANDBOX_USER,
        "--read-only",
        "--tmpfs", f"{cfg.WORKDIR}:uid=1000,gid=1000,mode=0755",
        "--tmpfs", "/tmp:mode=1777",
        "--tmpfs", f"{cfg.BUILD_DIR}:uid=1000,gid=1000,mode=0700,exec",
        "--workdir", cfg.WORKDIR,
        "--label", "org.rce.agent-cpu=1",
    ]  # fmt: skip


def measure_containers(image: str, runtime: str, runs: int, rounds: int) -> dict[str, float]:
    """Each case as a container of its own under ``runtime``: the machine's busy CPU
    per container, in ms (median of ``rounds`` interleaved rounds of ``runs``)."""
    got: dict[str, list[float]] = {}
    for _ in range(rounds):
        for case in cases():
            env_map, command = case["env"], case["argv"]
            assert isinstance(env_map, dict) and isinstance(command, list)
            env = [f"--env={k}={v}" for k, v in env_map.items()]
            argv = [*docker_run(runtime), *env, image, *command]
            stdin = base64.b64decode(str(case["stdin"]))
            before = busy_cpu_s()
            for _ in range(runs):
                done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(
                        f"{case['name']}: exit {done.returncode}: {done.stderr[-500:]!r}"
                    )
            got.setdefault(str(case["name"]), []).append((busy_cpu_s() - before) * 1000 / runs)
    return {name: round(statistics.median(values), 1) for name, values in got.items()}


def measure(image: str, runs: int) -> dict[str, float]:
    argv = [*docker_run(), image, "python3", "-c", DRIVER, str(runs)]
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
    parser.add_argument("--runtime", default=None, help="one container per case, under it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.runtime:
        result = measure_containers(args.image, args.runtime, args.runs, args.rounds)
        what = f"machine CPU per container under {args.runtime}"
    else:
        result = measure(args.image, args.runs)
        what = "CPU per process"
    bare = result["python3 -c 'print(2+2)'"]
    print(f"{what} in {args.image}, {args.runs} runs each (ms):\n")
    print("| process | CPU ms | beside python3 -c 'print(2+2)' |")
    print("|---|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value} | {value - bare:+.2f} |")
    if args.json:
        write_json(
            args.json,
            {"image": args.image, "runtime": args.runtime, "runs": args.runs, "cpu_ms": result},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
