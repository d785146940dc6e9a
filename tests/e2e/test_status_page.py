"""The status page in a real browser: headless Chromium (Debian's) against the live
API, with execs running.

Chromium cannot add an ``X-API-Key`` header from its command line, so it browses
through a small loopback forwarder that adds the key (what an operator's reverse
proxy or browser extension would do); the API itself still refuses ``/status``
without credentials. The test checks the DOM Chromium rendered (``--dump-dom``: the
section headings, the pools, the exec rows) and that the screenshot is a real
rendering: a PNG of the window's size whose pixel rows vary, unlike a blank page's.
"""

from __future__ import annotations

import http.server
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import LiveServer, live_server, server_env
from tests.support.services import service_missing

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

KEY = "status-page-test-key-0123456789abcdef"
WIDTH, HEIGHT = 1200, 1400
SECTIONS = ("Engine and runtimes", "Warm pools", "Recent execs", "Store")


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        service_missing("chromium is not installed (scripts/install-test-tools.sh)")
    assert path is not None
    return path


def browse(url: str, *mode: str) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium once on ``url`` with a fresh profile."""
    with tempfile.TemporaryDirectory(prefix="rce-chromium-") as profile:
        return subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                *mode,
                url,
            ],
            capture_output=True,
            timeout=90,
            check=False,
        )


def dump_dom(url: str) -> str:
    done = browse(url, "--dump-dom")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()


def screenshot(url: str, path: Path) -> bytes:
    done = browse(url, f"--screenshot={path}")
    assert done.returncode == 0 and path.is_file(), done.stderr.decode(errors="replace")[-2000:]
    return path.read_bytes()


def png_rows(png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct pixel rows) of an 8-bit RGB/RGBA PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    rows = {raw[i * stride + 1 : (i + 1) * stride] for i in range(height)}
    return width, height, len(rows)


class _KeyAdder(http.server.BaseHTTPRequestHandler):
    """Forwards GETs to the API with the key added."""

    upstream = ""

    def do_GET(self) -> None:
        request = urllib.request.Request(self.upstream + self.path, headers={"X-API-Key": KEY})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, body, ctype = answer.status, answer.read(), answer.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            status, body, ctype = exc.code, exc.read(), "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype or "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Iterator[LiveServer]:
    store = tmp_path_factory.mktemp("status-store")
    env = server_env(
        storage=f"file://{store}",
        api_key=KEY,
        pool_size=1,
        extra={"RCE_IMAGE_NAME": sandbox_image, "RCE_LOG_JSON": "false"},
    )
    with live_server(env) as running:
        yield running


@pytest.fixture(scope="module")
def page_url(server: LiveServer) -> Iterator[str]:
    handler = type("Handler", (_KeyAdder,), {"upstream": server.base_url})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}/status"
    proxy.shutdown()
    proxy.server_close()


def _exec(base_url: str, code: str) -> int:
    answer = httpx.post(
        f"{base_url}/exec",
        headers={"X-API-Key": KEY},
        json={"lang": "py", "code": code},
        timeout=120,
    )
    return answer.status_code


def _wait_until_running(base_url: str, timeout_s: float = 25.0) -> None:
    """Wait until the page counts a running exec, however slowly the execs start."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        page = httpx.get(f"{base_url}/status", headers={"X-API-Key": KEY}, timeout=30).text
        if "Execs running now: <b>0</b>" not in page:
            return
        time.sleep(0.2)
    raise AssertionError("no exec was running after the wait")


def test_status_needs_credentials(server: LiveServer) -> None:
    """Without a key the page is a 401, at / and under /v1; with one, HTML."""
    for path in ("/status", "/v1/status"):
        assert httpx.get(server.base_url + path).status_code == 401
        answer = httpx.get(server.base_url + path, headers={"X-API-Key": KEY}, timeout=30)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert "<script" not in answer.text and "http://" not in answer.text.split("<body>")[0]


def test_status_page_in_chromium_while_execs_run(
    server: LiveServer, page_url: str, tmp_path: Path
) -> None:
    """While execs run, Chromium renders every section, the pools and the running
    count; once they finish, their language and outcome rows with p50/p99."""
    with ThreadPoolExecutor(3) as pool:
        running = [
            pool.submit(_exec, server.base_url, "import time; time.sleep(20)") for _ in range(3)
        ]
        _wait_until_running(server.base_url)
        dom = dump_dom(page_url)
        png = screenshot(page_url, tmp_path / "status-busy.png")
        statuses = [f.result() for f in running]
    assert statuses == [200, 200, 200]
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in dom, dom[:3000]
    assert "Execs running now: <b>" in dom and "Execs running now: <b>0</b>" not in dom, dom
    # The light pool's row: its target (at least its floor, 1; it grows with the load)
    # and how many are ready.
    assert re.search(r"<td>light</td><td>[1-9][0-9]*</td><td>[0-9]+</td>", dom), dom
    assert "Image recipe hash" in dom
    width, height, distinct = png_rows(png)
    assert (width, height) == (WIDTH, HEIGHT)
    blank_w, blank_h, blank_distinct = png_rows(screenshot("about:blank", tmp_path / "blank.png"))
    assert blank_distinct <= 2 < 100 <= distinct, (blank_distinct, distinct)

    assert _exec(server.base_url, "raise SystemExit(3)") == 200
    dom = dump_dom(page_url)
    assert "<td>py</td><td>ok</td><td>3</td>" in dom, dom
    assert "<td>py</td><td>nonzero</td><td>1</td>" in dom, dom
    assert "p50 ms" in dom and "p99 ms" in dom
