"""Latency of one ``print(2+2)`` through ``DockerSandbox``, beside a bare ``docker run``.

    uv run python bench/runner_bench.py --n 30            # cold sandbox vs docker run, + pool
    uv run python bench/runner_bench.py --n 30 --no-pool  # cold only

Each iteration runs, interleaved: ``docker run --rm IMAGE python3 -c 'print(2+2)'``
(the CLI, same image), a cold ``DockerSandbox.run`` and, with the pool, a pooled run
(after waiting for a warm container, so it measures a pool hit). Prints p50/p90 of
each and the ratios to ``docker run`` (target: cold <= 1.3).
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


def sandbox_run(sandbox: DockerSandbox) -> float:
    started = time.perf_counter()
    result = sandbox.run(RunRequest(language=Language.PYTHON, code=CODE))
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
    args = parser.parse_args()

    cold = DockerSandbox(image=args.image, labels=LABELS)
    pooled = None
    if not args.no_pool:
        pooled = DockerSandbox(image=args.image, labels=LABELS, pool_size=1, pool_limits=Limits())
    samples: dict[str, list[float]] = {"docker run --rm": [], "DockerSandbox cold": []}
    if pooled is not None:
        samples["DockerSandbox pooled"] = []
    try:
        cold.ping()
        docker_run(args.image)  # warm the engine's caches for both paths
        sandbox_run(cold)
        for i in range(args.n):
            samples["docker run --rm"].append(docker_run(args.image))
            samples["DockerSandbox cold"].append(sandbox_run(cold))
            if pooled is not None:
                if not pooled.wait_pool_ready(120):
                    raise SystemExit("the warm pool did not fill")
                time.sleep(0.2)  # let the refilled agent settle before measuring
                samples["DockerSandbox pooled"].append(sandbox_run(pooled))
            print(f"\r{i + 1}/{args.n}", end="", flush=True)
        print()
    finally:
        cold.close()
        if pooled is not None:
            pooled.close()
    baseline = samples["docker run --rm"]
    print(f"image {args.image}, {args.n} iterations, interleaved")
    for name, values in samples.items():
        report(name, values, None if values is baseline else baseline)
    ratio = statistics.median(samples["DockerSandbox cold"]) / statistics.median(baseline)
    print(f"cold/docker-run p50 ratio {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
