"""``open_store``: the storage URL picks and configures the adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.factory import open_store
from storage.folder import FolderSessionStore
from storage.s3 import S3SessionStore


def test_absolute_file_url_is_a_folder_store(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/sessions")
    assert isinstance(store, FolderSessionStore)
    assert store.root == tmp_path / "sessions"


def test_relative_file_url_is_relative_to_the_working_directory() -> None:
    store = open_store("file://.rce/sessions")
    assert isinstance(store, FolderSessionStore)
    assert store.root == Path(".rce/sessions")


def test_s3_url_names_bucket_and_prefix() -> None:
    """No request is made when lifecycle management is off."""
    store = open_store(
        "s3://my-bucket/rce/sessions",
        endpoint="http://127.0.0.1:9",
        access_key="k",
        secret_key="s",
        manage_lifecycle=False,
    )
    assert isinstance(store, S3SessionStore)
    assert (store.bucket, store.prefix, store.endpoint) == (
        "my-bucket",
        "rce/sessions/",
        "http://127.0.0.1:9",
    )


def test_s3_url_without_prefix() -> None:
    store = open_store("s3://b-1", endpoint="http://127.0.0.1:9", manage_lifecycle=False)
    assert isinstance(store, S3SessionStore)
    assert store.prefix == ""


@pytest.mark.parametrize("url", ["http://x", "s3://", "file://", "/var/lib/rce", ""])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="RCE_STORAGE"):
        open_store(url)
