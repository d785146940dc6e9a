"""``rce doctor`` against the real engine: each broken set-up is one clear line with
its fix and a non-zero exit; a healthy set-up passes.

The engine is never stopped: "engine stopped" points ``DOCKER_HOST`` at a socket
path nothing listens on. Images are tagged per test from the sandbox image with the
recipe label set (matching this checkout, or not) and removed afterwards.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from cli.repo import recipe_hash
from tests.support.live_server import free_port
from tests.support.tokens import ed25519_signer, write_pem

pytestmark = pytest.mark.docker

RCE = Path(sys.executable).parent / "rce"
STRONG_KEY = secrets.token_hex(32)


def _labelled_image(client: docker.DockerClient, base: str, recipe: str) -> str:
    tag = f"rce-doctor-test:{secrets.token_hex(4)}"
    dockerfile = f"FROM {base}\nLABEL org.rce.recipe-hash={recipe}\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True)
    return tag


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[dict[str, str]]:
    """A current image (this checkout's recipe) and a stale one."""
    current = recipe_hash()
    assert current, "images/build.sh --recipe-hash printed nothing"
    tags = {
        "current": _labelled_image(docker_client, sandbox_image, current),
        "stale": _labelled_image(docker_client, sandbox_image, "0123456789abcdef"),
    }
    yield tags
    for tag in tags.values():
        docker_client.images.remove(tag, noprune=False)


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``rce doctor`` with exactly ``env`` (plus PATH, HOME, DOCKER_HOST)."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_HOST") if k in os.environ}
    return subprocess.run(
        [str(RCE), "doctor", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _line(done: subprocess.CompletedProcess[str], check: str) -> str:
    lines = [ln for ln in done.stdout.splitlines() if ln[5:].startswith(f"{check}:")]
    assert len(lines) == 1, f"expected one {check!r} line:\n{done.stdout}{done.stderr}"
    return lines[0]


@pytest.fixture(name="healthy_env")
def _healthy_env(tmp_path: Path, images: dict[str, str]) -> dict[str, str]:
    return {
        "RCE_IMAGE_NAME": images["current"],
        "RCE_STORAGE": f"file://{tmp_path}/sessions",
        "CUSTOM_RCE_API_KEY": STRONG_KEY,
    }


def test_healthy_setup_passes(healthy_env: dict[str, str]) -> None:
    """Real engine, current image, folder store, a real key: every check is ok, exit 0."""
    done = doctor(healthy_env)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("engine", "runtime", "image", "store", "auth"):
        assert _line(done, check).startswith("ok "), done.stdout
    assert "all checks passed" in done.stdout


def test_engine_stopped(healthy_env: dict[str, str], tmp_path: Path) -> None:
    """DOCKER_HOST at a socket nothing listens on: one engine line with the fix."""
    done = doctor({**healthy_env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert done.returncode == 1
    line = _line(done, "engine")
    assert line.startswith("FAIL engine: no Docker engine answers"), line
    assert "fix: start it" in line and "DOCKER_HOST" in line


def test_image_missing(healthy_env: dict[str, str]) -> None:
    """A tag that does not exist: the image line says so and how to build it."""
    done = doctor({**healthy_env, "RCE_IMAGE_NAME": "rce-doctor-test:missing"})
    assert done.returncode == 1
    line = _line(done, "image")
    assert "rce-doctor-test:missing is not on the engine" in line
    assert "fix: rce image build" in line


def test_image_stale(healthy_env: dict[str, str], images: dict[str, str]) -> None:
    """An image whose recipe label differs from this checkout's: stale, rebuild."""
    done = doctor({**healthy_env, "RCE_IMAGE_NAME": images["stale"]})
    assert done.returncode == 1
    line = _line(done, "image")
    assert "is stale" in line and "0123456789abcdef" in line and recipe_hash() in line
    assert "fix: rce image build" in line


def test_store_unreachable(healthy_env: dict[str, str]) -> None:
    """S3 on a closed loopback port: one store line naming the endpoint, with the fix."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {
        **healthy_env,
        "RCE_STORAGE": "s3://rce-doctor/sessions",
        "RCE_S3_ENDPOINT": endpoint,
        "RCE_S3_REGION": "us-east-1",
        "RCE_S3_ACCESS_KEY": "doctor",
        "RCE_S3_SECRET_KEY": "doctor-secret",
        "RCE_S3_MANAGE_LIFECYCLE": "false",
    }
    done = doctor(env)
    assert done.returncode == 1
    line = _line(done, "store")
    assert line.startswith("FAIL store:") and endpoint in line
    assert "fix: start the S3 server or correct RCE_S3_ENDPOINT" in line


def test_wrong_jwt_public_key(healthy_env: dict[str, str], tmp_path: Path) -> None:
    """A token from LibreChat signed by a key we do not have: the jwt line says the
    signature does not verify and which setting to fix; the right key passes."""
    ours, theirs = ed25519_signer(), ed25519_signer()
    env = {
        **healthy_env,
        "RCE_AUTH_MODE": "both",
        "RCE_JWT_PUBLIC_KEY_FILE": str(write_pem(tmp_path / "ours.pem", ours)),
    }
    done = doctor(env, "--jwt", theirs.mint())
    assert done.returncode == 1
    line = _line(done, "jwt")
    assert "signature does not verify" in line
    assert "fix: set RCE_JWT_PUBLIC_KEY_FILE" in line
    good = doctor(env, "--jwt", ours.mint())
    assert good.returncode == 0 and _line(good, "jwt").startswith("ok "), good.stdout


def test_jwt_claims_mismatch_named(healthy_env: dict[str, str], tmp_path: Path) -> None:
    """The right key but another audience and an expired token: both named exactly."""
    signer = ed25519_signer()
    env = {
        **healthy_env,
        "RCE_AUTH_MODE": "both",
        "RCE_JWT_PUBLIC_KEY_FILE": str(write_pem(tmp_path / "k.pem", signer)),
    }
    done = doctor(env, "--jwt", signer.mint(aud="other", now=1_700_000_000))
    line = _line(done, "jwt")
    assert "aud is 'other' but RCE_JWT_AUDIENCE is 'codeapi'" in line
    assert "expired" in line and "signature" not in line
    assert done.returncode == 1


def test_placeholder_key_on_public_bind(healthy_env: dict[str, str]) -> None:
    """RCE_HOST=0.0.0.0 with CUSTOM_RCE_API_KEY=change-me: the auth line, with the fix;
    the other checks still run."""
    done = doctor({**healthy_env, "RCE_HOST": "0.0.0.0", "CUSTOM_RCE_API_KEY": "change-me"})
    assert done.returncode == 1
    line = _line(done, "auth")
    assert line.startswith("FAIL auth:") and "RCE_HOST=0.0.0.0" in line
    assert "placeholder" in line and "fix: set CUSTOM_RCE_API_KEY=$(openssl rand -hex 32)" in line
    assert _line(done, "store").startswith("ok ")


def test_librechat_env_key_mismatch(healthy_env: dict[str, str], tmp_path: Path) -> None:
    """LibreChat's .env holding another key: named, with the fix."""
    env_file = tmp_path / "librechat.env"
    env_file.write_text(
        "LIBRECHAT_CODE_API_KEY=not-our-key-at-all-1234\n"
        f"LIBRECHAT_CODE_BASEURL=http://127.0.0.1:{free_port()}\n"
    )
    done = doctor(healthy_env, "--librechat-env", str(env_file))
    assert done.returncode == 1
    line = _line(done, "librechat key")
    assert "matches none of CUSTOM_RCE_API_KEY" in line
    assert "fix: set LIBRECHAT_CODE_API_KEY" in line
    assert _line(done, "librechat url").startswith("WARN")
