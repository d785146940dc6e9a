"""Build the configured ``SessionStore`` from a URL (``RCE_STORAGE``).

- ``file:///var/lib/rce`` or ``file://.rce/sessions`` (relative to the working
  directory): ``FolderSessionStore``.
- ``s3://bucket`` or ``s3://bucket/prefix``: ``S3SessionStore``; ``endpoint`` set
  means MinIO, SeaweedFS or another S3-compatible server, unset means AWS.

boto3 is imported only when an ``s3://`` URL asks for it.
"""

from __future__ import annotations

from storage.base import SessionStore
from storage.folder import FolderSessionStore

_FILE = "file://"
_S3 = "s3://"


def open_store(
    url: str,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    ttl_hours: float = 48.0,
    manage_lifecycle: bool = True,
) -> SessionStore:
    """The store ``url`` names. ``ValueError`` for a URL of another shape.

    For S3 with ``manage_lifecycle``, a bucket lifecycle rule expiring objects after
    ``ttl_hours`` (rounded up to whole days) is set when the server allows it; a
    refusal is logged, never raised. Folder stores expire through ``expire()``.
    """
    if url.startswith(_FILE):
        return FolderSessionStore(_folder_path(url))
    if url.startswith(_S3):
        return _open_s3(
            url,
            endpoint=endpoint,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            ttl_hours=ttl_hours,
            manage_lifecycle=manage_lifecycle,
        )
    raise ValueError(f"RCE_STORAGE must be file:///path or s3://bucket[/prefix], not {url!r}")


def _folder_path(url: str) -> str:
    path = url.removeprefix(_FILE)
    if path.startswith("localhost/"):
        path = path.removeprefix("localhost")
    if not path:
        raise ValueError("RCE_STORAGE=file:// needs a path, e.g. file:///var/lib/rce")
    return path


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix(_S3).partition("/")
    if not bucket:
        raise ValueError(f"RCE_STORAGE={url!r} names no bucket: use s3://bucket[/prefix]")
    return bucket, prefix


def _open_s3(
    url: str,
    *,
    endpoint: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    ttl_hours: float,
    manage_lifecycle: bool,
) -> SessionStore:
    from storage.s3 import S3SessionStore  # boto3 only when S3 is configured

    bucket, prefix = _split_s3(url)
    store = S3SessionStore(
        bucket,
        prefix=prefix,
        endpoint_url=endpoint,
        region=region,
        access_key=access_key,
        secret_key=secret_key,
    )
    if manage_lifecycle:
        store.ensure_lifecycle(ttl_hours)
    return store
