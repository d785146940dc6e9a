"""A bounded soak through HTTP: K clients for T seconds against the API.

Each client loops over a random mix of execs (some print a value that depends on
the request, some write files, some fail or time out on purpose), uploads,
downloads (the bytes are checked by SHA-256), listings and execs that read an
earlier file through ``files[]``. A 2xx answer with the wrong content counts as a
wrong answer. At the end it reports requests, errors by kind, the API's RSS, and
whether any sandbox container (label ``org.rce.service=rce``) or temporary file
(the API runs with a private ``TMPDIR``; the folder store's ``.tmp-*``) is left.

    uv run python bench/soak.py                          # 4 clients, 180 s
    uv run python bench/soak.py --seconds 20 --json soak.json

Exit status: 0 clean; 1 on any 5xx, wrong answer, transport error, other
non-throttling 4xx, leftover container or temp file; 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import secrets
import signal
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
    SERVICE_LABEL,
    LocalApi,
    RceClient,
    RssSampler,
    Uploaded,
    WrongAnswer,
    container_configs,
    containers_with_label,
    docker_available,
    error_kind,
    expect_stdout,
    leftover_files,
    machine_info,
    mib,
    output_file,
    remove_tree,
    sha256_hex,
    source_revision,
    summarize,
    tag_image,
    untag_image,
    write_json,
)

EXEC_ID_LABEL = "org.rce.exec-id"
UPLOAD_SIZES = (1, 1000, 64 * 1024, 300 * 1024, 1536 * 1024)
WRITE_SIZES = (10, 1000, 100 * 1024, 1536 * 1024)
# op name -> weight
MIX = {
    "exec_print": 3,
    "exec_write": 2,
    "exec_fail": 1,
    "exec_timeout": 1,
    "exec_read": 2,
    "upload": 2,
    "download": 3,
    "list": 1,
}


class Registry:
    """Files the API stored during the soak, shared by all clients."""

    def __init__(self, cap: int = 500) -> None:
        self._files: list[Uploaded] = []
        self._lock = threading.Lock()
        self._cap = cap

    def add(self, item: Uploaded) -> None:
        """Remember a stored file (the oldest is forgotten past the cap)."""
        with self._lock:
            self._files.append(item)
            if len(self._files) > self._cap:
                self._files.pop(0)

    def pick(self, rng: random.Random) -> Uploaded | None:
        """A random stored file, or None before the first one."""
        with self._lock:
            return rng.choice(self._files) if self._files else None


@dataclass
class Stats:
    """Counters shared by all clients."""

    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    errors_by_op: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, op: str, step: Callable[[], None]) -> None:
        """Run one op; record its latency or its error kind."""
        started = time.perf_counter()
        try:
            step()
        except Exception as exc:  # every failure is counted, the soak goes on
            self._fail(op, exc)
            return
        with self.lock:
            self.ops[op] += 1
            self.latencies.setdefault(op, []).append(time.perf_counter() - started)

    def _fail(self, op: str, exc: Exception) -> None:
        kind = error_kind(exc)
        with self.lock:
            self.ops[op] += 1
            self.errors[kind] += 1
            self.errors_by_op[f"{op}:{kind}"] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{op}: {type(exc).__name__}: {str(exc)[:400]}")


def _block_data(token: str, size: int) -> bytes:
    block = hashlib.sha256(token.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


class Worker:
    """One client: a loop of random operations until the deadline."""

    def __init__(
        self, client: RceClient, registry: Registry, stats: Stats, seed: int, deadline: float
    ) -> None:
        self.client = client
        self.registry = registry
        self.stats = stats
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.ops: dict[str, Callable[[], None]] = {
            "exec_print": self.exec_print,
            "exec_write": self.exec_write,
            "exec_fail": self.exec_fail,
            "exec_timeout": self.exec_timeout,
            "exec_read": self.exec_read,
            "upload": self.upload,
            "download": self.download,
            "list": self.list_files,
        }

    def loop(self) -> None:
        """Run random operations until the deadline (an op in flight finishes)."""
        names, weights = list(MIX), list(MIX.values())
        while time.monotonic() < self.deadline:
            op = self.rng.choices(names, weights)[0]
            self.stats.run(op, self.ops[op])

    def exec_print(self) -> None:
        """The answer depends on the request, so crossed answers are caught."""
        n = self.rng.randrange(1, 10**6)
        expect_stdout(self.client.exec(f"print(sum(range({n})))"), str(n * (n - 1) // 2))

    def exec_write(self) -> None:
        """Write a file of known bytes; the answer must list it."""
        token, size = f"{self.rng.getrandbits(64):016x}", self.rng.choice(WRITE_SIZES)
        name = f"out_{token}.bin"
        code = (
            "import hashlib\n"
            f"block = hashlib.sha256({token!r}.encode()).digest()\n"
            f"data = (block * ({size} // len(block) + 1))[:{size}]\n"
            f"open({name!r}, 'wb').write(data)\n"
            "print(hashlib.sha256(data).hexdigest())\n"
        )
        digest = sha256_hex(_block_data(token, size))
        answer = self.client.exec(code)
        expect_stdout(answer, digest)
        out = output_file(answer, name)
        self.registry.add(Uploaded(out["session_id"], out["id"], name, size, digest))

    def exec_fail(self) -> None:
        """A failing program is a 200 with its exit code and stderr."""
        code = self.rng.randrange(1, 100)
        answer = self.client.exec(f"import sys\nprint('x')\nraise SystemExit({code})")
        if answer.get("exit_code") != code or str(answer.get("stdout")).strip() != "x":
            raise WrongAnswer(f"expected exit {code} and stdout 'x': {_brief(answer)}")

    def exec_timeout(self) -> None:
        """A run past its timeout is a 200 marked timed out."""
        answer = self.client.exec(
            "import time\nprint('start', flush=True)\ntime.sleep(30)", timeout_ms=400
        )
        if answer.get("timed_out") is not True:
            raise WrongAnswer(f"expected timed_out: {_brief(answer)}")

    def exec_read(self) -> None:
        """Restore a stored file through ``files[]`` and hash it in the sandbox."""
        known = self.registry.pick(self.rng)
        if known is None:
            return self.upload()
        code = (
            f"import hashlib\nprint(hashlib.sha256(open({known.name!r}, 'rb').read()).hexdigest())"
        )
        answer = self.client.exec(code, files=[known.ref()])
        expect_stdout(answer, known.sha256)
        echoed = [f for f in answer.get("files") or () if f.get("name") == known.name]
        if any(not f.get("inherited") for f in echoed):
            raise WrongAnswer(f"unchanged input {known.name} returned as a new output")
        return None

    def upload(self) -> None:
        """Upload random bytes; they are checked on later downloads and reads."""
        data = self.rng.randbytes(self.rng.choice(UPLOAD_SIZES))
        name = f"up_{self.rng.getrandbits(48):012x}.dat"
        self.registry.add(self.client.upload(name, data))

    def download(self) -> None:
        """Download a stored file; size and SHA-256 must match."""
        known = self.registry.pick(self.rng)
        if known is None:
            return self.upload()
        got = self.client.download_digest(known.session_id, known.file_id)
        if got != (known.size, known.sha256):
            raise WrongAnswer(f"download of {known.name}: {got} != {(known.size, known.sha256)}")
        return None

    def list_files(self) -> None:
        """The session listing names the file, with its size."""
        known = self.registry.pick(self.rng)
        if known is None:
            return self.upload()
        items = self.client.list_files(known.session_id, "summary")
        prefix = f"{known.session_id}/{known.file_id}"
        found = [i for i in items if str(i.get("name", "")).startswith(prefix)]
        if (
            len(found) != 1
            or found[0].get("size") != known.size
            or not found[0].get("lastModified")
        ):
            raise WrongAnswer(f"listing of {known.session_id} lacks {prefix}: {items[:5]}")
        return None


def _brief(answer: dict[str, Any]) -> str:
    keep = ("exit_code", "timed_out", "stdout", "stderr")
    return str({k: str(answer.get(k))[:120] for k in keep})


# --- the run -----------------------------------------------------------------------------


def soak(base_url: str, api_key: str, args: argparse.Namespace) -> tuple[Stats, int]:
    """Run the clients until the deadline; the stats and the request count."""
    registry, stats = Registry(), Stats()
    deadline = time.monotonic() + args.seconds
    clients = [
        RceClient(base_url, api_key, timeout_s=120, request_id_prefix=f"{args.run_id}-{i}-")
        for i in range(args.clients)
    ]
    workers = [
        Worker(c, registry, stats, args.seed * 1000 + i, deadline) for i, c in enumerate(clients)
    ]
    threads = [threading.Thread(target=w.loop, name=f"soak-{i}") for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    return stats, sum(c.requests for c in clients)


def describe_leftovers(ids: list[str], image_tag: str | None) -> tuple[list[dict[str, str]], int]:
    """The leftovers this soak's API created (``image_tag`` names the image only it
    uses), and how many other new sandbox containers were ignored. Without a tag
    (``--base-url``) every new one counts."""
    ours, others = [], 0
    for cid, config in container_configs(ids).items():
        if image_tag is not None and config["image"] != image_tag:
            others += 1
            continue
        exec_id = config["labels"].get(EXEC_ID_LABEL, "")
        ours.append({"id": cid[:12], "exec_id": exec_id, "image": config["image"]})
    return ours, others


def _failures(report: dict[str, Any]) -> list[str]:
    errors: dict[str, int] = report["errors_by_kind"]
    reasons = []
    if report["http_5xx"]:
        reasons.append(f"{report['http_5xx']} responses with a 5xx status")
    if report["wrong_answers"]:
        reasons.append(f"{report['wrong_answers']} wrong answers")
    other = {k: v for k, v in errors.items() if k not in ("http_5xx", "wrong_answer", "http_429")}
    if other:
        reasons.append(f"other errors: {other}")
    for key in ("leftover_containers", "leftover_temp_files", "leftover_store_temp_files"):
        if report.get(key):
            reasons.append(f"{key}: {report[key][:10]}")
    if report.get("api_clean_exit") is False:
        reasons.append(f"the API did not shut down cleanly (exit {report['api_exit_code']})")
    return reasons


def _report(stats: Stats, requests: int, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "run_id": args.run_id,
        "seconds": args.seconds,
        "clients": args.clients,
        "requests": requests,
        "operations": sum(stats.ops.values()),
        "ops": {
            op: {
                "count": stats.ops[op],
                "errors": sum(v for k, v in stats.errors_by_op.items() if k.startswith(op + ":")),
                **summarize(stats.latencies.get(op, [])),
            }
            for op in MIX
        },
        "errors_by_kind": dict(stats.errors),
        "errors_by_op": dict(stats.errors_by_op),
        "error_examples": stats.examples,
        "http_5xx": stats.errors.get("http_5xx", 0),
        "wrong_answers": stats.errors.get("wrong_answer", 0),
        "machine": machine_info(),
        "revision": source_revision(),
    }


def _clean_exit(code: int | None, log_tail: str) -> bool:
    """uvicorn re-raises SIGTERM after a graceful shutdown, so -15 is clean too
    when the log says the lifespan finished."""
    if code == 0:
        return True
    return code == -signal.SIGTERM and "Application shutdown complete" in log_tail


def _soak_api(api: LocalApi, args: argparse.Namespace) -> dict[str, Any]:
    sampler = RssSampler(api.pid).start()
    try:
        stats, requests = soak(api.base_url, api.api_key, args)
        time.sleep(1.0)
        report = _report(stats, requests, args)
        report["rss_start"], report["rss_peak"] = sampler.start_rss, sampler.peak
        report["rss_end"] = sampler.read()
    finally:
        sampler.stop()
    report["temp_files_while_running"] = leftover_files(api.tmpdir)
    return report


def run_local(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start the API (on an image name only it uses), soak it, stop it, and look for
    leftovers."""
    tag = f"{args.image.split(':')[0]}:{args.run_id}"
    tag_image(args.image, tag)
    try:
        before = set(containers_with_label(SERVICE_LABEL))
        api = LocalApi(workdir / "api", {"RCE_IMAGE_NAME": tag, **_pool(args)})
        api.start()
        try:
            report = _soak_api(api, args)
        finally:
            code = api.stop()
        tail = api.log_tail(200)
        report["api_exit_code"], report["api_clean_exit"] = code, _clean_exit(code, tail)
        if not report["api_clean_exit"]:
            report["api_log_tail"] = tail[-4000:]
        report["server"] = api.effective_settings()
        report["leftover_temp_files"] = sorted(
            set(report.pop("temp_files_while_running")) | set(leftover_files(api.tmpdir))
        )
        report["leftover_store_temp_files"] = leftover_files(api.store_dir, ".tmp-*")
        _containers(report, before, args, tag)
    finally:
        untag_image(tag)
    return report


def run_remote(args: argparse.Namespace) -> dict[str, Any]:
    """Soak an API this tool did not start (no temp-dir check)."""
    before = set(containers_with_label(SERVICE_LABEL))
    sampler = RssSampler(args.api_pid).start() if args.api_pid else None
    stats, requests = soak(args.base_url, args.api_key or "", args)
    time.sleep(1.0)
    report = _report(stats, requests, args)
    report["rss_start"] = sampler.start_rss if sampler else None
    report["rss_peak"] = sampler.peak if sampler else None
    report["rss_end"] = sampler.read() if sampler else None
    if sampler:
        sampler.stop()
    report["leftover_temp_files"] = None
    _containers(report, before, args, None)
    return report


def _containers(
    report: dict[str, Any], before: set[str], args: argparse.Namespace, image_tag: str | None
) -> None:
    deadline = time.monotonic() + args.container_grace
    while True:
        left = [c for c in containers_with_label(SERVICE_LABEL) if c not in before]
        ours, others = describe_leftovers(left, image_tag)
        if not ours or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    report["leftover_containers"] = ours
    report["other_apis_containers_ignored"] = others
    report["preexisting_containers_ignored"] = len(before)


def _pool(args: argparse.Namespace) -> dict[str, str]:
    if args.pool_size is None:
        return {}
    return {"RCE_POOL_SIZE": str(args.pool_size), "RCE_POOL_DATA_SIZE": str(args.pool_size)}


def render(report: dict[str, Any]) -> str:
    """A short human summary."""
    lines = [
        f"soak: {report['clients']} clients x {report['seconds']} s: {report['requests']} "
        f"requests, {report['operations']} operations",
        f"errors by kind: {report['errors_by_kind'] or 'none'}",
        f"5xx: {report['http_5xx']}, wrong answers: {report['wrong_answers']}",
        f"API RSS start {mib(report.get('rss_start'))}, peak {mib(report.get('rss_peak'))}, "
        f"end {mib(report.get('rss_end'))}",
        f"leftover containers: {report.get('leftover_containers')}, temp files: "
        f"{report.get('leftover_temp_files')}, store temp files: "
        f"{report.get('leftover_store_temp_files')}",
        "| op | count | errors | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for op, o in report["ops"].items():
        p50 = "n/a" if o["p50"] is None else f"{o['p50'] * 1000:.0f}"
        p99 = "n/a" if o["p99"] is None else f"{o['p99'] * 1000:.0f}"
        lines.append(f"| {op} | {o['count']} | {o['errors']} | {p50} | {p99} |")
    lines += [f"example error: {e}" for e in report["error_examples"][:5]]
    verdict = "PASS" if report["ok"] else "FAIL: " + "; ".join(report["failures"])
    lines.append(f"RESULT: {verdict}")
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pool-size", type=int, help="RCE_POOL_SIZE of the local API")
    p.add_argument("--image", default=DEFAULT_IMAGE)
    p.add_argument("--base-url", help="soak this API instead of starting the local one")
    p.add_argument("--api-key", default=os.environ.get("CUSTOM_RCE_API_KEY"))
    p.add_argument("--api-pid", type=int, help="with --base-url: the API's pid, for RSS")
    p.add_argument(
        "--container-grace",
        type=float,
        default=15.0,
        help="seconds to wait for sandbox containers to go away",
    )
    p.add_argument("--json", help="also write the report as JSON here")
    args = p.parse_args(argv)
    args.run_id = f"soak{secrets.token_hex(4)}"
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 clean, 1 on failures, 2 when the soak cannot run."""
    args = _parse_args(argv)
    reason = docker_available(args.image)
    if reason:
        print(f"soak: {reason}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="rce-soak-"))
    try:
        report = run_remote(args) if args.base_url else run_local(args, workdir)
    finally:
        remove_tree(workdir)
    report["failures"] = _failures(report)
    report["ok"] = not report["failures"]
    print(render(report))
    write_json(args.json, report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
