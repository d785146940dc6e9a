"""Shared fixtures. Service fixtures live in ``tests/support`` plugins:

- ``tests.support.docker_plugin``: a real Docker engine and the sandbox image
  (``docker`` marker), with leak checks by label.
- ``tests.support.s3_plugin``: a real SeaweedFS S3 server started for the session
  (``s3`` marker), and moto for the fast tier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.support.docker_plugin", "tests.support.s3_plugin"]

_KEEP_ENV = ("CI", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "PATH", "HOME")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests see no RCE_*/AWS_* settings from the developer's shell."""
    for name in list(os.environ):
        if (name.startswith(("RCE_", "AWS_")) or name == "CUSTOM_RCE_API_KEY") and (
            name not in _KEEP_ENV
        ):
            monkeypatch.delenv(name, raising=False)
    yield
