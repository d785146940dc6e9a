"""Read-only engine facts for ``runner.engine_info`` (docker-py stays behind ``runner/``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from runner._docker_errors import engine_errors


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """``/version``, ``/info`` and the image's labels (None: no such image)."""

    version: str
    runtimes: tuple[str, ...]
    default_runtime: str
    image_labels: dict[str, str] | None


def engine_facts(image: str, *, timeout_s: float) -> EngineFacts:
    """Ask the engine; ``SandboxUnavailable``/``SandboxStartFailed`` when it cannot answer."""
    with engine_errors("answer", image):
        client = docker.from_env(timeout=int(max(1, timeout_s)))
    try:
        with engine_errors("answer", image):
            api = client.api
            version: dict[str, Any] = api.version()
            info = _info(api)
            labels = _image_labels(api, image)
        return EngineFacts(
            version=str(version.get("Version", "")),
            runtimes=tuple(sorted((info.get("Runtimes") or {}).keys())),
            default_runtime=str(info.get("DefaultRuntime", "")),
            image_labels=labels,
        )
    finally:
        client.close()


def _info(api: docker.APIClient) -> dict[str, Any]:
    """``/info``, or nothing when the engine (a socket proxy) refuses it."""
    try:
        info: dict[str, Any] = api.info()
    except docker.errors.APIError:
        return {}
    return info


def _image_labels(api: docker.APIClient, image: str) -> dict[str, str] | None:
    try:
        inspected: dict[str, Any] = api.inspect_image(image)  # type: ignore[no-untyped-call]
    except docker.errors.ImageNotFound:
        return None
    return dict((inspected.get("Config") or {}).get("Labels") or {})
