"""``S3SessionStore``: session files in an S3 bucket (AWS, MinIO, SeaweedFS).

The only module that imports boto3 or botocore. Keys are
``{prefix}{session_id}/{file_id}``; everything else about a file is the object's
user metadata (``storage._codec.s3_metadata``) plus its Content-Type, size,
ETag and Last-Modified. Bytes stream in and out with bounded memory.

Every boto3 call goes through ``_edge``, which turns botocore errors into the
service's own: missing key -> ``FileNotFound``; refused, timed out, 5xx or
throttled -> ``StorageUnavailable``; bad credentials -> ``StoragePermissionDenied``.
Timeouts and retries are short and bounded so an unreachable server fails in
seconds.
"""

from __future__ import annotations

import builtins
import logging
import math
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from core.errors import (
    CodeInterpreterError,
    FileNotFound,
    InvalidRequest,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
)
from storage._codec import (
    ClosingChunks,
    HashingReader,
    as_utc,
    build_meta,
    check_key_part,
    check_new_file,
    meta_from_s3,
    s3_metadata,
    utc_now,
)
from storage.base import CHUNK_SIZE, FileMeta, NewFile, StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import LifecycleRuleTypeDef, ObjectIdentifierTypeDef

logger = logging.getLogger(__name__)

#: ID of the lifecycle rule this store manages on its bucket.
LIFECYCLE_RULE_ID = "rce-session-expiry"
#: Data above this many bytes is spooled to disk while it is hashed.
SPOOL_MAX_BYTES = 1024 * 1024
_PART_BYTES = 8 * 1024 * 1024
_DELETE_BATCH = 1000

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "403",
    }
)
_BUSY_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "503",
    }
)
_TOO_LARGE_CODES = frozenset({"EntityTooLarge", "KeyTooLongError", "MetadataTooLarge"})


def _error_code(exc: ClientError) -> tuple[str, int]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code, status


def _not_found(session_id: str, file_id: str) -> FileNotFound:
    return FileNotFound(f"no file {file_id} in session {session_id}")


_session_lock = threading.Lock()
_shared_session: boto3.session.Session | None = None


def _new_client(**options: Any) -> S3Client:
    """An S3 client from one shared boto3 session: the service model is loaded once
    (~70 ms per session otherwise). Sessions are not thread-safe, hence the lock."""
    global _shared_session
    with _session_lock:
        if _shared_session is None:
            _shared_session = boto3.session.Session()
        return _shared_session.client("s3", **options)


def _client_config(
    *, path_style: bool, connect_timeout_s: float, read_timeout_s: float, max_attempts: int
) -> Config:
    return Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=16,
        # Only the checksums S3 requires: MinIO, SeaweedFS and older servers
        # reject or mishandle the newer default ones.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if path_style else None,
    )


class S3SessionStore:
    """A ``SessionStore`` in ``bucket`` under ``prefix``.

    With no ``endpoint_url`` and no keys it is plain AWS with the standard
    credential chain (environment, profile, instance or task role). With
    ``endpoint_url`` it talks to MinIO, SeaweedFS or any S3-compatible server
    (path-style addressing).

    Each request connects within ``connect_timeout_s``, waits at most
    ``read_timeout_s`` for data and is tried ``max_attempts`` times in all
    (botocore's "standard" retries, with jittered backoff), so a dead server is
    reported in seconds. ``list`` HEADs up to ``head_workers`` objects at once;
    ``expire`` deletes at most ``expire_limit`` objects per call. The store is
    safe to share between threads.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 10.0,
        max_attempts: int = 3,
        head_workers: int = 8,
        expire_limit: int = 10_000,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.head_workers = head_workers
        self.expire_limit = expire_limit
        #: Where requests go (named in error messages).
        self.endpoint = endpoint_url or "AWS S3"
        self._transfer = TransferConfig(
            use_threads=False, multipart_threshold=_PART_BYTES, multipart_chunksize=_PART_BYTES
        )
        config = _client_config(
            path_style=endpoint_url is not None,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            max_attempts=max_attempts,
        )
        with self._edge("create the S3 client"):
            self._client = _new_client(
                endpoint_url=endpoint_url,
                region_name=region or ("us-east-1" if endpoint_url else None),
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
            )
        self.endpoint = self._client.meta.endpoint_url

    # --- the port ---------------------------------------------------------------------

    def put(self, new: NewFile, data: BinaryIO) -> FileMeta:
        """Stream ``data`` into the bucket. Without ``new.sha256`` the data is first
        spooled (memory up to 1 MiB, then a temp file) while it is hashed."""
        check_new_file(new)
        s3_metadata(new, "0" * 64)  # refuse an over-long name before reading the data
        key = self._key(new.session_id, new.file_id)
        with self._edge(f"store file {new.file_id} of session {new.session_id}"):
            if new.sha256 is None:
                size, sha256 = self._upload_spooled(key, new, data)
            else:
                size, sha256 = self._upload_stream(key, new, data, new.sha256)
            return self._stored_meta(new, size, sha256)

    def open(self, session_id: str, file_id: str) -> StoredObject:
        """Open a file; its chunks stream from the GET response body."""
        key = self._key(session_id, file_id)
        action = f"read file {file_id} of session {session_id}"
        with self._edge(action, missing=_not_found(session_id, file_id)):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            meta = _response_meta(session_id, file_id, response)
        except StorageError:
            body.close()
            raise
        chunks = self._body_chunks(body.iter_chunks(CHUNK_SIZE), action)
        return StoredObject(meta=meta, chunks=ClosingChunks(chunks, body.close))

    def stat(self, session_id: str, file_id: str) -> FileMeta:
        """The metadata of one file (a HEAD request)."""
        return self._head(session_id, file_id)

    def list(self, session_id: str) -> list[FileMeta]:
        """Every file of a session: a paginated listing, then HEADs in parallel."""
        file_ids = self._list_file_ids(session_id)
        if not file_ids:
            return []
        with ThreadPoolExecutor(max_workers=min(self.head_workers, len(file_ids))) as pool:
            found = pool.map(lambda file_id: self._head_or_none(session_id, file_id), file_ids)
            metas = [meta for meta in found if meta is not None]
        return sorted(metas, key=lambda meta: (meta.name, meta.file_id))

    def delete(self, session_id: str, file_id: str, *, missing_ok: bool = False) -> None:
        """Remove a file; ``FileNotFound`` when it is not there. S3 deletes a missing
        key without complaint, so only without ``missing_ok`` is it HEADed first."""
        if not missing_ok:
            self._head(session_id, file_id)
        key = self._key(session_id, file_id)
        with self._edge(f"delete file {file_id} of session {session_id}"):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def ping(self) -> None:
        """HEAD the bucket: raises unless it exists and we may use it."""
        with self._edge(f"reach the bucket {self.bucket!r}"):
            self._client.head_bucket(Bucket=self.bucket)

    def expire(self, older_than: datetime) -> int:
        """Delete up to ``expire_limit`` files modified before ``older_than``.

        For servers without lifecycle rules; with a rule S3 does this itself.
        """
        cutoff = as_utc(older_than)
        with self._edge("delete expired files"):
            keys = list(islice(self._old_keys(cutoff), self.expire_limit))
            for start in range(0, len(keys), _DELETE_BATCH):
                self._delete_keys(keys[start : start + _DELETE_BATCH])
        return len(keys)

    # --- set-up (tests, local stack, start-up) ----------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist yet."""
        with self._edge(f"create the bucket {self.bucket!r}"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _error_code(exc)[0] not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            self._create_bucket()

    def ensure_lifecycle(self, ttl_hours: float) -> bool:
        """Make S3 expire this store's objects after ``ceil(ttl_hours / 24)`` days
        (at least one). Other rules on the bucket are kept. Never raises: when the
        server refuses or lacks lifecycle support it logs a warning and returns False.
        """
        days = max(1, math.ceil(ttl_hours / 24))
        try:
            rules = self._lifecycle_rules()
            if any(self._is_our_rule(cast("Mapping[str, Any]", rule), days) for rule in rules):
                return True
            others = [rule for rule in rules if rule.get("ID") != LIFECYCLE_RULE_ID]
            with self._edge(f"set a lifecycle rule on the bucket {self.bucket!r}"):
                self._client.put_bucket_lifecycle_configuration(
                    Bucket=self.bucket,
                    LifecycleConfiguration={"Rules": [*others, self._lifecycle_rule(days)]},
                )
        except CodeInterpreterError as exc:
            logger.warning(
                "no S3 lifecycle rule on s3://%s/%s (%s); expired sessions are removed "
                "only by the sweeper. Grant s3:PutLifecycleConfiguration or add an "
                "expiration rule of %d day(s) yourself.",
                self.bucket,
                self.prefix,
                exc.message,
                days,
            )
            return False
        logger.info(
            "S3 lifecycle: objects under s3://%s/%s expire after %d day(s)",
            self.bucket,
            self.prefix,
            days,
        )
        return True

    def lifecycle_days(self) -> int | None:
        """Days after which this store's lifecycle rule expires objects, or None when
        the bucket has no such rule."""
        for rule in self._lifecycle_rules():
            if rule.get("ID") == LIFECYCLE_RULE_ID and rule.get("Status") == "Enabled":
                days = cast("Mapping[str, Any]", rule.get("Expiration", {})).get("Days")
                return int(days) if days is not None else None
        return None

    # --- helpers ---------------------------------------------------------------------

    @contextmanager
    def _edge(self, action: str, *, missing: FileNotFound | None = None) -> Iterator[None]:
        """Translate botocore/boto3 errors raised inside into the service's errors.

        ``missing`` is raised for a 404 on a key; without it a 404 means the bucket.
        """
        try:
            yield
        except ClientError as exc:
            raise self._translate(exc, action, missing) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StoragePermissionDenied(
                f"cannot {action}: no S3 credentials found (set RCE_S3_ACCESS_KEY and "
                "RCE_S3_SECRET_KEY, or give the process an AWS role)"
            ) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise StorageUnavailable(
                f"cannot {action}: the S3 endpoint {self.endpoint} does not answer ({exc})"
            ) from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise StorageUnavailable(f"cannot {action} at {self.endpoint}: {exc}") from exc

    def _translate(
        self, exc: ClientError, action: str, missing: FileNotFound | None
    ) -> CodeInterpreterError:
        code, status = _error_code(exc)
        where = f"S3 at {self.endpoint}"
        if code == "NoSuchBucket" or (missing is None and code in _MISSING_CODES):
            return StorageUnavailable(
                f"cannot {action}: the bucket {self.bucket!r} does not exist at {where}; "
                f"create it (aws s3 mb s3://{self.bucket}) or fix RCE_STORAGE"
            )
        if missing is not None and code in _MISSING_CODES:
            return missing
        if code in _DENIED_CODES or status == 403:
            return StoragePermissionDenied(
                f"cannot {action}: {where} refused our credentials ({code}); check "
                "RCE_S3_ACCESS_KEY, RCE_S3_SECRET_KEY and the bucket policy"
            )
        if code in _BUSY_CODES or status >= 500:
            return StorageUnavailable(f"cannot {action}: {where} is unavailable ({code}); retry")
        if code in _TOO_LARGE_CODES:
            return InvalidRequest(f"cannot {action}: {where} refused it as too large ({code})")
        return StorageError(f"cannot {action}: {where} answered {code or status}: {exc}")

    def _session_prefix(self, session_id: str) -> str:
        return f"{self.prefix}{check_key_part(session_id, 'session id')}/"

    def _key(self, session_id: str, file_id: str) -> str:
        return self._session_prefix(session_id) + check_key_part(file_id, "file id")

    def _upload(self, key: str, body: BinaryIO, new: NewFile, sha256: str) -> None:
        self._client.upload_fileobj(
            body,
            self.bucket,
            key,
            ExtraArgs={"Metadata": s3_metadata(new, sha256), "ContentType": new.content_type},
            Config=self._transfer,
        )

    def _upload_spooled(self, key: str, new: NewFile, data: BinaryIO) -> tuple[int, str]:
        reader = HashingReader(data)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
            for chunk in reader.chunks():
                spool.write(chunk)
            spool.seek(0)
            self._upload(key, cast("BinaryIO", spool), new, reader.sha256)
        return reader.size, reader.sha256

    def _upload_stream(
        self, key: str, new: NewFile, data: BinaryIO, sha256: str
    ) -> tuple[int, str]:
        # Not seekable, so s3transfer reads it once, one part (8 MiB) at a time.
        reader = HashingReader(data)
        self._upload(key, cast("BinaryIO", reader), new, sha256)
        return reader.size, sha256

    def _stored_meta(self, new: NewFile, size: int, sha256: str) -> FileMeta:
        """What S3 now holds, or (when a racing writer already replaced it) what we
        wrote."""
        stored = self._head_or_none(new.session_id, new.file_id)
        if stored is not None and stored.sha256 == sha256 and stored.size == size:
            return stored
        return build_meta(new, size=size, sha256=sha256, etag="", at=utc_now())

    def _head(self, session_id: str, file_id: str) -> FileMeta:
        key = self._key(session_id, file_id)
        action = f"read file {file_id} of session {session_id}"
        with self._edge(action, missing=_not_found(session_id, file_id)):
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        return _response_meta(session_id, file_id, response)

    def _head_or_none(self, session_id: str, file_id: str) -> FileMeta | None:
        try:
            return self._head(session_id, file_id)
        except FileNotFound:
            return None

    def _body_chunks(self, chunks: Iterator[bytes], action: str) -> Iterator[bytes]:
        with self._edge(action):
            yield from chunks

    def _list_file_ids(self, session_id: str) -> builtins.list[str]:
        prefix = self._session_prefix(session_id)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._edge(f"list session {session_id}"):
            keys = [
                item["Key"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]
        names = (key.removeprefix(prefix) for key in keys)
        return [name for name in names if self._is_key_part(name)]

    @staticmethod
    def _is_key_part(value: str) -> bool:
        try:
            check_key_part(value, "key")
        except InvalidRequest:
            return False
        return True

    def _old_keys(self, cutoff: datetime) -> Iterator[str]:
        """Keys shaped ``{prefix}{session}/{file}`` last modified before ``cutoff``."""
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                parts = item["Key"].removeprefix(self.prefix).split("/")
                if len(parts) != 2 or not all(map(self._is_key_part, parts)):
                    continue
                if as_utc(item["LastModified"]) < cutoff:
                    yield item["Key"]

    def _delete_keys(self, keys: Sequence[str]) -> None:
        objects: builtins.list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys]
        response = self._client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
        )
        errors = response.get("Errors", [])
        if errors:
            raise StorageUnavailable(
                f"S3 at {self.endpoint} did not delete {len(errors)} expired object(s): "
                f"{errors[0].get('Code', '')} {errors[0].get('Message', '')}"
            )

    def _create_bucket(self) -> None:
        region = self._client.meta.region_name
        try:
            if region and region != "us-east-1":
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": cast(Any, region)},
                )
            else:
                self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc)[0] != "BucketAlreadyOwnedByYou":
                raise

    def _lifecycle_rules(self) -> builtins.list[LifecycleRuleTypeDef]:
        with self._edge(f"read the lifecycle rules of the bucket {self.bucket!r}"):
            try:
                response = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc)[0] == "NoSuchLifecycleConfiguration":
                    return []
                raise
        return cast("list[LifecycleRuleTypeDef]", response.get("Rules", []))

    def _lifecycle_rule(self, days: int) -> LifecycleRuleTypeDef:
        return {
            "ID": LIFECYCLE_RULE_ID,
            "Status": "Enabled",
            "Filter": {"Prefix": self.prefix},
            "Expiration": {"Days": days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }

    def _is_our_rule(self, rule: Mapping[str, Any], days: int) -> bool:
        prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
        return bool(
            rule.get("ID") == LIFECYCLE_RULE_ID
            and rule.get("Status") == "Enabled"
            and rule.get("Expiration", {}).get("Days") == days
            and prefix == self.prefix
        )


def _response_meta(session_id: str, file_id: str, response: Mapping[str, Any]) -> FileMeta:
    """The metadata of a GET or HEAD answer (the same headers in both)."""
    return meta_from_s3(
        session_id,
        file_id,
        response.get("Metadata", {}),
        content_type=response.get("ContentType", ""),
        size=response.get("ContentLength", 0),
        last_modified=response["LastModified"],
        etag=response.get("ETag", ""),
    )
