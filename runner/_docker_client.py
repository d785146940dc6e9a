"""Docker API clients for an engine named by URL (one of ``RCE_DOCKER_HOSTS``).

A ``tcp://`` engine uses TLS as the docker SDK reads it from the environment
(``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``): the same client material for every
remote engine. A ``unix://`` engine (a local socket proxy) uses none.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import docker
import docker.utils

from runner._docker_errors import engine_errors

#: The SDK's default timeout for API calls (attached streams have their own deadlines).
API_TIMEOUT_S = 60.0


def client_factory(url: str, timeout_s: float = API_TIMEOUT_S) -> Callable[[], docker.APIClient]:
    """A factory of low-level clients for the engine at ``url``."""

    def make() -> docker.APIClient:
        environment = {"DOCKER_HOST": url}
        if url.startswith("tcp://"):
            for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
                if os.environ.get(name):
                    environment[name] = os.environ[name]
        kwargs = docker.utils.kwargs_from_env(environment=environment)
        return docker.APIClient(timeout=int(max(1, timeout_s)), **kwargs)

    return make


def probe(url: str, image: str, timeout_s: float) -> Callable[[], None]:
    """A health check of the engine at ``url``: it answers a ping and has ``image``.

    One client, kept between checks; every call has ``timeout_s``.
    """
    make = client_factory(url, timeout_s)
    holder: list[docker.APIClient] = []

    def check() -> None:
        with engine_errors("answer a health check", image):
            if not holder:
                holder.append(make())
            api = holder[0]
            api.ping()
            api.inspect_image(image)  # type: ignore[no-untyped-call]

    return check
