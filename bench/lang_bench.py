"""The per-language benchmark: hello over HTTP beside a bare ``docker run --rm``.

For each of the 13 languages, a hello program runs ``--iterations`` times through
rce (``POST /exec``) and then ``--iterations`` times as a bare ``docker run --rm``
of the same image running the same compile-and-run command the in-sandbox agent
runs (its ``Plan``, from ``runner/agent/rce_agent/langs``). Each series runs back
to back with no pause: the rce series of a language, then its bare series, never
interleaved call by call (interleaving would let the warm pool refill between rce
calls behind a docker run and flatter rce).

    uv run python bench/lang_bench.py                     # local API, every language
    uv run python bench/lang_bench.py --langs js,cpp,r --iterations 30 --json out.json
    uv run python bench/lang_bench.py --base-url http://host:8000 --api-key KEY

Targets (p50 of rce / p50 of bare): interpreted languages (py, js, php, r, bash)
<= 0.5, compiled ones (ts, c, cpp, java, rs, go, d, f90) <= 0.9.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_IMAGE,
    REPO_ROOT,
    LocalApi,
    RceClient,
    containers_with_label,
    docker_available,
    error_kind,
    machine_info,
    ms,
    remove_containers,
    remove_tree,
    source_revision,
    summarize,
    write_json,
)

sys.path.insert(0, str(REPO_ROOT / "runner" / "agent"))
from rce_agent.langs import plan_for

#: Where the bare run builds; the same path the agent uses is a tmpfs there, here
#: it is the container's own writable layer.
BARE_BUILD_DIR = "/tmp/rce-bench-build"

HELLO: dict[str, str] = {
    "py": "print('hello')",
    "js": "console.log('hello')",
    "php": '<?php echo "hello\\n";',
    "r": "cat('hello\\n')",
    "bash": "echo hello",
    "ts": "const s: string = 'hello'; console.log(s)",
    "c": '#include <stdio.h>\nint main(void){ puts("hello"); return 0; }',
    "cpp": '#include <iostream>\nint main(){ std::cout << "hello" << std::endl; }',
    "java": "public class Main { public static void main(String[] a) {"
    ' System.out.println("hello"); } }',
    "rs": 'fn main() { println!("hello"); }',
    "go": 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }',
    "d": 'import std.stdio; void main() { writeln("hello"); }',
    "f90": "program h\n  print '(a)', 'hello'\nend program h",
}
INTERPRETED = {"py", "js", "php", "r", "bash"}
TARGET_INTERPRETED = 0.5
TARGET_COMPILED = 0.9
LABEL = "org.rce.bench=lang"


def target(lang: str) -> float:
    """The p50 ratio a language must stay under."""
    return TARGET_INTERPRETED if lang in INTERPRETED else TARGET_COMPILED


def bare_argv(image: str, lang: str, code: str) -> list[str]:
    """``docker run --rm IMAGE sh -c 'write the sources; run the plan'``: the agent's
    own plan for ``lang``, with the sources written inside the container."""
    with tempfile.TemporaryDirectory() as host_dir:
        build = os.path.join(host_dir, "b")
        plan = plan_for(lang, code, build)
        sources = {name: Path(build, name).read_text() for name in sorted(os.listdir(build))}
    inside = [part.replace(build, BARE_BUILD_DIR) for part in plan.argv]
    env = [f"{k}={v.replace(build, BARE_BUILD_DIR)}" for k, v in plan.env.items()]
    write = "".join(
        f'printf %s "$SRC{i}" > {BARE_BUILD_DIR}/{shlex.quote(name)}; '
        for i, name in enumerate(sources)
    )
    script = f"mkdir -p {BARE_BUILD_DIR} && cd /mnt/data && {write}exec {shlex.join(inside)}"
    argv = ["docker", "run", "--rm", "--network", "none", "--label", LABEL]
    for i, text in enumerate(sources.values()):
        argv += ["-e", f"SRC{i}={text}"]
    for pair in env:
        argv += ["-e", pair]
    return [*argv, image, "sh", "-c", script]


def series_rce(client: RceClient, lang: str, n: int) -> tuple[list[float], dict[str, int]]:
    """``n`` hello execs back to back; (seconds of the good ones, error counts)."""
    times: list[float] = []
    errors: dict[str, int] = {}
    for _ in range(n):
        started = time.perf_counter()
        try:
            answer = client.exec(HELLO[lang], lang=lang)
            if answer.get("stdout") != "hello\n":
                raise ValueError(f"{lang}: {answer.get('stdout')!r} {answer.get('stderr')!r}")
        except Exception as exc:
            kind = "wrong_answer" if isinstance(exc, ValueError) else error_kind(exc)
            errors[kind] = errors.get(kind, 0) + 1
            print(f"lang_bench: rce {lang}: {exc}", file=sys.stderr)
            continue
        times.append(time.perf_counter() - started)
    return times, errors


def series_bare(image: str, lang: str, n: int) -> tuple[list[float], dict[str, int]]:
    """``n`` bare ``docker run --rm`` of the same hello, back to back."""
    argv = bare_argv(image, lang, HELLO[lang])
    times: list[float] = []
    errors: dict[str, int] = {}
    for _ in range(n):
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0 or proc.stdout != "hello\n":
            errors["wrong_answer"] = errors.get("wrong_answer", 0) + 1
            print(f"lang_bench: bare {lang}: {proc.stderr[-500:]}", file=sys.stderr)
            continue
        times.append(elapsed)
    return times, errors


def measure(client: RceClient, args: argparse.Namespace, lang: str) -> dict[str, Any]:
    """One language: a warm-up each side, then the rce series and the bare series."""
    series_rce(client, lang, args.warmup)
    series_bare(args.image, lang, args.warmup)
    rce, rce_errors = series_rce(client, lang, args.iterations)
    bare, bare_errors = series_bare(args.image, lang, args.iterations)
    r, b = summarize(rce), summarize(bare)
    ratio = {
        q: (r[q] / b[q]) if r[q] and b[q] else None  # type: ignore[operator]
        for q in ("p50", "p90", "p99")
    }
    ok = ratio["p50"] is not None and ratio["p50"] <= target(lang) and not rce_errors
    return {
        "rce": {**r, "n": len(rce), "errors": rce_errors},
        "bare": {**b, "n": len(bare), "errors": bare_errors},
        "ratio": ratio,
        "target_p50": target(lang),
        "verdict": "PASS" if ok else "MISS",
    }


def render(report: dict[str, Any]) -> str:
    """The report as a Markdown table (milliseconds)."""
    m = report["machine"]
    lines = [
        f"# Per-language hello: rce vs bare `docker run --rm` ({report['iterations']} each)",
        "",
        f"machine: {m.get('nproc')} CPUs, load before {report['load_before']},"
        f" after {m.get('load_avg_1_5_15')}; image {report['image']}",
        "",
        "| lang | rce p50 | p90 | p99 | bare p50 | p90 | p99 | p50 ratio | p90 ratio"
        " | p99 ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for lang, r in report["languages"].items():
        rc, bb, ra = r["rce"], r["bare"], r["ratio"]
        lines.append(
            f"| {lang} | {ms(rc['p50'])} | {ms(rc['p90'])} | {ms(rc['p99'])}"
            f" | {ms(bb['p50'])} | {ms(bb['p90'])} | {ms(bb['p99'])}"
            f" | {f(ra['p50'])} | {f(ra['p90'])} | {f(ra['p99'])}"
            f" | ≤ {r['target_p50']} | {r['verdict']} |"
        )
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--base-url", help="benchmark this API instead of starting the local one")
    p.add_argument("--api-key", default=os.environ.get("CUSTOM_RCE_API_KEY"))
    p.add_argument("--image", default=os.environ.get("RCE_IMAGE_NAME", DEFAULT_IMAGE))
    p.add_argument("--pool-size", type=int, help="RCE_POOL_SIZE of the local API")
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--settle-seconds", type=float, default=5.0)
    p.add_argument("--langs", default=",".join(HELLO), help="comma-separated languages")
    p.add_argument("--json", help="also write the report as JSON here")
    return p.parse_args(argv)


def run(args: argparse.Namespace, base_url: str, api_key: str) -> dict[str, Any]:
    """Every selected language, in order; the report."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    time.sleep(args.settle_seconds)  # let the warm pool fill before anything is timed
    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    results: dict[str, Any] = {}
    with RceClient(base_url, api_key) as client:
        try:
            for lang in langs:
                results[lang] = measure(client, args, lang)
                print(f"lang_bench: {lang} done", file=sys.stderr)
        finally:
            remove_containers(list(containers_with_label(LABEL)))
    return {
        "machine": machine_info(),
        "load_before": load_before,
        "image": args.image,
        "iterations": args.iterations,
        "languages": results,
    }


def main(argv: list[str] | None = None) -> int:
    """0 when every rce request answered hello (a MISSed target is reported, not an
    error); 1 when one failed; 2 when the benchmark cannot run."""
    args = _parse_args(argv)
    unknown = {x.strip() for x in args.langs.split(",")} - set(HELLO)
    if unknown:
        print(f"lang_bench: unknown languages {sorted(unknown)}", file=sys.stderr)
        return 2
    reason = docker_available(args.image)
    if reason:
        print(f"lang_bench: {reason}", file=sys.stderr)
        return 2
    if args.base_url:
        report = run(args, args.base_url, args.api_key or "")
    else:
        workdir = Path(tempfile.mkdtemp(prefix="rce-lang-bench-"))
        settings = {"RCE_IMAGE_NAME": args.image}
        if args.pool_size is not None:
            settings["RCE_POOL_SIZE"] = str(args.pool_size)
        try:
            with LocalApi(workdir / "api", settings) as api:
                report = run(args, api.base_url, api.api_key)
                report["server"] = {"revision": source_revision(), **api.effective_settings()}
        finally:
            remove_tree(workdir)
    print(render(report))
    write_json(args.json, report)
    failed = sum(sum(r["rce"]["errors"].values()) for r in report["languages"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
