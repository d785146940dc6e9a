"""Create the session bucket and its expiry rule on MinIO or SeaweedFS (local/up.sh).

    uv run python local/setup_bucket.py --endpoint http://127.0.0.1:8333 \\
        --bucket rce-local --prefix sessions --ttl-hours 48

Credentials come from ``RCE_S3_ACCESS_KEY`` / ``RCE_S3_SECRET_KEY``. It waits up to
``--wait`` seconds for the server to answer, creates the bucket when it is missing
and sets the lifecycle rule the API itself would set (``rce-session-expiry``:
objects under the prefix expire after ``ceil(ttl / 24)`` days). A server without
lifecycle support gets a warning, not a failure: the API's sweeper expires
sessions then. Idempotent.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from urllib.parse import urlsplit

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import MinioException, S3Error
from minio.lifecycleconfig import (
    AbortIncompleteMultipartUpload,
    Expiration,
    LifecycleConfig,
    Rule,
)
from urllib3.exceptions import HTTPError

RULE_ID = "rce-session-expiry"


def client_for(endpoint: str, region: str) -> Minio:
    """A MinIO SDK client for an ``http(s)://host:port`` endpoint."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SystemExit(f"error: --endpoint must be http(s)://host:port, not {endpoint!r}")
    return Minio(
        parts.netloc,
        access_key=os.environ.get("RCE_S3_ACCESS_KEY") or None,
        secret_key=os.environ.get("RCE_S3_SECRET_KEY") or None,
        secure=parts.scheme == "https",
        region=region,
    )


def wait_for(client: Minio, bucket: str, wait_s: float) -> bool:
    """Poll until the server answers; returns whether the bucket exists."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return bool(client.bucket_exists(bucket))
        except S3Error as exc:  # the server answered: wrong keys, no permission, ...
            raise SystemExit(f"error: the S3 server refused: {exc.code}: {exc.message}") from exc
        except (MinioException, HTTPError, OSError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"error: no S3 server answers ({exc})") from exc
            time.sleep(0.5)


def expiry_rule(prefix: str, ttl_hours: float) -> Rule:
    """The API's own rule: whole days, rounded up, at least one."""
    days = max(1, math.ceil(ttl_hours / 24))
    return Rule(
        ENABLED,
        rule_filter=Filter(prefix=prefix.strip("/") + "/" if prefix.strip("/") else ""),
        rule_id=RULE_ID,
        expiration=Expiration(days=days),
        abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(1),
    )


def ensure_lifecycle(client: Minio, bucket: str, rule: Rule) -> bool:
    """Put ``rule`` on the bucket, keeping other rules; False when unsupported."""
    try:
        current = client.get_bucket_lifecycle(bucket)
        others = [r for r in (current.rules if current else []) if r.rule_id != RULE_ID]
        client.set_bucket_lifecycle(bucket, LifecycleConfig([*others, rule]))
    except (MinioException, HTTPError) as exc:
        sys.stderr.write(
            f"warning: no lifecycle rule on {bucket} ({exc}); the API's sweeper expires sessions\n"
        )
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="sessions")
    parser.add_argument("--ttl-hours", type=float, default=48.0)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)

    client = client_for(args.endpoint, args.region)
    if not wait_for(client, args.bucket, args.wait):
        client.make_bucket(args.bucket)
        print(f"==> created bucket {args.bucket}", file=sys.stderr)
    if ensure_lifecycle(client, args.bucket, expiry_rule(args.prefix, args.ttl_hours)):
        print(f"==> lifecycle rule {RULE_ID} on {args.bucket}/{args.prefix}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
