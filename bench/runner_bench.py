"""Latency of one ``print(2+2)`` through ``DockerSandbox``, beside a bare ``docker run``.

    uv run python bench/runner_bench.py --n 30            # cold sandbox vs docker run, + pool
    uv run python bench/runner_bench.py --n 30 --no-pool  # cold only
    uv run python bench/runner_bench.py --n 30 --data     # + pandas: cold vs DATA pool

Each iteration runs, interleaved: ``docker run --rm IMAGE python3 -c 'print(2+2)'``
(the CLI, same image), a cold ``DockerSandbox.run`` and, with the pool, a run on a
warm LIGHT container (after waiting for one, so it measures a pool hit). With
``--data``, ``import pandas`` then the same print also runs cold and on a warm DATA
container. Prints p50/p90 of each and the ratios to ``docker run`` (target: cold
<= 1.3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from runner.base import Language, Limits, RunRequest
from runner.docker import DockerSandbox

CODE = "print(2+2)"
DATA_CODE = "import pandas\nprint(2+2)"
LABELS = {"org.rce.bench": "runner_bench"}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def docker_run(image: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ["docker", "run", "--rm", image, "python3", "-c", CODE],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    assert done.stdout == "4\n", done
    return elapsed


def sandbox_run(sandbox: DockerSandbox, code: str = CODE) -> float:
    started = time.perf_counter()
    result = sandbox.run(RunRequest(language=Language.PYTHON, code=code))
    elapsed = time.perf_counter() - started
    assert result.stdout == "4\n" and result.exit_code == 0, result
    return elapsed


def report(name: str, samples: list[float], baseline: list[float] | None) -> None:
    p50, p90 = percentile(samples, 0.5), percentile(samples, 0.9)
    line = f"{name:<22} p50 {p50 * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"
    if baseline:
        b50, b90 = percentile(baseline, 0.5), percentile(baseline, 0.9)
        line += f"   ratio p50 {p50 / b50:.2f}  p90 {p90 / b90:.2f}"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="iterations (default 30)")
    parser.add_argument(
        "--image", default=os.environ.get("RCE_IMAGE_NAME") or "custom-rce-kernel:latest"
    )
    parser.add_argument("--no-pool", action="store_true", help="skip the warm-pool runs")
    parser.add_argument("--data", action="store_true", help="also time `import pandas` runs")
    args = parser.parse_args()

    cold = DockerSandbox(image=args.image, labels=LABELS)
    warm: dict[str, DockerSandbox] = {}
    if not args.no_pool:
        warm["DockerSandbox pooled"] = DockerSandbox(
            image=args.image, labels=LABELS, pool_size=1, pool_limits=Limits()
        )
    if args.data and not args.no_pool:
        warm["pandas, pooled DATA"] = DockerSandbox(
            image=args.image, labels=LABELS, pool_data_size=1, pool_limits=Limits()
        )
    samples: dict[str, list[float]] = {"docker run --rm": [], "DockerSandbox cold": []}
    if args.data:
        samples["pandas, cold"] = []
    samples.update({name: [] for name in warm})
    try:
        cold.ping()
        docker_run(args.image)  # warm the engine's caches for both paths
        sandbox_run(cold)
        for i in range(args.n):
            samples["docker run --rm"].append(docker_run(args.image))
            samples["DockerSandbox cold"].append(sandbox_run(cold))
            if args.data:
                samples["pandas, cold"].append(sandbox_run(cold, DATA_CODE))
            for name, box in warm.items():
                if not box.wait_pool_ready(120):
                    raise SystemExit("the warm pool did not fill")
                time.sleep(0.2)  # let the refilled agent settle before measuring
                code = DATA_CODE if name.startswith("pandas") else CODE
                samples[name].append(sandbox_run(box, code))
            print(f"\r{i + 1}/{args.n}", end="", flush=True)
        print()
    finally:
        cold.close()
        for box in warm.values():
            box.close()
    baseline = samples["docker run --rm"]
    print(f"image {args.image}, {args.n} iterations, interleaved")
    for name, values in samples.items():
        report(name, values, None if values is baseline else baseline)
    ratio = statistics.median(samples["DockerSandbox cold"]) / statistics.median(baseline)
    print(f"cold/docker-run p50 ratio {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
