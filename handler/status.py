"""``GET /status``: a read-only HTML page for operators, behind the API's auth.

Server-rendered in one response: inline CSS, no script, no external asset, every
value escaped. It shows the engine and its runtimes, the warm pools (target and
ready), this process's recent execs per language and outcome with p50/p99, the
store's health, the version and the image's recipe hash. The engine and the store
are asked on the probe threads, each within ``PROBE_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from core.errors import CodeInterpreterError
from handler.recent import ExecSummary
from handler.services import Services
from runner.engine_info import EngineInfo, inspect_engine

PROBE_TIMEOUT_S = 3.0
T = TypeVar("T")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1d2329;background:#f6f7f9}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;min-width:28em}
th,td{border:1px solid #d5d9de;padding:.3em .7em;text-align:left}
th{background:#e9ecf0}.ok{color:#176f2c;font-weight:600}.bad{color:#b3261e;font-weight:600}
.note{color:#5b6570;font-size:.9em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(ok: bool, text: str) -> str:
    return f'<span class="{"ok" if ok else "bad"}">{_e(text)}</span>'


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    """A table; ``rows`` hold already-escaped HTML cells."""
    if not rows:
        return f'<p class="note">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


async def _probe(services: Services, fn: Callable[[], T]) -> T | str:
    """``fn()`` on a probe thread; the error message when it fails or takes too long."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(
            loop.run_in_executor(services.probe_executor, fn), PROBE_TIMEOUT_S
        )
    except CodeInterpreterError as exc:
        return exc.message
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_S:.0f} s"


def _engine_section(info: EngineInfo | str, services: Services) -> str:
    settings = services.settings
    if isinstance(info, str) or info.error:
        why = info if isinstance(info, str) else info.error
        return f"<p>{_badge(False, 'unreachable')} {_e(why)}</p>"
    runtime = settings.runtime or f"{info.default_runtime} (engine default)"
    rows = [
        ["Engine", f"{_badge(True, 'up')} Docker {_e(info.version)} at {_e(info.endpoint)}"],
        ["Runtimes", _e(", ".join(info.runtimes) or "not reported")],
        ["Sandboxes run with", _e(runtime)],
        [
            "Image",
            f"{_e(info.image)} "
            + _badge(info.image_present, "present" if info.image_present else "missing"),
        ],
        ["Image recipe hash", _e(info.recipe_hash or "(no label)")],
    ]
    return _table(["", ""], rows, "")


def _pools_section(services: Services) -> str:
    stats_fn = getattr(services.sandbox, "stats", None)
    stats: dict[str, Any] = stats_fn() if callable(stats_fn) else {}
    settings = services.settings
    rows = [
        [
            _e(name),
            _e(stats.get(f"pool_target_{name}", floor)),
            _e(stats.get(f"pool_size_{name}", 0)),
        ]
        for name, floor in (
            ("light", settings.pool_size),
            ("data", settings.pool_data_size),
            ("r", settings.pool_r_size),
            ("node", settings.pool_node_size),
            ("java", settings.pool_java_size),
        )
    ]
    gate = services.exec_gate
    return _table(["Pool", "Target", "Ready"], rows, "") + (
        f"<p>Execs running now: <b>{_e(gate.running)}</b>, queued: <b>{_e(gate.queued)}</b>"
        f" (at most {_e(settings.max_concurrent_execs)} at once)</p>"
    )


def _execs_section(summary: list[ExecSummary], capacity: int) -> str:
    rows = [
        [_e(s.language), _e(s.outcome), _e(s.count), f"{s.p50_ms:.0f}", f"{s.p99_ms:.0f}"]
        for s in summary
    ]
    note = (
        f'<p class="note">The last {capacity} execs of this API process only '
        "(in memory, per replica; /metrics has the totals).</p>"
    )
    return note + _table(["Language", "Outcome", "Count", "p50 ms", "p99 ms"], rows, "No exec yet.")


def _store_section(services: Services, answer: object) -> str:
    where = services.settings.storage
    if isinstance(answer, str):
        return f"<p>{_badge(False, 'unavailable')} {_e(where)}: {_e(answer)}</p>"
    return f"<p>{_badge(True, 'ok')} {_e(where)} answers</p>"


async def render_status(services: Services, version: str) -> str:
    """The whole page."""
    image = services.settings.sandbox_image
    info = await _probe(services, lambda: inspect_engine(image, timeout_s=PROBE_TIMEOUT_S))
    store = await _probe(services, services.store.ping)
    sections = [
        ("Engine and runtimes", _engine_section(info, services)),
        ("Warm pools", _pools_section(services)),
        ("Recent execs", _execs_section(services.recent.summary(), services.recent.capacity)),
        ("Store", _store_section(services, store)),
    ]
    body = "".join(f"<section><h2>{_e(t)}</h2>{c}</section>" for t, c in sections)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>rce status</title><style>{_CSS}</style></head><body>"
        f'<h1>rce status</h1><p class="note">Version {_e(version)}, '
        f"image {_e(image)}, rendered {_e(stamp)}. Read only; reload to refresh.</p>"
        f"{body}</body></html>"
    )


def build_status_router(version: str) -> APIRouter:
    """``GET /status`` (the app mounts it at ``/`` and ``/v1``)."""
    router = APIRouter()

    @router.get("/status", include_in_schema=False, response_class=HTMLResponse)
    async def status(request: Request) -> HTMLResponse:
        """The operator's status page (authenticated like every non-public route)."""
        services: Services = request.app.state.services
        page = await render_status(services, version)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return router
