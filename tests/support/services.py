"""How a test that needs a real service reacts when it is missing.

Locally the test is skipped with the reason. In CI (``CI=true``) it fails: a CI run
that silently skipped the Docker or S3 tier would prove nothing.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True when running under CI (``CI=true``)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(reason: str) -> None:
    """Skip (locally) or fail (in CI) the current test because a service is missing."""
    if in_ci():
        pytest.fail(f"required service missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)
