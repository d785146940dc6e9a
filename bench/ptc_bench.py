"""Server-side cost of programmatic tool calling, beside a plain ``/exec``.

Starts the API (folder store, Docker engine), then, back to back and ``--runs``
times each, measures one program that makes one tool call:

* ``exec``: ``POST /exec`` of the same program with the call replaced by a
  constant (a pooled sandbox, the baseline);
* ``ptc_start``: ``POST /exec/programmatic`` until ``tool_call_required`` (a sandbox
  from the same warm pool, renamed for the run);
* ``ptc_continue_to_next_call``: a continuation answered by the next
  ``tool_call_required`` (attach, deliver, read the next calls): the cost of
  each round trip;
* ``ptc_continue_to_completed``: the last continuation, until ``completed``
  (with the collection and the sync of the outputs).

The tool itself takes no time (the benchmark answers at once), so the figures
are the server's overhead. Prints one JSON document.

    uv run python bench/ptc_bench.py --runs 20 [--image custom-rce-kernel:latest]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_IMAGE, LocalApi, machine_info, summarize

PTC_CODE = (
    'x = await lookup(key="k")\nx = await lookup(key=str(x))\n'
    'print("got", x)\nopen("out.txt", "w").write(str(x))\n'
)
EXEC_CODE = 'x = 42\nprint("got", x)\nopen("out.txt", "w").write(str(x))\n'


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _one_round(client: httpx.Client, headers: dict[str, str]) -> tuple[float, float, float]:
    body = {"code": PTC_CODE, "tools": [{"name": "lookup"}], "timeout": 10000}
    started = time.perf_counter()
    first = client.post("/exec/programmatic", json=body, headers=headers).json()
    start_ms = _ms(started)
    assert first["status"] == "tool_call_required", first
    middle, middle_ms = _continue(client, headers, first)
    assert middle["status"] == "tool_call_required", middle
    done, last_ms = _continue(client, headers, middle)
    assert done["status"] == "completed" and done["stdout"] == "got 42\n", done
    return start_ms, middle_ms, last_ms


def _continue(
    client: httpx.Client, headers: dict[str, str], answer: dict[str, Any]
) -> tuple[dict[str, Any], float]:
    results = [{"call_id": answer["tool_calls"][0]["id"], "result": 42, "is_error": False}]
    started = time.perf_counter()
    body = {"continuation_token": answer["continuation_token"], "tool_results": results}
    out: dict[str, Any] = client.post("/exec/programmatic", json=body, headers=headers).json()
    return out, _ms(started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rce-ptc-bench-"))
    api = LocalApi(
        workdir,
        settings={
            "RCE_IMAGE_NAME": args.image,
            "RCE_POOL_SIZE": "2",
            "RCE_POOL_DATA_SIZE": "0",
            "RCE_PTC_TOKEN_SECRET": secrets.token_urlsafe(32),
        },
    )
    with api, httpx.Client(base_url=api.base_url, timeout=120) as client:
        headers = {"X-API-Key": api.api_key, "User-Id": "bench"}
        figures: dict[str, list[float]] = {
            "exec": [],
            "ptc_start": [],
            "ptc_continue_to_next_call": [],
            "ptc_continue_to_completed": [],
        }
        _one_round(client, headers)  # warm-up
        for _ in range(args.runs):
            started = time.perf_counter()
            answer = client.post("/exec", json={"lang": "py", "code": EXEC_CODE}, headers=headers)
            figures["exec"].append(_ms(started))
            assert answer.json()["stdout"] == "got 42\n", answer.text
            start_ms, middle_ms, last_ms = _one_round(client, headers)
            figures["ptc_start"].append(start_ms)
            figures["ptc_continue_to_next_call"].append(middle_ms)
            figures["ptc_continue_to_completed"].append(last_ms)
    report = {
        "runs": args.runs,
        "image": args.image,
        "machine": machine_info(),
        "ms": {name: summarize(values) for name, values in figures.items()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
