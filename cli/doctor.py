"""``rce doctor``: check a set-up end to end; one line per check, with its fix.

Every check returns a ``Check``; a failing one carries the one thing to do. The
order follows the dependencies: settings, engine, runtimes, image, store, auth, then
what the operator pasted (a JWT, LibreChat's ``.env``).
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from cli import jwtcheck
from cli.repo import recipe_hash
from core.errors import CodeInterpreterError
from core.identity import Owner
from core.ids import new_id
from handler.settings import Settings, is_loopback, weak_key_reason
from runner.engine_info import EngineInfo, inspect_engine
from storage.base import NewFile

Status = Literal["ok", "warn", "fail", "skip"]
_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict; ``fix`` says what to do when it is not ``ok``."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The one line printed for this check."""
        text = f"{_MARK[self.status]} {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix and self.status != "ok" else text


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the operator gave ``rce doctor`` besides the environment."""

    jwt: str | None = None
    librechat_env: Path | None = None


def _settings_errors(exc: ValidationError) -> str:
    return "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())


def load_settings() -> tuple[Settings | None, list[Check]]:
    """The settings, and checks for what the server would refuse at start-up. A
    configuration refused only for its bind address is read again as if on loopback,
    so the other checks still run."""
    try:
        return Settings(), []
    except ValidationError as exc:
        first = _settings_errors(exc)
    try:
        settings = Settings(host="127.0.0.1")
    except ValidationError as exc:
        return None, [
            Check("settings", "fail", _settings_errors(exc), "correct the variable named")
        ]
    host = os.environ.get("RCE_HOST", "")
    return settings, [
        Check(
            "auth",
            "fail",
            f"the server would not start on RCE_HOST={host}: {first}",
            "set CUSTOM_RCE_API_KEY=$(openssl rand -hex 32) (and the same key in LibreChat's "
            "LIBRECHAT_CODE_API_KEY), or bind to 127.0.0.1",
        )
    ]


def check_engine(info: EngineInfo) -> Check:
    """The Docker engine answers."""
    if info.error:
        return Check(
            "engine",
            "fail",
            f"no Docker engine answers at {info.endpoint}",
            "start it (scripts/ensure-docker.sh) or point DOCKER_HOST at a running engine",
        )
    return Check("engine", "ok", f"Docker {info.version} at {info.endpoint}")


def check_runtime(info: EngineInfo, settings: Settings) -> Check:
    """The OCI runtime RCE_RUNTIME names is registered with the engine."""
    have = ", ".join(info.runtimes) or "none"
    wanted = settings.runtime
    if not wanted:
        return Check("runtime", "ok", f"engine default ({info.default_runtime}); has {have}")
    if wanted not in info.runtimes:
        return Check(
            "runtime",
            "fail",
            f"RCE_RUNTIME={wanted} is not registered with the engine (it has {have})",
            f"install gVisor and register {wanted} in /etc/docker/daemon.json "
            "(scripts/ensure-docker.sh), or unset RCE_RUNTIME",
        )
    return Check("runtime", "ok", f"{wanted} registered (engine has {have})")


def check_image(info: EngineInfo, settings: Settings, expected: str | None) -> Check:
    """The sandbox image exists and was built from this checkout's recipe."""
    image = settings.sandbox_image
    if not info.image_present:
        fix = "rce image build" if not settings.gpu_enabled else "build images/gpu/Dockerfile"
        return Check(
            "image", "fail", f"{image} is not on the engine", f"{fix} (or set RCE_IMAGE_NAME)"
        )
    have = info.recipe_hash
    if settings.gpu_enabled or expected is None:
        return Check("image", "ok", f"{image} present (recipe {have or 'unlabelled'})")
    if have != expected:
        return Check(
            "image",
            "fail",
            f"{image} is stale: built from recipe {have or '(no label)'}, this checkout's "
            f"recipe is {expected}",
            "rce image build",
        )
    return Check("image", "ok", f"{image} is current (recipe {expected})")


def check_store(settings: Settings) -> Check:
    """The store answers a write, a read and a delete of a probe object."""
    from handler.services import build_store

    where = settings.storage + (f" at {settings.s3_endpoint}" if settings.s3_endpoint else "")
    fix = (
        "start the S3 server or correct RCE_S3_ENDPOINT and its credentials"
        if settings.storage.startswith("s3://")
        else "make the folder of RCE_STORAGE writable by this user"
    )
    session, file_id, payload = new_id(), new_id(), b"rce doctor probe\n"
    try:
        store = build_store(settings)
        store.put(
            NewFile(session, file_id, "rce-doctor-probe.txt", Owner("doctor", "doctor")),
            io.BytesIO(payload),
        )
        obj = store.open(session, file_id)
        try:
            data = b"".join(obj.chunks)
        finally:
            obj.close()
        store.delete(session, file_id)
    except CodeInterpreterError as exc:
        return Check("store", "fail", f"{where}: {exc.message}", fix)
    if data != payload:
        return Check("store", "fail", f"{where}: the probe read back different bytes", fix)
    return Check("store", "ok", f"{where}: write, read and delete work")


def check_auth(settings: Settings) -> Check:
    """Auth settings: no auth, or a weak key, only where they are harmless."""
    loopback = is_loopback(settings.host)
    if settings.auth_mode == "none":
        status: Status = "warn" if loopback else "fail"
        return Check(
            "auth",
            status,
            f"RCE_AUTH_MODE=none on {settings.host}: anyone who reaches the port runs code",
            "set RCE_AUTH_MODE=api_key with a real CUSTOM_RCE_API_KEY",
        )
    weak = [r for r in map(weak_key_reason, settings.api_key_list()) if r]
    if settings.uses_api_keys and weak:
        return Check(
            "auth",
            "warn",
            f"an API key is {weak[0]}: accepted on loopback only ({settings.host})",
            "set CUSTOM_RCE_API_KEY=$(openssl rand -hex 32) before binding beyond loopback",
        )
    return Check("auth", "ok", f"RCE_AUTH_MODE={settings.auth_mode} on {settings.host}")


def check_jwt(token: str, settings: Settings) -> Check:
    """A token pasted from LibreChat passes every rule of the server."""
    problems, fix = jwtcheck.diagnose(token, settings)
    if problems:
        return Check("jwt", "fail", "; ".join(problems), fix)
    return Check("jwt", "ok", "the token is accepted (key, algorithm, iss, aud, exp)")


def _dotenv(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=2) as answer:  # noqa: S310
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_librechat_env(path: Path, settings: Settings) -> Iterator[Check]:
    """LibreChat's ``.env``: its code key is one of ours; its base URL answers."""
    try:
        env = _dotenv(path)
    except OSError as exc:
        yield Check(
            "librechat key",
            "fail",
            f"cannot read {path}: {exc.strerror}",
            "give the path of LibreChat's .env",
        )
        return
    key = env.get("LIBRECHAT_CODE_API_KEY", "")
    if settings.uses_api_keys and key not in settings.api_key_list():
        said = "is not set" if not key else "matches none of CUSTOM_RCE_API_KEY's keys"
        yield Check(
            "librechat key",
            "fail",
            f"LIBRECHAT_CODE_API_KEY {said}",
            "set LIBRECHAT_CODE_API_KEY to the value of CUSTOM_RCE_API_KEY",
        )
    elif settings.uses_api_keys:
        yield Check("librechat key", "ok", "LIBRECHAT_CODE_API_KEY is one of our keys")
    base = env.get("LIBRECHAT_CODE_BASEURL", "")
    if not base.startswith(("http://", "https://")):
        yield Check(
            "librechat url",
            "fail",
            f"LIBRECHAT_CODE_BASEURL is {base or 'not set'!r}",
            f"set LIBRECHAT_CODE_BASEURL=http://<this host>:{settings.port}",
        )
    elif _reachable(base):
        yield Check("librechat url", "ok", f"{base} answers /health")
    else:
        yield Check(
            "librechat url",
            "warn",
            f"{base} does not answer /health from here (it may from LibreChat's network)",
            f"check the host name and port {settings.port}",
        )


def run_checks(inputs: Inputs) -> list[Check]:
    """Every check, in order."""
    settings, checks = load_settings()
    image = settings.sandbox_image if settings else os.environ.get("RCE_IMAGE_NAME", "")
    info = inspect_engine(image or "custom-rce-kernel:latest")
    checks.insert(0, check_engine(info))
    if settings is None:
        return checks
    if info.error:
        checks += [Check("runtime", "skip", "no engine"), Check("image", "skip", "no engine")]
    else:
        checks += [check_runtime(info, settings), check_image(info, settings, recipe_hash())]
    checks.append(check_store(settings))
    if not any(c.name == "auth" for c in checks):
        checks.append(check_auth(settings))
    if inputs.jwt:
        checks.append(check_jwt(inputs.jwt, settings))
    if inputs.librechat_env:
        checks.extend(check_librechat_env(inputs.librechat_env, settings))
    return checks
