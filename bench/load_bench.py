"""rce under real load: back to back, paced and concurrent, beside the engine's ceiling.

    uv run python bench/load_bench.py                      # runc, and runsc when the engine has it
    uv run python bench/load_bench.py --runtimes runc --conc-seconds 10 --json load.json

For each runtime, once the machine is quiet (its busy CPU under 10 % of the cores
over 2 s, waiting up to 120 s: the previous runtime's clean-up is not measured with
the next), one API is started (``bench/_common.LocalApi``, default pool
settings plus ``RCE_RUNTIME``) and every workload (``hello``, ``pandas`` groupby)
runs in these slices, one after the other, never interleaved with anything else:

1. **burst**: one client, ``--burst`` (60) execs back to back, no pause, twice:
   ``burst1`` meets the pools at their floors; ``burst2`` comes once the pools
   have refilled to the target the first burst taught them (up to 60 s), as on a
   service that has seen such bursts before. The targets are checked on
   ``burst2``; both are reported;
2. **paced**: one client, ``--paced`` (10) execs with ``--think`` (1 s) between;
3. **concurrency** 1, 4 and 8 (``--conc``): that many clients loop for
   ``--conc-seconds``; execs/s, errors, latency percentiles. Each slice starts once
   the pools are full again (up to 120 s) and ``--settle-seconds`` more, so the work
   one slice deferred does not land in the next. The machine's CPU time (all of
   ``/proc/stat``'s busy time: API, engine, containers, this client) is counted from
   the slice's start until its pools are full again and settled, so the refills of
   the sandboxes the slice used are in it: **CPU per exec**. It also counts any
   growth of the pool targets the slice taught them (a CPU-bound slice grows the
   light target by tens of sandboxes, prepared once the slice is over), so the
   busy CPU of the slice alone is reported beside it: **window CPU per exec**;
4. **sustained**: 4 clients for ``--sustained-seconds`` (60): the same as a
   concurrency slice, long enough that the stock the pools held at its start
   serves a small part of it. Its share of the ceiling is the sustained figure.

Then, with the API idle and its pools full again (up to 180 s), the baselines in
their own slices:

5. **bare docker run**: ``docker run --rm --network none [--runtime R] IMAGE
   python3 -c CODE``,
   ``--bare`` (15) times back to back per workload;
6. **lifecycle ceiling**: through the Docker SDK, create + start + wait + remove
   of the same image with the sandbox's own limits and hardening
   (``runner._docker_config.host_config``) running the same code, in each
   concurrency slice and the sustained one, for as long. rce's concurrent throughput is reported as
   a share of it (for ``pandas``, a bare container that imports pandas and runs the
   groupby: reported, not a target; the data target is step 7's); its CPU per lifecycle
   beside rce's CPU per exec gives the **CPU share**: the share of the ceiling's rate
   rce would hold on a machine whose cores are the limit, once its pools are spent
   (a slice of ``--conc-seconds`` is partly served by sandboxes prepared before it);
7. **data sandbox preparation**: rce's own runner prepares warm data sandboxes
   (create, attach, start, the agent's READY once the data libraries are imported,
   remove) with 4 clients, in a slice as long as each 4-client slice: the rate the
   machine prepares data sandboxes at: the ceiling the targets hold data execs to;
8. **prepare**: the time to prepare one warm light and one warm data sandbox, and
   a cold start of each workload (what an exec finding an empty pool weighs
   against waiting for a sandbox being prepared).

The API's RSS is sampled throughout. Every answer is checked. The report prints
the figures and the targets with PASS/MISS side by side, per runtime.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import httpx
from _common import (
    DEFAULT_IMAGE,
    LocalApi,
    MiB,
    RceClient,
    RssSampler,
    busy_cpu_s,
    containers_with_label,
    error_kind,
    expect_stdout,
    machine_info,
    remove_containers,
    source_revision,
    summarize,
    write_json,
)

from runner import _docker_config as cfg
from runner.base import Language, Limits, RunRequest
from runner.docker import DockerSandbox

HELLO = "print(2+2)"
PANDAS = """\
import numpy as np
import pandas as pd
n = 100_000
df = pd.DataFrame({"k": np.arange(n) % 100, "v": np.arange(n, dtype=np.int64)})
g = df.groupby("k")["v"].agg(["sum", "mean", "count"])
print(len(g), int(g["sum"].sum()))
"""
WORKLOADS = {"hello": (HELLO, "4"), "pandas": (PANDAS, "100 4999950000")}
LABEL_KEY = "org.rce.load-bench"
#: Clients of the sustained slice (the issue's "sustained" figure is at concurrency 4).
SUSTAINED_CLIENTS = 4


# --- rce slices ----------------------------------------------------------------------


#: The machine is quiet when its busy CPU over ``QUIET_SAMPLE_S`` is below this share
#: of all its cores.
QUIET_SHARE = 0.10
QUIET_SAMPLE_S = 2.0


def wait_quiet(timeout_s: float) -> dict[str, float]:
    """Wait (up to ``timeout_s``) until the machine is quiet, so a runtime's slices do
    not share the cores with the work the previous one left (its containers' removal,
    the engine's clean-up); the wait and the last busy share, for the report."""
    started = time.monotonic()
    cores = os.cpu_count() or 1
    while True:
        before = busy_cpu_s()
        time.sleep(QUIET_SAMPLE_S)
        share = (busy_cpu_s() - before) / (QUIET_SAMPLE_S * cores)
        waited = time.monotonic() - started
        if share < QUIET_SHARE or waited >= timeout_s:
            return {"waited_s": round(waited, 1), "busy_share": round(share, 3)}


def _timed_exec(client: RceClient, code: str, expected: str) -> float:
    started = time.perf_counter()
    answer = client.exec(code)
    elapsed = time.perf_counter() - started
    expect_stdout(answer, expected)
    return elapsed


def sequential(
    api: LocalApi, code: str, expected: str, count: int, think_s: float
) -> dict[str, Any]:
    """One client, ``count`` execs, ``think_s`` between them."""
    samples: list[float] = []
    errors: dict[str, int] = {}
    first: dict[str, str] = {}
    with RceClient(api.base_url, api.api_key) as client:
        for i in range(count):
            if i and think_s:
                time.sleep(think_s)
            try:
                samples.append(_timed_exec(client, code, expected))
            except Exception as exc:
                errors[error_kind(exc)] = errors.get(error_kind(exc), 0) + 1
                first.setdefault(error_kind(exc), str(exc)[:300])
    return {
        "n": count,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "first_errors": first,
        **summarize(samples),
    }


def loop_for(workers: int, seconds: float, one: Callable[[int], float]) -> dict[str, Any]:
    """``workers`` threads call ``one(worker)`` until ``seconds`` pass; throughput and
    latency of the calls that started in the window."""
    samples: list[float] = []
    errors: dict[str, int] = {}
    first: dict[str, str] = {}
    lock = threading.Lock()
    start = time.perf_counter()
    end = start + seconds

    def work(worker: int) -> None:
        while time.perf_counter() < end:
            try:
                took = one(worker)
            except Exception as exc:
                with lock:
                    errors[error_kind(exc)] = errors.get(error_kind(exc), 0) + 1
                    first.setdefault(error_kind(exc), str(exc)[:300])
                continue
            with lock:
                samples.append(took)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {
        "workers": workers,
        "ok": len(samples),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "first_errors": first,
        "seconds": round(elapsed, 2),
        "per_s": round(len(samples) / elapsed, 2),
        **summarize(samples),
    }


def concurrent(
    api: LocalApi, code: str, expected: str, workers: int, seconds: float
) -> dict[str, Any]:
    clients = [RceClient(api.base_url, api.api_key) for _ in range(workers)]
    try:
        return loop_for(workers, seconds, lambda w: _timed_exec(clients[w], code, expected))
    finally:
        for client in clients:
            client.close()


def pool_metrics(api: LocalApi) -> dict[str, float]:
    """The ``rce_pool_*`` series of ``/metrics``."""
    response = httpx.get(f"{api.base_url}/metrics", headers={"X-API-Key": api.api_key})
    out: dict[str, float] = {}
    for line in response.text.splitlines():
        if line.startswith("rce_pool_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name.removesuffix("_total")] = float(value)
    return out


def wait_pools_full(api: LocalApi, timeout_s: float) -> float:
    """Wait until every pool holds its target (or ``timeout_s``); the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        got = pool_metrics(api)
        if all(
            got.get(f"rce_pool_size_{f}", 0) >= got.get(f"rce_pool_target_{f}", 0)
            for f in ("light", "data")
        ):
            break
        time.sleep(0.25)
    return round(time.perf_counter() - started, 2)


def pool_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Hits/misses/waits during a slice; targets and sizes at its end."""
    out = {}
    for name, value in after.items():
        if any(part in name for part in ("hits", "misses", "waited")):
            out[name] = value - before.get(name, 0.0)
        elif "target" in name or "size" in name:
            out[name] = value
    return out


# --- baseline slices -------------------------------------------------------------------


def bare_runs(image: str, runtime: str | None, code: str, expected: str, n: int) -> dict[str, Any]:
    """``docker run --rm`` back to back."""
    # No network, like a sandbox (and independent of the engine's bridge).
    argv = ["docker", "run", "--rm", "--network", "none", "--label", f"{LABEL_KEY}=bare"]
    if runtime:
        argv += ["--runtime", runtime]
    samples, errors = [], 0
    for _ in range(n):
        started = time.perf_counter()
        proc = subprocess.run(
            [*argv, image, "python3", "-c", code], capture_output=True, text=True, check=False
        )
        took = time.perf_counter() - started
        if proc.returncode == 0 and proc.stdout.strip() == expected:
            samples.append(took)
        else:
            errors += 1
    return {"n": n, "errors": errors, **summarize(samples)}


class Lifecycle:
    """create + start + wait + remove through the SDK, with the sandbox's limits."""

    def __init__(self, image: str, runtime: str | None) -> None:
        self.api = docker.from_env().api
        key = cfg.container_key(image, Limits(), gpu=False, runtime=runtime)
        self.host_config = cfg.host_config(key)
        self.image = image

    def one(self, code: str, expected: str) -> float:
        started = time.perf_counter()
        created = self.api.create_container(
            self.image,
            ["python3", "-c", code],
            user=cfg.SANDBOX_USER,
            working_dir=cfg.WORKDIR,
            labels={LABEL_KEY: "ceiling"},
            network_disabled=True,
            host_config=self.host_config,
        )
        cid = created["Id"]
        try:
            self.api.start(cid)
            status = self.api.wait(cid, timeout=120)
            if status.get("StatusCode") != 0:
                raise RuntimeError(f"exit {status}")
        finally:
            self.api.remove_container(cid, force=True)
        # Output is not kept (LogConfig none, as for a sandbox): the exit code checks it.
        del expected
        return time.perf_counter() - started


class DataPreparation:
    """The lifecycle of a warm data sandbox, through rce's own runner: create,
    attach, start, wait for its agent's READY (the data libraries imported), remove.
    The rate the machine prepares data sandboxes at: the issue's ceiling for data
    execs, which each use one."""

    def __init__(self, image: str, runtime: str | None) -> None:
        self.box = DockerSandbox(image=image, runtime=runtime, labels={LABEL_KEY: "ceiling"})
        self.key = cfg.container_key(image, Limits(), gpu=False, runtime=runtime)

    def one(self) -> float:
        started = time.perf_counter()
        container = self.box._create_pooled(self.key, flavour=cfg.Flavour.DATA)
        container.removed = True
        container.stream.close()
        self.box._remove(container.name)  # inline: the removal is part of the lifecycle
        return time.perf_counter() - started

    def close(self) -> None:
        self.box.close()


def prepare_times(image: str, runtime: str | None, n: int) -> dict[str, Any]:
    """Seconds to prepare a warm LIGHT and DATA sandbox, and a cold run of each workload."""
    box = DockerSandbox(image=image, runtime=runtime, labels={LABEL_KEY: "prepare"})
    key = cfg.container_key(image, Limits(), gpu=False, runtime=runtime)
    out: dict[str, Any] = {}
    try:
        for flavour in (cfg.Flavour.LIGHT, cfg.Flavour.DATA):
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                container = box._create_pooled(key, flavour=flavour)
                samples.append(time.perf_counter() - started)
                box._discard(container)
            out[f"prepare_{flavour.value}"] = summarize(samples)
        for name, (code, expected) in WORKLOADS.items():
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                result = box.run(RunRequest(language=Language.PYTHON, code=code))
                samples.append(time.perf_counter() - started)
                if result.stdout.strip() != expected:
                    raise RuntimeError(f"cold {name}: {result.stdout!r} {result.stderr[-300:]!r}")
            out[f"cold_{name}"] = summarize(samples)
    finally:
        box.close()
    return out


# --- one runtime -----------------------------------------------------------------------


def rce_slice(
    api: LocalApi,
    rss: RssSampler,
    code: str,
    expected: str,
    workers: int,
    seconds: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One concurrency slice, started settled (the pools refilled and the work the
    previous slice deferred, refills and removals, done). ``cpu_window_s`` is the
    machine's busy CPU during the slice; ``cpu_s`` adds the refills of what it used,
    any growth of the pool targets, and its deferred removals."""
    settled_s = wait_pools_full(api, 120.0)
    time.sleep(args.settle_seconds)
    before = pool_metrics(api)
    rss.begin_window()
    cpu_start = busy_cpu_s()
    got = concurrent(api, code, expected, workers, seconds)
    got["cpu_window_s"] = round(busy_cpu_s() - cpu_start, 2)
    got["rss_peak"] = rss.end_window()
    got["pool"] = pool_delta(before, pool_metrics(api))
    got["settled_s"] = settled_s
    got["refill_s"] = wait_pools_full(api, 120.0)
    time.sleep(args.settle_seconds)
    got["cpu_s"] = round(busy_cpu_s() - cpu_start, 2)
    return got


def run_runtime(args: argparse.Namespace, runtime: str | None) -> dict[str, Any]:
    name = runtime or "runc"
    report: dict[str, Any] = {"runtime": name, "rce": {}, "baseline": {}}
    report["quiet_before"] = wait_quiet(120.0)
    print(f"[{name}] machine quiet: {report['quiet_before']}", flush=True)
    settings = {"RCE_LOG_LEVEL": "WARNING"}
    if runtime:
        settings["RCE_RUNTIME"] = runtime
    with tempfile.TemporaryDirectory(prefix="rce-load-") as tmp:
        api = LocalApi(Path(tmp) / "api", settings=settings)
        report["settings"] = api.effective_settings()
        with api:
            rss = RssSampler(api.pid).start()
            time.sleep(args.settle_seconds)
            report["rss_start"] = rss.read()
            for wname, (code, expected) in WORKLOADS.items():
                print(f"[{name}] {wname}: warm-up, burst of {args.burst}", flush=True)
                sequential(api, code, expected, 2, 0.0)  # untimed warm-up
                time.sleep(args.settle_seconds)
                slices: dict[str, Any] = {}
                for burst in ("burst1", "burst2"):
                    before = pool_metrics(api)
                    slices[burst] = sequential(api, code, expected, args.burst, 0.0)
                    slices[burst]["pool"] = pool_delta(before, pool_metrics(api))
                    slices[burst]["refill_s"] = wait_pools_full(api, 60.0)
                print(f"[{name}] {wname}: paced, {args.think} s think", flush=True)
                before = pool_metrics(api)
                slices["paced"] = sequential(api, code, expected, args.paced, args.think)
                slices["paced"]["pool"] = pool_delta(before, pool_metrics(api))
                runs = [(f"c{w}", w, args.conc_seconds) for w in args.conc]
                if args.sustained_seconds > 0:
                    runs.append(("sustained", SUSTAINED_CLIENTS, args.sustained_seconds))
                for slice_name, workers, seconds in runs:
                    print(f"[{name}] {wname}: {slice_name}, {workers} clients", flush=True)
                    slices[slice_name] = rce_slice(api, rss, code, expected, workers, seconds, args)
                report["rce"][wname] = slices
            report["rss_peak"] = rss.peak
            report["rss_end"] = rss.read()
            rss.stop()
            # The API stays up but idle while the baselines run: its pools refilled
            # first (a refill would share the cores with the baseline).
            report["settled_before_baseline_s"] = wait_pools_full(api, 180.0)
            time.sleep(args.settle_seconds)
            lifecycle = Lifecycle(args.image, runtime)
            for wname, (code, expected) in WORKLOADS.items():
                print(f"[{name}] {wname}: bare docker run x{args.bare}", flush=True)
                base: dict[str, Any] = {
                    "bare": bare_runs(args.image, runtime, code, expected, args.bare)
                }
                for slice_name, workers, seconds in runs:
                    print(f"[{name}] {wname}: lifecycle ceiling, {slice_name}", flush=True)
                    cpu_start = busy_cpu_s()
                    base[slice_name] = loop_for(
                        workers, seconds, lambda _w, c=code, e=expected: lifecycle.one(c, e)
                    )
                    base[slice_name]["cpu_s"] = round(busy_cpu_s() - cpu_start, 2)
                report["baseline"][wname] = base
            # Data execs against the rate the machine prepares data sandboxes at.
            preparation = DataPreparation(args.image, runtime)
            try:
                for slice_name, workers, seconds in runs:
                    if workers != SUSTAINED_CLIENTS:
                        continue
                    print(f"[{name}] data sandbox preparation, {slice_name}", flush=True)
                    cpu_start = busy_cpu_s()
                    got = loop_for(workers, seconds, lambda _w: preparation.one())
                    got["cpu_s"] = round(busy_cpu_s() - cpu_start, 2)
                    report["baseline"].setdefault("data_prepare", {})[slice_name] = got
            finally:
                preparation.close()
        print(f"[{name}] prepare times", flush=True)
        report["prepare"] = prepare_times(args.image, runtime, args.prepare)
    return report


# --- report ----------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def targets(rep: dict[str, Any], conc: list[int]) -> list[tuple[str, str, str]]:
    rce, base = rep["rce"], rep["baseline"]
    rows: list[tuple[str, str, str]] = []

    def row(
        label: str,
        value: float | None,
        limit: float,
        *,
        at_most: bool = True,
        fmt: str = "{:.2f}",
        reported: bool = False,
    ) -> None:
        """One target; ``reported``: a figure printed beside the targets, not one."""
        if value is None:
            rows.append((label, "n/a", "n/a"))
            return
        ok = value <= limit if at_most else value >= limit
        verdict = "PASS" if ok else "MISS"
        if reported:
            verdict = f"reported ({'above' if ok else 'below'} {limit})"
        rows.append((label, fmt.format(value), verdict))

    hello, pandas = rce["hello"], rce["pandas"]
    bare_hello, bare_pandas = base["hello"]["bare"], base["pandas"]["bare"]
    row("burst hello p50 (ms) <= 40", _ms_f(hello["burst2"]["p50"]), 40, fmt="{:.0f}")
    row("burst hello p99 / bare p50 <= 0.5", _ratio(hello["burst2"]["p99"], bare_hello["p50"]), 0.5)
    row(
        "burst pandas p50 / bare p50 <= 0.5",
        _ratio(pandas["burst2"]["p50"], bare_pandas["p50"]),
        0.5,
    )
    row(
        "paced pandas p50 / bare p50 <= 0.15",
        _ratio(pandas["paced"]["p50"], bare_pandas["p50"]),
        0.15,
    )
    if 4 in conc:
        for slice_name in ("c4", "sustained"):
            for wname in ("hello", "pandas"):
                if slice_name not in rce[wname]:
                    continue
                got, ceiling = rce[wname][slice_name], base[wname][slice_name]
                name = f"c4 {wname}" if slice_name == "c4" else f"sustained c4 {wname}"
                lasted = "" if slice_name == "c4" else f" ({got['seconds']:.0f} s)"
                # Data execs have their target against the rate data sandboxes are
                # prepared at (below); a bare pandas container is reported beside it.
                row(
                    f"{name}{lasted} execs/s / ceiling >= 0.95",
                    _ratio(got["per_s"], ceiling["per_s"]),
                    0.95,
                    at_most=False,
                    reported=wname == "pandas",
                )
                row(f"{name} errors = 0", float(got["errors"]), 0, fmt="{:.0f}")
        for slice_name, c in base.get("data_prepare", {}).items():
            row(
                f"{slice_name} pandas execs/s / data sandboxes prepared/s >= 0.95",
                _ratio(rce["pandas"][slice_name]["per_s"], c["per_s"]),
                0.95,
                at_most=False,
            )
        peak = max(
            rce[w][k]["rss_peak"]
            for w in ("hello", "pandas")
            for k in ("c4", "sustained")
            if k in rce[w]
        )
        row("c4 API RSS peak (MiB) <= 150", peak / MiB, 150, fmt="{:.1f}")
    if 8 in conc:
        for wname in ("hello", "pandas"):
            row(f"c8 {wname} errors = 0", float(rce[wname]["c8"]["errors"]), 0, fmt="{:.0f}")
    return rows


def cpu_per_exec(got: dict[str, Any], key: str = "cpu_s") -> float | None:
    """Busy CPU seconds (``key``) of a concurrency slice per successful exec (or
    lifecycle)."""
    return got[key] / got["ok"] if got.get(key) is not None and got["ok"] else None


def _ms_f(value: float | None) -> float | None:
    return None if value is None else value * 1000


def print_report(reports: list[dict[str, Any]], meta: dict[str, Any], conc: list[int]) -> None:
    print("\n## Machine\n")
    for key, value in meta.items():
        print(f"- {key}: {value}")
    for rep in reports:
        rt = rep["runtime"]
        print(f"\n## Runtime {rt}\n")
        print(f"- settings: {rep['settings']}")
        quiet = rep.get("quiet_before", {})
        print(
            f"- machine before it: waited {quiet.get('waited_s')} s for it to be quiet; "
            f"busy share {quiet.get('busy_share')} of the cores"
        )
        print(
            f"- API RSS: start {rep['rss_start'] / MiB:.1f} MiB, peak "
            f"{rep['rss_peak'] / MiB:.1f} MiB, end {rep['rss_end'] / MiB:.1f} MiB"
        )
        print("\n### Sequential (one client; ms)\n")
        print(
            "| workload | slice | n | err | p50 | p90 | p99 | bare p50 | bare p99 | "
            "p50/bare | p99/bare p50 | pool hits | misses | waited | target l/d |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for wname in WORKLOADS:
            bare = rep["baseline"][wname]["bare"]
            for slice_name in ("burst1", "burst2", "paced"):
                s = rep["rce"][wname][slice_name]
                pool = s["pool"]
                hits = pool.get("rce_pool_hits_light", 0) + pool.get("rce_pool_hits_data", 0)
                miss = pool.get("rce_pool_misses_light", 0) + pool.get("rce_pool_misses_data", 0)
                waited = pool.get("rce_pool_waited_light", 0) + pool.get("rce_pool_waited_data", 0)
                r50, r99 = _ratio(s["p50"], bare["p50"]), _ratio(s["p99"], bare["p50"])
                print(
                    f"| {wname} | {slice_name} | {s['n']} | {s['errors']} | {_ms(s['p50'])} | "
                    f"{_ms(s['p90'])} | {_ms(s['p99'])} | {_ms(bare['p50'])} | "
                    f"{_ms(bare['p99'])} | {_fmt(r50)} | {_fmt(r99)} | {hits:.0f} | "
                    f"{miss:.0f} | {waited:.0f} | {pool.get('rce_pool_target_light', 0):.0f}/"
                    f"{pool.get('rce_pool_target_data', 0):.0f} |"
                )
        print("\n### Concurrent (execs/s; latency ms) beside the lifecycle ceiling\n")
        print(
            "| workload | clients | rce ok | err | rce/s | p50 | p90 | p99 | ceiling/s | "
            "ceiling p50 | rce share | CPU/exec ms | window CPU/exec ms | ceiling CPU ms | "
            "CPU share | API RSS peak |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for wname in WORKLOADS:
            names = [f"c{w}" for w in conc] + (
                ["sustained"] if "sustained" in rep["rce"][wname] else []
            )
            for slice_name in names:
                s, c = rep["rce"][wname][slice_name], rep["baseline"][wname][slice_name]
                share = _ratio(s["per_s"], c["per_s"])
                rce_cpu, ceiling_cpu = cpu_per_exec(s), cpu_per_exec(c)
                window_cpu = cpu_per_exec(s, "cpu_window_s")
                clients = (
                    f"{s['workers']}" if slice_name != "sustained" else f"{s['workers']} sustained"
                )
                print(
                    f"| {wname} | {clients} | {s['ok']} | {s['errors']} | {s['per_s']} | "
                    f"{_ms(s['p50'])} | {_ms(s['p90'])} | {_ms(s['p99'])} | {c['per_s']} | "
                    f"{_ms(c['p50'])} | {_fmt(share)} | {_ms(rce_cpu)} | {_ms(window_cpu)} | "
                    f"{_ms(ceiling_cpu)} | {_fmt(_ratio(ceiling_cpu, rce_cpu))} | "
                    f"{s['rss_peak'] / MiB:.1f} MiB |"
                )
        prep = rep["baseline"].get("data_prepare", {})
        if prep:
            print("\n### Data execs beside the preparation of data sandboxes (4 clients)\n")
            print(
                "| slice | rce pandas/s | data sandboxes prepared/s | share | "
                "prepare p50 ms | CPU per preparation ms |"
            )
            print("|---|---|---|---|---|---|")
            for slice_name, c in prep.items():
                s = rep["rce"]["pandas"][slice_name]
                print(
                    f"| {slice_name} | {s['per_s']} | {c['per_s']} | "
                    f"{_fmt(_ratio(s['per_s'], c['per_s']))} | {_ms(c['p50'])} | "
                    f"{_ms(cpu_per_exec(c))} |"
                )
        print("\n### Preparing a sandbox (ms)\n")
        print("| what | p50 | p90 | max |")
        print("|---|---|---|---|")
        for key, s in rep["prepare"].items():
            print(f"| {key} | {_ms(s['p50'])} | {_ms(s['p90'])} | {_ms(s['max'])} |")
        for wname, slices in rep["rce"].items():
            for slice_name, got in slices.items():
                for kind, message in got.get("first_errors", {}).items():
                    print(f"- error {wname}/{slice_name} {kind}: {message}")
        print("\n### Targets\n")
        print("| target | measured | verdict |")
        print("|---|---|---|")
        for label, value, verdict in targets(rep, conc):
            print(f"| {label} | {value} | {verdict} |")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def engine_runtimes() -> list[str]:
    out = subprocess.run(
        ["docker", "info", "--format", "{{json .Runtimes}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return sorted(__import__("json").loads(out.stdout or "{}")) if out.returncode == 0 else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=os.environ.get("RCE_IMAGE_NAME") or DEFAULT_IMAGE)
    parser.add_argument(
        "--runtimes",
        default="auto",
        help="comma list (runc,runsc) or auto: runc, and runsc when listed",
    )
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument("--paced", type=int, default=10)
    parser.add_argument("--think", type=float, default=1.0)
    parser.add_argument("--conc", default="1,4,8")
    parser.add_argument("--conc-seconds", type=float, default=15.0)
    parser.add_argument(
        "--sustained-seconds",
        type=float,
        default=60.0,
        help="length of the sustained slice (4 clients, rce and ceiling); 0 skips it",
    )
    parser.add_argument("--bare", type=int, default=15)
    parser.add_argument("--prepare", type=int, default=5)
    parser.add_argument("--settle-seconds", type=float, default=5.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    args.conc = [int(c) for c in args.conc.split(",") if c]
    available = engine_runtimes()
    if args.runtimes == "auto":
        wanted = ["runc"] + (["runsc"] if "runsc" in available else [])
        if "runsc" not in available:
            print("runsc is not registered on this engine: runc only", flush=True)
    else:
        wanted = [r for r in args.runtimes.split(",") if r]
    meta = {
        **machine_info(),
        "revision": source_revision(),
        "image": args.image,
        "engine_runtimes": available,
        "load_avg_before": list(os.getloadavg()),
    }
    reports = []
    try:
        for runtime in wanted:
            reports.append(run_runtime(args, None if runtime == "runc" else runtime))
    finally:
        leftovers = containers_with_label(LABEL_KEY)
        if leftovers:
            remove_containers(leftovers)
    meta["load_avg_after"] = list(os.getloadavg())
    print_report(reports, meta, args.conc)
    write_json(args.json, {"machine": meta, "runtimes": reports})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
