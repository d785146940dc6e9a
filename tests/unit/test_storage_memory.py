"""The in-memory fake records state that unit tests assert on."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.identity import Owner
from storage.base import NewFile
from storage.memory import InMemorySessionStore

OWNER = Owner("t", "u")


def test_objects_hold_metadata_and_bytes() -> None:
    """``objects[(session_id, file_id)]`` is what the store holds."""
    store = InMemorySessionStore()
    store.put(NewFile("s1", "f1", "out/plot.png", OWNER), io.BytesIO(b"png"))
    meta, data = store.objects[("s1", "f1")]
    assert (meta.name, meta.size, data) == ("out/plot.png", 3, b"png")


def test_tests_can_seed_and_age_objects() -> None:
    """Writing ``objects`` directly arranges state, e.g. an old file to expire."""
    store = InMemorySessionStore()
    meta = store.put(NewFile("s1", "f1", "a", OWNER), io.BytesIO(b"a"))
    old = datetime.now(UTC) - timedelta(days=3)
    store.objects[("s1", "f1")] = (replace(meta, last_modified=old), b"a")
    assert store.expire(datetime.now(UTC) - timedelta(days=2)) == 1
    assert store.objects == {}
