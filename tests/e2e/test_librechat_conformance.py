"""LibreChat's real client library against the real server.

The node scripts in ``tests/conformance`` import ``@librechat/agents`` (pinned in
``package.json``) and call the server exactly as LibreChat does: the package's own
``execute_code`` / ``bash_tool`` tools and ``fetchSessionFiles``, plus LibreChat's
host-side upload, freshness, download, delete and read/write calls of both the
current (``kind``/``id``, Bearer JWT) and the legacy (``entity_id``, ``X-API-Key``)
generations. Each script prints one ``CONFORMANCE_RESULT {json}`` line listing its
checks; every check must pass.

The server runs as a subprocess on the real Docker engine, once with a folder store
and once with S3 on a real SeaweedFS server.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.live_server import REPO_ROOT, LiveServer, live_server, server_env
from tests.support.s3_plugin import make_s3_store, random_bucket
from tests.support.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer
from tests.support.services import service_missing
from tests.support.tokens import Signer, ed25519_signer, write_pem

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

CONFORMANCE_DIR = REPO_ROOT / "tests" / "conformance"
RESULT_MARKER = "CONFORMANCE_RESULT "
SCRIPTS = ("exec_tools.mjs", "host_calls.mjs", "auth.mjs", "languages.mjs")
SCRIPT_TIMEOUT_S = 420


# --- node and the pinned client ---------------------------------------------------


def _lock_digest() -> str:
    return hashlib.sha256((CONFORMANCE_DIR / "package-lock.json").read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` binary, with ``node_modules`` installed from the lock file."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if not node_bin or not npm_bin:
        service_missing("node and npm are needed for the LibreChat conformance suite")
        raise AssertionError("unreachable")
    stamp = CONFORMANCE_DIR / "node_modules" / ".rce-lock-sha256"
    digest = _lock_digest()
    if not stamp.is_file() or stamp.read_text().strip() != digest:
        # .npmrc sets ignore-scripts: the package pulls in an install-time telemetry hook.
        result = subprocess.run(
            [npm_bin, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=CONFORMANCE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            service_missing(f"npm ci failed in tests/conformance:\n{result.stderr[-3000:]}")
        stamp.write_text(digest)
    return node_bin


# --- credentials --------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """The API key and the LibreChat signing key the server trusts."""

    api_key: str
    signer: Signer
    private_key_file: Path
    public_key_file: Path


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """A fresh API key and Ed25519 key pair (the private half for the node side)."""
    folder = tmp_path_factory.mktemp("conformance-keys")
    signer = ed25519_signer()
    private_file = folder / "librechat-private.pem"
    private_file.write_bytes(
        signer.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_file.chmod(0o600)
    public_file = write_pem(folder / "librechat-public.pem", signer)
    return Credentials(secrets.token_urlsafe(24), signer, private_file, public_file)


# --- the server, once per store -------------------------------------------------------


def _s3_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """Store settings for a fresh bucket on the session's SeaweedFS server."""
    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    bucket = random_bucket("conformance")
    make_s3_store(seaweed.endpoint, bucket)  # creates the bucket
    return {
        "RCE_STORAGE": f"s3://{bucket}/sessions",
        "RCE_S3_ENDPOINT": seaweed.endpoint,
        "RCE_S3_REGION": "us-east-1",
        "RCE_S3_ACCESS_KEY": ACCESS_KEY,
        "RCE_S3_SECRET_KEY": SECRET_KEY,
    }


@pytest.fixture(scope="module", params=["folder", pytest.param("s3", marks=pytest.mark.s3)])
def server(
    request: pytest.FixtureRequest,
    credentials: Credentials,
    sandbox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """The real API on the real Docker engine with a folder store, then with S3."""
    if request.param == "folder":
        folder = tmp_path_factory.mktemp("conformance-store")
        store = {"RCE_STORAGE": f"file://{folder}"}
    else:
        store = _s3_settings(request)
    env = server_env(
        storage=store.pop("RCE_STORAGE"),
        api_key=credentials.api_key,
        jwt_public_key_file=credentials.public_key_file,
        pool_size=1,
        extra={**store, "RCE_IMAGE_NAME": sandbox_image},
    )
    with live_server(env, log_dir=tmp_path_factory.mktemp("conformance-logs")) as running:
        yield running


# --- the scripts ----------------------------------------------------------------------


def _run_script(
    node: str,
    script: str,
    server: LiveServer,
    creds: Credentials,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    env = {
        **(extra or {}),
        "PATH": str(Path(node).parent),
        "HOME": str(CONFORMANCE_DIR),
        "RCE_BASE_URL": server.base_url,
        "RCE_API_KEY": creds.api_key,
        "RCE_JWT_PRIVATE_KEY_FILE": str(creds.private_key_file),
        "RCE_JWT_TENANT": "legacy",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    try:
        result = subprocess.run(
            [node, script],
            cwd=CONFORMANCE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} timed out after {SCRIPT_TIMEOUT_S} s\n{server.log_tail()}")
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if not lines:
        pytest.fail(
            f"{script} printed no result (exit {result.returncode})\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
    report: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARKER) :])
    report["exit_code"] = result.returncode
    # The client library logs why a request failed (status, or the socket error).
    report["client_stderr"] = result.stderr[-3000:]
    return report


def _failure_text(report: dict[str, Any], server: LiveServer) -> str:
    failed = [r for r in report["results"] if not r["ok"]]
    lines = [f"{len(failed)} of {len(report['results'])} checks failed in {report['script']}:"]
    lines += [f"  - {r['name']}: {r.get('detail', '')}" for r in failed]
    lines.append("client stderr (tail):")
    lines.append(report.get("client_stderr", ""))
    lines.append("server warnings and errors:")
    lines.append(server.log_problems())
    lines.append("server log tail:")
    lines.append(server.log_tail(4000))
    return "\n".join(lines)


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 60)
@pytest.mark.parametrize("script", SCRIPTS)
def test_librechat_client_conformance(
    node: str, server: LiveServer, credentials: Credentials, script: str
) -> None:
    """Every check of the script passes against the live server."""
    report = _run_script(node, script, server, credentials)
    assert report["results"], f"{script} ran no checks"
    failed = [r for r in report["results"] if not r["ok"]]
    assert not failed, _failure_text(report, server)
    assert report["exit_code"] == 0
    assert server.alive(), f"the server died during {script}:\n{server.log_tail()}"


def test_pinned_client_version() -> None:
    """The suite drives the exact client version the contract was read from."""
    package = json.loads((CONFORMANCE_DIR / "package.json").read_text())
    lock = json.loads((CONFORMANCE_DIR / "package-lock.json").read_text())
    assert package["dependencies"]["@librechat/agents"] == "3.9.2"
    assert lock["packages"]["node_modules/@librechat/agents"]["version"] == "3.9.2"
    assert "ignore-scripts=true" in (CONFORMANCE_DIR / ".npmrc").read_text()
