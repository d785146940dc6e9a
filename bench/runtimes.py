"""runc beside gVisor (runsc) in one run: bare ``docker run --rm --runtime R`` and rce.

For each runtime the local API is started with ``RCE_RUNTIME`` set (pools as
configured), and every workload runs back to back (the next request as soon as the
previous answered) and spaced (a pause of ``--spacing-s`` between requests, so the
pools have refilled). The bare baselines of both runtimes are interleaved.

    uv run python bench/runtimes.py                      # runc and runsc, default sizes
    uv run python bench/runtimes.py --iterations 30 --json runtimes.json

Target (docs/benchmarks.md): back-to-back hello through rce under runsc, p50 at most
half of a bare ``docker run --rm --runtime runsc`` hello.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_IMAGE,
    LocalApi,
    RceClient,
    expect_stdout,
    machine_info,
    ms,
    source_revision,
    summarize,
    write_json,
)

HELLO = "print(2+2)"
PANDAS = (
    "import numpy as np, pandas as pd\n"
    "df = pd.DataFrame({'k': np.arange(100_000) % 100, 'v': np.arange(100_000)})\n"
    "print(int(df.groupby('k')['v'].sum().sum()))"
)
PANDAS_OUT = str(sum(range(100_000)))
LABEL = "org.rce.bench=runtimes"


def bare(image: str, runtime: str, code: str) -> float:
    argv = ["docker", "run", "--rm", "--label", LABEL, "--network", "none"]
    argv += ["--runtime", runtime, image, "python3", "-c", code]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bare {runtime}: {proc.stderr.strip()[-300:]}")
    return took


def timed(step: Callable[[], None]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def rce_side(args: argparse.Namespace, runtime: str, workdir: Path) -> dict[str, Any]:
    settings = {"RCE_RUNTIME": runtime, "RCE_IMAGE_NAME": args.image}
    if args.pool_size is not None:
        settings["RCE_POOL_SIZE"] = settings["RCE_POOL_DATA_SIZE"] = str(args.pool_size)
    out: dict[str, Any] = {}
    with LocalApi(workdir / runtime, settings) as api, RceClient(api.base_url, api.api_key) as c:
        time.sleep(args.settle_s)

        def hello() -> None:
            expect_stdout(c.exec(HELLO), "4")

        def pandas() -> None:
            expect_stdout(c.exec(PANDAS), PANDAS_OUT)

        for name, step, n in (("hello", hello, args.iterations), ("pandas", pandas, args.heavy)):
            step()  # warm-up
            time.sleep(args.settle_s)
            out[f"{name}_back_to_back"] = summarize([timed(step) for _ in range(n)])
            spaced = []
            for _ in range(n):
                time.sleep(args.spacing_s)
                spaced.append(timed(step))
            out[f"{name}_spaced"] = summarize(spaced)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--image", default=DEFAULT_IMAGE)
    p.add_argument("--runtimes", default="runc,runsc")
    p.add_argument("--iterations", type=int, default=20, help="hello samples per side")
    p.add_argument("--heavy", type=int, default=8, help="pandas samples per side")
    p.add_argument("--pool-size", type=int, help="RCE_POOL_SIZE and RCE_POOL_DATA_SIZE")
    p.add_argument("--spacing-s", type=float, default=2.0)
    p.add_argument("--settle-s", type=float, default=5.0)
    p.add_argument("--json", help="write the full report here")
    args = p.parse_args(argv)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]

    baseline: dict[str, dict[str, list[float]]] = {r: {"hello": [], "pandas": []} for r in runtimes}
    for runtime in runtimes:
        bare(args.image, runtime, HELLO)  # warm-up
    for i in range(args.iterations):
        for runtime in runtimes if i % 2 == 0 else list(reversed(runtimes)):
            baseline[runtime]["hello"].append(bare(args.image, runtime, HELLO))
            if i < args.heavy:
                baseline[runtime]["pandas"].append(bare(args.image, runtime, PANDAS))

    report: dict[str, Any] = {"machine": machine_info(), "revision": source_revision()}
    with tempfile.TemporaryDirectory(prefix="rce-bench-runtimes-") as tmp:
        for runtime in runtimes:
            report[runtime] = {
                "bare_hello": summarize(baseline[runtime]["hello"]),
                "bare_pandas": summarize(baseline[runtime]["pandas"]),
                **rce_side(args, runtime, Path(tmp)),
            }

    rows = [
        ("bare `docker run --rm` hello", "bare_hello"),
        ("bare `docker run --rm` pandas groupby", "bare_pandas"),
        ("rce hello, back to back", "hello_back_to_back"),
        ("rce hello, spaced", "hello_spaced"),
        ("rce pandas groupby, back to back", "pandas_back_to_back"),
        ("rce pandas groupby, spaced", "pandas_spaced"),
    ]
    head = " | ".join(f"{r} p50 | {r} p90" for r in runtimes)
    print(f"| workload | {head} |")
    print("|---|" + "---|" * (2 * len(runtimes)))
    for title, key in rows:
        cells = " | ".join(
            f"{ms(report[r][key]['p50'])} | {ms(report[r][key]['p90'])}" for r in runtimes
        )
        print(f"| {title} | {cells} |")
    if "runsc" in report:
        rce_p50 = report["runsc"]["hello_back_to_back"]["p50"] or 0.0
        ratio = rce_p50 / (report["runsc"]["bare_hello"]["p50"] or 1.0)
        report["runsc_hello_ratio"] = ratio
        print(f"\nrunsc: rce back-to-back hello p50 / bare hello p50 = {ratio:.2f} (target <= 0.5)")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
