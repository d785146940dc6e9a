"""The benchmark: rce over HTTP beside a bare ``docker run --rm IMAGE python3 -c CODE``.

Runs against any LibreChat-compatible base URL (``--base-url``/``--api-key``), or,
by default, starts the local API as a subprocess on a free port with the folder
store. Every workload alternates rce and baseline iterations (rce first on even
iterations, the baseline first on odd ones) so that machine noise hits both.

    uv run python bench/bench.py                       # local API, default sizes
    uv run python bench/bench.py --json bench.json --pool-size 4
    uv run python bench/bench.py --base-url http://host:8000 --api-key KEY

The baseline has no HTTP, no upload and no download: for the workloads with input
files it generates the same bytes inside the container before running the same code.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_IMAGE,
    LocalApi,
    MiB,
    RceClient,
    RssSampler,
    Uploaded,
    WrongAnswer,
    bare_docker_run,
    containers_with_label,
    docker_available,
    error_kind,
    expect_stdout,
    machine_info,
    mib,
    ms,
    output_file,
    remove_containers,
    remove_tree,
    source_revision,
    summarize,
    write_json,
)

# --- the code each workload runs (identical for rce and the baseline) ----------------

HELLO = "print(2+2)"
NUMPY = "import numpy as np\nprint(int(np.arange(1_000_000, dtype=np.int64).sum()))"
PANDAS = """\
import numpy as np
import pandas as pd
n = 100_000
df = pd.DataFrame({"k": np.arange(n) % 100, "v": np.arange(n, dtype=np.int64)})
g = df.groupby("k")["v"].agg(["sum", "mean", "count"])
print(len(g), int(g["sum"].sum()))
"""
GEN_CSV = """\
def make_csv():
    lines = ["id,grp,value"]
    lines += [f"{i},{i % 50},{(i * 7919) % 10007 / 10}" for i in range(64000)]
    return ("\\n".join(lines) + "\\n").encode()
"""
CSV_READ = """\
import pandas as pd
df = pd.read_csv("data.csv")
out = df.groupby("grp")["value"].agg(["count", "sum"]).reset_index()
out.to_csv("summary.csv", index=False)
print(len(df), len(out))
"""
GEN_20 = """\
import hashlib
def make_files():
    return {f"f{i:02d}.bin": hashlib.sha256(bytes([i])).digest() * 3200 for i in range(20)}
"""
LIST_20 = """\
import os
names = sorted(n for n in os.listdir(".") if n.endswith(".bin"))
print(len(names), sum(os.path.getsize(n) for n in names))
"""
SYNC_20 = """\
import os
names = sorted(n for n in os.listdir(".") if n.endswith(".bin"))
for n in names:
    with open(n, "ab") as f:
        f.write(b"!")
print(len(names), sum(os.path.getsize(n) for n in names))
"""
PLOT = """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(range(100), [i * i for i in range(100)])
fig.savefig("plot.png", dpi=100)
print("saved")
"""
BIG_BLOCK = hashlib.sha256(b"rce").digest()
BIG_REPEAT = 100 * MiB // len(BIG_BLOCK)
GEN_BIG = f"""\
import hashlib
with open("big.bin", "wb") as f:
    f.write(hashlib.sha256(b"rce").digest() * {BIG_REPEAT})
"""
BIG_APPEND = """\
import os
with open("big.bin", "ab") as f:
    f.write(b"!")
print(os.path.getsize("big.bin"))
"""
WRITE_20 = "for n, d in make_files().items():\n    open(n, 'wb').write(d)\n"


def _make_csv() -> bytes:
    namespace: dict[str, Any] = {}
    exec(GEN_CSV, namespace)
    data: bytes = namespace["make_csv"]()
    return data


def _make_20() -> dict[str, bytes]:
    namespace: dict[str, Any] = {}
    exec(GEN_20, namespace)
    files: dict[str, bytes] = namespace["make_files"]()
    return files


# --- measurement ---------------------------------------------------------------------


@dataclass
class Series:
    """Timings and failures of one side (rce or baseline) of one workload."""

    seconds: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def record(self, step: Callable[[], None]) -> float | None:
        """Time ``step``; count an exception as an error of its kind."""
        started = time.perf_counter()
        try:
            step()
        except Exception as exc:
            self.errors[error_kind(exc)] += 1
            if len(self.examples) < 3:
                self.examples.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            return None
        elapsed = time.perf_counter() - started
        self.seconds.append(elapsed)
        return elapsed

    def as_json(self) -> dict[str, Any]:
        """Percentiles, counts and example errors."""
        return {
            "n": len(self.seconds),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "examples": self.examples,
            **summarize(self.seconds),
        }


@dataclass
class Workload:
    """One workload: an rce iteration and the baseline code it is compared with."""

    name: str
    rce: Callable[[], None]
    baseline_code: str
    baseline_stdout: str
    iterations: int
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    warmup: bool = True


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


class Bench:
    """All workloads against one API, with one baseline image."""

    def __init__(
        self, client: RceClient, args: argparse.Namespace, workdir: Path, sampler: RssSampler | None
    ) -> None:
        self.client = client
        self.args = args
        self.workdir = workdir
        self.sampler = sampler
        self.label = f"org.rce.bench={os.getpid()}-{int(time.time())}"
        self.results: dict[str, dict[str, Any]] = {}

    # --- the baseline ---------------------------------------------------------------

    def baseline(self, code: str, expected: str) -> Callable[[], None]:
        """One bare ``docker run`` of ``code`` that must print ``expected``."""

        def step() -> None:
            run = bare_docker_run(self.args.image, code, self.label)
            if run.exit_code != 0 or run.stdout.strip() != expected:
                raise WrongAnswer(
                    f"baseline exit {run.exit_code}, stdout {run.stdout.strip()[:200]!r}, "
                    f"stderr {run.stderr[-300:]!r}"
                )

        return step

    def measure(self, work: Workload) -> None:
        """Warm up, then alternate rce and baseline iterations; store the result."""
        print(f"-- {work.name}: {work.iterations} iterations", file=sys.stderr, flush=True)
        base_step = self.baseline(work.baseline_code, work.baseline_stdout)
        warm = Series()
        for _ in range(self.args.warmup if work.warmup else 0):
            warm.record(work.rce)
            warm.record(base_step)
        rce, base = Series(), Series()
        for i in range(work.iterations):
            pair = ((rce, work.rce), (base, base_step))
            for series, step in pair if i % 2 == 0 else reversed(pair):
                series.record(step)
        self.results[work.name] = {
            "rce": rce.as_json(),
            "baseline": base.as_json(),
            "warmup_errors": dict(warm.errors),
            "warmup_examples": warm.examples,
            "note": work.note,
            **work.extra,
            "ratio_p50": _ratio(summarize(rce.seconds)["p50"], summarize(base.seconds)["p50"]),
            "ratio_p99": _ratio(summarize(rce.seconds)["p99"], summarize(base.seconds)["p99"]),
        }

    # --- rce iterations ----------------------------------------------------------------

    def exec_expect(self, code: str, expected: str) -> Callable[[], None]:
        """An exec that must print ``expected``."""
        return lambda: expect_stdout(self.client.exec(code), expected)

    def csv_round_trip(self, data: bytes) -> None:
        """Upload the CSV, exec reading it, download the summary it wrote."""
        up = self.client.upload("data.csv", data)
        answer = self.client.exec(CSV_READ, files=[up.ref()])
        expect_stdout(answer, "64000 50")
        out = output_file(answer, "summary.csv")
        body = self.client.download(out["session_id"], out["id"])
        if not body.startswith(b"grp,count,sum"):
            raise WrongAnswer(f"summary.csv starts with {body[:40]!r}")

    def plot_round_trip(self) -> None:
        """Exec that saves a PNG, then download it."""
        answer = self.client.exec(PLOT)
        expect_stdout(answer, "saved")
        out = output_file(answer, "plot.png")
        body = self.client.download(out["session_id"], out["id"])
        if not body.startswith(b"\x89PNG\r\n\x1a\n"):
            raise WrongAnswer(f"plot.png starts with {body[:16]!r}")

    def upload_session(self, files: dict[str, bytes]) -> list[Uploaded]:
        """Upload ``files`` into one storage session."""
        uploaded: list[Uploaded] = []
        for name, data in files.items():
            sid = uploaded[0].session_id if uploaded else None
            uploaded.append(self.client.upload(name, data, session_id=sid))
        return uploaded

    def sync_20(self, refs: list[dict[str, str]]) -> None:
        """Restore 20 files, change all of them, check all 20 synced back."""
        answer = self.client.exec(SYNC_20, files=refs)
        expect_stdout(answer, "20 2048020")
        names = {f.get("name") for f in answer.get("files") or ()}
        missing = {r["name"] for r in refs} - names
        if missing:
            raise WrongAnswer(f"changed files not synced back: {sorted(missing)}")

    def big_round_trip(self, path: Path, size: int, digest_after: str) -> None:
        """Upload 100 MiB, append a byte in the sandbox, download and verify it;
        record phase times and the API's RSS above idle."""
        idle = self.sampler.begin_window() if self.sampler else None
        phases: dict[str, float] = {}
        started = time.perf_counter()
        with path.open("rb") as fh:
            up = self.client.upload("big.bin", fh)
        phases["upload_s"] = time.perf_counter() - started
        answer = self.client.exec(BIG_APPEND, files=[up.ref()])
        phases["exec_s"] = time.perf_counter() - started - phases["upload_s"]
        expect_stdout(answer, str(size + 1))
        out = output_file(answer, "big.bin")
        got = self.client.download_digest(out["session_id"], out["id"])
        phases["download_s"] = time.perf_counter() - started - phases["upload_s"] - phases["exec_s"]
        if got != (size + 1, digest_after):
            raise WrongAnswer(f"big.bin came back as {got}, expected {(size + 1, digest_after)}")
        big = self.results.setdefault("_big", {"phases": [], "rss_above_idle": []})
        big["phases"].append(phases)
        if self.sampler and idle is not None:
            big["rss_above_idle"].append(self.sampler.end_window() - idle)

    # --- the workloads -----------------------------------------------------------------

    def workloads(self) -> list[Workload]:
        """Every per-iteration workload, in the order they run."""
        n, heavy, csv = self.args.iterations, self.args.heavy_iterations, _make_csv()
        files20 = _make_20()
        print("-- uploading 20 x 100 KiB into one session", file=sys.stderr, flush=True)
        refs20 = [u.ref() for u in self.upload_session(files20)]
        gen_note = "baseline generates the same input bytes inside the container first"
        return [
            Workload("hello", self.exec_expect(HELLO, "4"), HELLO, "4", n),
            Workload(
                "numpy_sum", self.exec_expect(NUMPY, "499999500000"), NUMPY, "499999500000", n
            ),
            Workload(
                "pandas_groupby_100k",
                self.exec_expect(PANDAS, "100 4999950000"),
                PANDAS,
                "100 4999950000",
                n,
            ),
            Workload(
                "csv_1mb_upload_exec_download",
                lambda: self.csv_round_trip(csv),
                GEN_CSV + "open('data.csv', 'wb').write(make_csv())\n" + CSV_READ,
                "64000 50",
                heavy,
                note=f"rce: upload {len(csv)} B + exec + download; {gen_note}",
                extra={"csv_bytes": len(csv)},
            ),
            Workload(
                "restore_20x100k",
                self.exec_expect_refs(LIST_20, "20 2048000", refs20),
                GEN_20 + WRITE_20 + LIST_20,
                "20 2048000",
                n,
                note=f"rce: 20 files[] refs restored per exec; {gen_note}",
            ),
            Workload(
                "matplotlib_png",
                self.plot_round_trip,
                PLOT,
                "saved",
                heavy,
                note="rce: exec + download of plot.png; baseline: savefig only",
            ),
            Workload(
                "sync_20x100k",
                lambda: self.sync_20(refs20),
                GEN_20 + WRITE_20 + SYNC_20,
                "20 2048020",
                heavy,
                note=f"rce: restore 20 refs, append to each, 20 files synced back; {gen_note}",
            ),
        ]

    def exec_expect_refs(
        self, code: str, expected: str, refs: list[dict[str, str]]
    ) -> Callable[[], None]:
        """An exec with ``files[]`` refs that must print ``expected``."""
        return lambda: expect_stdout(self.client.exec(code, files=refs), expected)

    def big_workload(self) -> Workload:
        """The 100 MiB restore+sync round trip (file written once on the host)."""
        path = self.workdir / "big.bin"
        with path.open("wb") as fh:
            fh.write(BIG_BLOCK * BIG_REPEAT)
        size = len(BIG_BLOCK) * BIG_REPEAT
        after = hashlib.sha256(BIG_BLOCK * BIG_REPEAT + b"!").hexdigest()
        return Workload(
            "big_100mib_upload_exec_download",
            lambda: self.big_round_trip(path, size, after),
            GEN_BIG + BIG_APPEND,
            str(size + 1),
            self.args.big_iterations,
            note="rce: upload 100 MiB, append 1 byte, sync back, streamed download + sha256; "
            "baseline generates the file inside the container (no transfer)",
            extra={"bytes": size},
            warmup=False,
        )

    # --- concurrency ---------------------------------------------------------------------

    def concurrency(self, clients: list[RceClient]) -> None:
        """``--concurrency`` workers of hello for ``--conc-seconds``, in slices that
        alternate rce and the bare docker run."""
        print(
            f"-- hello at concurrency {len(clients)} for {self.args.conc_seconds} s "
            "(+ the same for the baseline)",
            file=sys.stderr,
            flush=True,
        )
        rce_steps = [self.exec_step(c) for c in clients]
        base_steps = [self.baseline(HELLO, "4")] * len(clients)
        totals: dict[str, dict[str, Any]] = {
            "rce": {"ok": 0, "elapsed": 0.0, "series": Series()},
            "baseline": {"ok": 0, "elapsed": 0.0, "series": Series()},
        }
        rss_peak = 0
        remaining = self.args.conc_seconds
        while remaining > 0:
            chunk = min(self.args.conc_slice, remaining)
            if self.sampler:
                self.sampler.begin_window()
            _phase(rce_steps, chunk, totals["rce"])
            if self.sampler:
                rss_peak = max(rss_peak, self.sampler.end_window())
            if not self.args.no_conc_baseline:
                _phase(base_steps, chunk, totals["baseline"])
            remaining -= chunk
        self.results["concurrency"] = {
            side: {
                "workers": len(clients),
                "ok": t["ok"],
                "seconds": round(t["elapsed"], 2),
                "execs_per_s": t["ok"] / t["elapsed"] if t["elapsed"] else None,
                **t["series"].as_json(),
            }
            for side, t in totals.items()
        }
        self.results["concurrency"]["rss_peak"] = rss_peak if self.sampler else None

    def exec_step(self, client: RceClient) -> Callable[[], None]:
        """A hello exec on ``client``."""
        return lambda: expect_stdout(client.exec(HELLO), "4")

    def cleanup(self) -> None:
        """Remove any baseline container an interrupted run left behind."""
        remove_containers(containers_with_label(self.label))


def _phase(steps: list[Callable[[], None]], seconds: float, total: dict[str, Any]) -> None:
    """Run each step in its own thread, in a loop, until ``seconds`` pass."""
    series: Series = total["series"]
    lock = threading.Lock()
    ok = 0
    deadline = time.monotonic() + seconds

    def worker(step: Callable[[], None]) -> None:
        nonlocal ok
        while time.monotonic() < deadline:
            local = Series()
            elapsed = local.record(step)
            with lock:
                if elapsed is not None:
                    series.seconds.append(elapsed)
                    ok += 1
                series.errors.update(local.errors)
                series.examples.extend(local.examples[: max(0, 3 - len(series.examples))])

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total["ok"] += ok
    total["elapsed"] += time.monotonic() - started


# --- targets and the report ------------------------------------------------------------


def _target(
    name: str, value: float | None, limit: float, higher_is_better: bool = False, unit: str = ""
) -> dict[str, Any]:
    if value is None:
        verdict = "n/a"
    else:
        verdict = "PASS" if (value >= limit if higher_is_better else value <= limit) else "MISS"
    op = ">=" if higher_is_better else "<="
    shown = "n/a" if value is None else f"{value:.2f}{unit}"
    return {"target": f"{name} {op} {limit:g}{unit}", "measured": shown, "verdict": verdict}


def targets(results: dict[str, Any], rss: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each PASS, MISS or n/a."""
    hello, pandas = results.get("hello", {}), results.get("pandas_groupby_100k", {})
    conc = results.get("concurrency", {}).get("rce", {})
    conc_rss = results.get("concurrency", {}).get("rss_peak")
    big = results.get("_big", {}).get("rss_above_idle") or []
    errors = conc.get("errors") if conc else None
    return [
        _target("hello p50 / docker run p50", hello.get("ratio_p50"), 0.5, unit="x"),
        _target("hello p99 / docker run p99", hello.get("ratio_p99"), 1.0, unit="x"),
        _target("pandas p50 / docker run p50", pandas.get("ratio_p50"), 0.5, unit="x"),
        _target("concurrency 4 execs/s", conc.get("execs_per_s"), 10, higher_is_better=True),
        _target("concurrency 4 errors", None if errors is None else float(errors), 0),
        _target(
            "API RSS peak during concurrency (MiB)", None if not conc_rss else conc_rss / MiB, 150
        ),
        _target("API RSS above idle, 100 MiB transfer (MiB)", max(big) / MiB if big else None, 64),
        _target(
            "API RSS peak whole run (MiB)", rss["peak"] / MiB if rss.get("peak") else None, 150
        ),
    ]


def _row(name: str, r: dict[str, Any]) -> str:
    rce, base = r["rce"], r["baseline"]
    ratio = (
        f"{r['ratio_p50']:.2f}" if r.get("ratio_p50") else "n/a",
        f"{r['ratio_p99']:.2f}" if r.get("ratio_p99") else "n/a",
    )
    return (
        f"| {name} | {rce['n']} | {rce['errors']} | {ms(rce['p50'])} | {ms(rce['p90'])} | "
        f"{ms(rce['p99'])} | {base['errors']} | {ms(base['p50'])} | {ms(base['p90'])} | "
        f"{ms(base['p99'])} | {ratio[0]} | {ratio[1]} |"
    )


def render(report: dict[str, Any]) -> str:
    """The whole report as markdown."""
    results, rss = report["workloads"], report["rss"]
    lines = [
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in report["machine"].items()),
        "",
        "## Server",
        "",
        *(f"- {k}: {v}" for k, v in report["server"].items()),
        "",
        "## Latency (ms; baseline = bare `docker run --rm IMAGE python3 -c CODE`)",
        "",
        "| workload | n | rce err | rce p50 | rce p90 | rce p99 | base err | base p50 "
        "| base p90 | base p99 | p50 ratio | p99 ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        _row(k, v)
        for k, v in results.items()
        if not k.startswith("_") and "rce" in v and k != "concurrency"
    ]
    lines += ["", *(f"- {k}: {v['note']}" for k, v in results.items() if v.get("note"))]
    conc = results.get("concurrency")
    if conc:
        lines += [
            "",
            "## Concurrency (hello)",
            "",
            "| side | workers | ok | errors | seconds | execs/s | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for side in ("rce", "baseline"):
            c = conc[side]
            rate = "n/a" if c["execs_per_s"] is None else f"{c['execs_per_s']:.2f}"
            lines.append(
                f"| {side} | {c['workers']} | {c['ok']} | {c['errors']} | "
                f"{c['seconds']} | {rate} | {ms(c['p50'])} | {ms(c['p99'])} |"
            )
    big = results.get("_big")
    if big:
        lines += [
            "",
            "## 100 MiB round trip",
            "",
            *(
                f"- iteration {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items())
                for i, p in enumerate(big["phases"])
            ),
            f"- API RSS above idle: {[mib(v) for v in big['rss_above_idle']]}",
        ]
    lines += [
        "",
        "## API RSS",
        "",
        f"- start: {mib(rss.get('start'))}, peak: "
        f"{mib(rss.get('peak'))}, end: {mib(rss.get('end'))}",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *(f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in report["targets"]),
    ]
    return "\n".join(lines)


# --- wiring ------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--base-url", help="benchmark this API instead of starting the local one")
    p.add_argument(
        "--api-key", default=os.environ.get("CUSTOM_RCE_API_KEY"), help="X-API-Key for --base-url"
    )
    p.add_argument("--api-pid", type=int, help="with --base-url: the API's pid, for RSS")
    p.add_argument("--pool-size", type=int, help="RCE_POOL_SIZE of the local API")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="sandbox image (baseline and API)")
    p.add_argument("--iterations", type=int, default=20, help="light workloads")
    p.add_argument(
        "--heavy-iterations", type=int, default=8, help="CSV, matplotlib and 20-file sync workloads"
    )
    p.add_argument("--big-iterations", type=int, default=2, help="100 MiB round trips")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per side")
    p.add_argument(
        "--settle-seconds", type=float, default=5.0, help="idle time after start-up, untimed"
    )
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--conc-seconds", type=float, default=20.0)
    p.add_argument(
        "--conc-slice",
        type=float,
        default=5.0,
        help="rce and baseline alternate in slices of this many seconds",
    )
    p.add_argument("--no-conc-baseline", action="store_true")
    p.add_argument("--no-big", action="store_true", help="skip the 100 MiB workload")
    p.add_argument("--only", help="comma-separated workload names (plus 'concurrency', 'big')")
    p.add_argument("--json", help="also write the report as JSON here")
    return p.parse_args(argv)


def _local_settings(args: argparse.Namespace) -> dict[str, str]:
    settings = {
        "RCE_IMAGE_NAME": args.image,
        "RCE_MAX_FILE_BYTES": "200000000",
        "RCE_WORKSPACE_SIZE": "512m",
        "RCE_MAX_UPLOAD_BYTES": str(150 * MiB),
    }
    if args.pool_size is not None:
        settings["RCE_POOL_SIZE"] = str(args.pool_size)
    return settings


def _selected(args: argparse.Namespace, name: str) -> bool:
    return not args.only or name in {s.strip() for s in args.only.split(",")}


def run(
    args: argparse.Namespace,
    base_url: str,
    api_key: str,
    pid: int | None,
    workdir: Path,
    server: dict[str, Any],
) -> dict[str, Any]:
    """Run every selected workload; the report."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    time.sleep(args.settle_seconds)  # let a warm pool fill before anything is timed
    sampler = RssSampler(pid).start() if pid else None
    clients = [RceClient(base_url, api_key) for _ in range(max(1, args.concurrency))]
    bench = Bench(clients[0], args, workdir, sampler)
    try:
        for work in bench.workloads():
            if _selected(args, work.name):
                bench.measure(work)
        if _selected(args, "concurrency"):
            bench.concurrency(clients[: args.concurrency])
        if not args.no_big and _selected(args, "big"):
            bench.measure(bench.big_workload())
    finally:
        bench.cleanup()
        for c in clients:
            c.close()
    time.sleep(2)
    rss = {
        "start": sampler.start_rss if sampler else None,
        "peak": sampler.peak if sampler else None,
        "end": sampler.read() if sampler else None,
    }
    if sampler:
        sampler.stop()
    machine = machine_info()
    machine["load_avg_after_run"] = machine.pop("load_avg_1_5_15")
    report: dict[str, Any] = {
        "machine": {**machine, "load_avg_before_run": load_before},
        "server": server,
        "workloads": bench.results,
        "rss": rss,
        "args": vars(args),
    }
    report["targets"] = targets(bench.results, rss)
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0, or 1 when an rce request failed or answered wrongly (a MISSed
    target is reported, not an error), or 2 when the benchmark cannot run at all."""
    args = _parse_args(argv)
    reason = docker_available(args.image)
    if reason:
        print(f"bench: {reason}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="rce-bench-"))
    try:
        if args.base_url:
            server = {"base_url": args.base_url, "started_by_bench": False}
            report = run(args, args.base_url, args.api_key or "", args.api_pid, workdir, server)
        else:
            with LocalApi(workdir / "api", _local_settings(args)) as api:
                server = {
                    "base_url": api.base_url,
                    "started_by_bench": True,
                    "revision": source_revision(),
                    **api.effective_settings(),
                }
                report = run(args, api.base_url, api.api_key, api.pid, workdir, server)
    finally:
        remove_tree(workdir)
    print(render(report))
    write_json(args.json, report)
    return 1 if _rce_errors(report) else 0


def _rce_errors(report: dict[str, Any]) -> int:
    """Failed rce requests (errors and wrong answers); a MISS is not an error."""
    return sum(
        r.get("rce", {}).get("errors", 0) for k, r in report["workloads"].items() if k != "_big"
    )


if __name__ == "__main__":
    sys.exit(main())
