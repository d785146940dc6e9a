"""The store fixtures every contract module runs against: the in-memory fake, the
folder store, S3 on moto and S3 on a real SeaweedFS server (``s3`` marker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.ids import new_id
from storage.base import SessionStore
from storage.folder import FolderSessionStore
from storage.memory import InMemorySessionStore


@pytest.fixture(
    name="adapter",
    params=["memory", "folder", "moto", pytest.param("seaweed", marks=pytest.mark.s3)],
)
def _adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="store")
def _store(adapter: str, request: pytest.FixtureRequest, tmp_path: Path) -> SessionStore:
    if adapter == "memory":
        return InMemorySessionStore()
    if adapter == "folder":
        return FolderSessionStore(tmp_path / "sessions")
    store: SessionStore = request.getfixturevalue(f"{adapter}_store")
    return store


@pytest.fixture(name="sid")
def _sid() -> str:
    return new_id()
