"""Throughput at concurrency 8 over 1, 2 and 3 engines, as a share of each engine
count's lifecycle ceiling.

Needs the engines of ``local/cluster.sh up`` (their sockets and socket proxies).

    uv run python bench/cluster_bench.py --seconds 20

For each engine count k:
- *ceiling*: 8 threads each loop create/start/wait/remove of a bare
  ``python3 -c 'print(1)'`` container from the sandbox image, spread round robin
  over the k engines (straight to each engine's socket): the most execs a second
  the engines allow with no service at all;
- *hardened ceiling*: the same loop with the sandbox's own ``HostConfig``
  (``runner._docker_config.host_config``: limits, tmpfs mounts, hardening), the
  lifecycle ceiling of ``bench/load_bench.py``;
- *service*: 8 threads each loop ``MultiEngineSandbox.run`` of ``print(1)`` (the
  same placement, warm pools, hardening and socket proxies the API replicas use;
  one warm light sandbox per engine).
Prints execs/s of each and the service's share of the ceiling.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import docker

from runner import _docker_config as cfg
from runner._docker_client import client_factory, probe
from runner.base import Language, Limits, RunRequest
from runner.docker import DockerSandbox
from runner.docker_ptc import DockerProgramSandbox
from runner.multi import Member, MultiEngineSandbox

LABELS = {"org.rce.bench": "cluster_bench"}


def engine_sock(n: int) -> str:
    return f"unix:///var/run/rce-cluster-node{n}.sock"


def proxy_sock(n: int) -> str:
    return f"unix:///run/rce-cluster/proxy{n}.sock"


def rate(work: Callable[[int], None], threads: int, seconds: float) -> tuple[float, int]:
    """Execs per second of ``threads`` threads looping ``work(thread)`` for ``seconds``."""
    done = [0] * threads
    errors = [0]
    end = time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < end:
            try:
                work(i)
                done[i] += 1
            except Exception:
                errors[0] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.monotonic() - started), errors[0]


def ceiling(
    engines: int, image: str, threads: int, seconds: float, *, hardened: bool = False
) -> tuple[float, int]:
    clients = [docker.APIClient(base_url=engine_sock(n + 1)) for n in range(engines)]
    turn = itertools.count()
    key = cfg.container_key(image, Limits(), gpu=False, runtime=None)

    def work(_: int) -> None:
        api = clients[next(turn) % engines]
        extra: dict[str, Any] = {"network_disabled": True}
        if hardened:
            extra = {"host_config": cfg.host_config(key), "user": cfg.SANDBOX_USER}
        made = api.create_container(image, ["python3", "-c", "print(1)"], labels=LABELS, **extra)
        try:
            api.start(made)
            api.wait(made, timeout=60)
        finally:
            api.remove_container(made, force=True)

    return rate(work, threads, seconds)


def service(engines: int, image: str, threads: int, seconds: float) -> tuple[float, int]:
    members = []
    for n in range(1, engines + 1):
        sandbox = DockerSandbox.from_settings(
            image=image, pool_size=1, limits=Limits(), client=client_factory(proxy_sock(n))
        )
        members.append(
            Member(
                f"node{n}", sandbox, probe(proxy_sock(n), image, 3), DockerProgramSandbox(sandbox)
            )
        )
    multi = MultiEngineSandbox(members)
    try:
        multi.wait_pool_ready(120)
        request = RunRequest(Language.PYTHON, "print(1)")

        def work(_: int) -> None:
            result = multi.run(request)
            result.close()
            if result.stdout != "1\n":
                raise RuntimeError(result.stderr)

        return rate(work, threads, seconds)
    finally:
        multi.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--image", default="custom-rce-kernel:latest")
    parser.add_argument("--engines", default="1,2,3")
    args = parser.parse_args()
    rows = []
    for k in (int(x) for x in args.engines.split(",")):
        bare, bare_errors = ceiling(k, args.image, args.concurrency, args.seconds)
        hard, hard_errors = ceiling(k, args.image, args.concurrency, args.seconds, hardened=True)
        ours, our_errors = service(k, args.image, args.concurrency, args.seconds)
        row = {
            "engines": k,
            "ceiling_per_s": round(bare, 2),
            "hardened_ceiling_per_s": round(hard, 2),
            "service_per_s": round(ours, 2),
            "share": round(ours / bare, 2) if bare else None,
            "share_of_hardened": round(ours / hard, 2) if hard else None,
            "errors": bare_errors + hard_errors + our_errors,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
