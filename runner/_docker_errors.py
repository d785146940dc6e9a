"""Docker and requests exceptions, translated into ``core.errors`` at the adapter's edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors
import requests.exceptions

from core.errors import (
    SandboxError,
    SandboxImageMissing,
    SandboxStartFailed,
    SandboxUnavailable,
)

#: Statuses a proxy answers when the engine behind it is down.
_GATEWAY_DOWN = frozenset((502, 503, 504))


@contextmanager
def engine_errors(action: str, image: str) -> Iterator[None]:
    """Translate docker/requests exceptions into ``core.errors`` at the edge."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise SandboxImageMissing(
            f"the sandbox image {image!r} is not on the Docker engine: "
            "build it with images/build.sh"
        ) from exc
    except docker.errors.APIError as exc:
        if getattr(exc, "status_code", None) in _GATEWAY_DOWN:
            # The socket proxy answers, the engine behind it does not.
            raise SandboxUnavailable(
                f"the Docker engine does not answer behind its proxy (while trying to "
                f"{action}): {exc.explanation or exc}"
            ) from exc
        raise SandboxStartFailed(
            f"the Docker engine refused to {action}: {exc.explanation or exc}"
        ) from exc
    except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as exc:
        raise SandboxUnavailable(
            f"no Docker engine answers (while trying to {action}): {exc}"
        ) from exc


def already_gone(exc: SandboxError) -> bool:
    """A removal that failed because the container is gone or going."""
    cause = exc.__cause__
    status = getattr(cause, "status_code", None)
    return status == 404 or (status == 409 and "already in progress" in exc.message)
