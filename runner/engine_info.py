"""What the Docker engine says about itself and the sandbox image (read only).

``EngineInfo`` is the operator's view used by ``rce doctor`` and the status page:
the engine's version and OCI runtimes, and whether the sandbox image is there with
which recipe hash. ``inspect_engine`` never raises for an engine that does not
answer: the answer says so in ``error``. Like ``runner.docker``, this module speaks
to the engine only through ``runner._docker_*``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core.errors import SandboxError
from runner._docker_info import engine_facts

#: The image label holding the hash of the recipe the image was built from.
RECIPE_LABEL = "org.rce.recipe-hash"


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """The engine and the sandbox image as the engine reports them."""

    endpoint: str
    image: str
    version: str = ""
    runtimes: tuple[str, ...] = ()
    default_runtime: str = ""
    image_present: bool = False
    image_labels: dict[str, str] = field(default_factory=dict)
    #: Why the engine could not be asked (None: it answered).
    error: str | None = None

    @property
    def recipe_hash(self) -> str:
        """The image's recipe hash label ('' when absent or no image)."""
        return self.image_labels.get(RECIPE_LABEL, "")


def inspect_engine(image: str, *, timeout_s: float = 5.0) -> EngineInfo:
    """Ask the engine at ``DOCKER_HOST`` (or the local socket) about itself and ``image``."""
    try:
        facts = engine_facts(image, timeout_s=timeout_s)
    except SandboxError as exc:
        return EngineInfo(endpoint=_endpoint(), image=image, error=exc.message)
    return EngineInfo(
        endpoint=_endpoint(),
        image=image,
        version=facts.version,
        runtimes=facts.runtimes,
        default_runtime=facts.default_runtime,
        image_present=facts.image_labels is not None,
        image_labels=facts.image_labels or {},
    )


def _endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
