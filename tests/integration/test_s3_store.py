"""S3-only behaviour of ``S3SessionStore`` that the shared contract cannot express:
bucket and credential errors, lifecycle rules, bounded expiry, metadata limits."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import FileNotFound, InvalidRequest, StoragePermissionDenied, StorageUnavailable
from core.identity import Caller, Owner
from core.ids import new_id
from runner.base import Language, RunResult
from runner.fake import FakeSandbox
from runner.service import ExecPolicy, ExecRequest, execute
from storage.access import delete_file
from storage.base import NewFile
from storage.s3 import LIFECYCLE_RULE_ID, S3SessionStore
from tests.support.s3_plugin import make_s3_store, random_bucket
from tests.support.seaweed import READER_ACCESS_KEY, SeaweedServer

OWNER = Owner("tenant", "user")


def _put(store: S3SessionStore, sid: str, name: str = "f.txt") -> str:
    fid = new_id()
    store.put(NewFile(sid, fid, name, OWNER), io.BytesIO(name.encode()))
    return fid


class TestMissingBucket:
    def test_operations_on_a_missing_bucket_say_to_create_it(self, moto_endpoint: str) -> None:
        """A missing bucket is ``StorageUnavailable`` with the fix in the message."""
        store = make_s3_store(moto_endpoint, random_bucket(), create=False)
        for operation in (store.ping, lambda: store.list(new_id()), lambda: _put(store, new_id())):
            with pytest.raises(StorageUnavailable, match="does not exist.*create it"):
                operation()

    def test_ensure_bucket_creates_it_once(self, moto_endpoint: str) -> None:
        store = make_s3_store(moto_endpoint, random_bucket(), create=False)
        store.ensure_bucket()
        store.ensure_bucket()
        store.ping()


class TestPrefix:
    def test_keys_live_under_the_prefix(self, moto_endpoint: str) -> None:
        """Two stores on one bucket with different prefixes do not see each other."""
        bucket, sid = random_bucket(), new_id()
        first = make_s3_store(moto_endpoint, bucket, prefix="one/")
        second = make_s3_store(moto_endpoint, bucket, prefix="/two")
        fid = _put(first, sid)
        assert second.list(sid) == []
        with pytest.raises(FileNotFound):
            second.stat(sid, fid)
        assert second.expire(datetime.now(UTC) + timedelta(minutes=1)) == 0
        assert [meta.file_id for meta in first.list(sid)] == [fid]


class TestMetadataLimit:
    def test_metadata_over_two_kilobytes_is_refused(self, moto_store: S3SessionStore) -> None:
        """S3 metadata is capped at 2 KB: a huge owner id is refused, not truncated."""
        new = NewFile(new_id(), new_id(), "f.txt", Owner("t" * 1500, "u"))
        with pytest.raises(InvalidRequest, match="2048-byte"):
            moto_store.put(new, io.BytesIO(b"x"))


class TestExpire:
    def test_expire_is_bounded_per_call(self, moto_endpoint: str) -> None:
        """At most ``expire_limit`` objects go per call; the next call takes the rest."""
        store = make_s3_store(moto_endpoint, random_bucket(), expire_limit=2)
        sid = new_id()
        for name in ("a", "b", "c"):
            _put(store, sid, name)
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert store.expire(later) == 2
        assert len(store.list(sid)) == 1
        assert store.expire(later) == 1


class TestLifecycle:
    def test_sets_a_rule_in_whole_days_and_keeps_other_rules(
        self, moto_store: S3SessionStore
    ) -> None:
        """48 h becomes 2 days, 49 h 3 days; a rule someone else set survives."""
        moto_store._client.put_bucket_lifecycle_configuration(
            Bucket=moto_store.bucket,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "someone-else",
                        "Status": "Enabled",
                        "Filter": {"Prefix": "logs/"},
                        "Expiration": {"Days": 30},
                    }
                ]
            },
        )
        assert moto_store.ensure_lifecycle(48) is True
        assert moto_store.lifecycle_days() == 2
        assert moto_store.ensure_lifecycle(49) is True
        assert moto_store.lifecycle_days() == 3
        rules = moto_store._client.get_bucket_lifecycle_configuration(Bucket=moto_store.bucket)
        assert sorted(rule.get("ID", "") for rule in rules["Rules"]) == [
            LIFECYCLE_RULE_ID,
            "someone-else",
        ]

    def test_never_less_than_one_day(self, moto_store: S3SessionStore) -> None:
        assert moto_store.ensure_lifecycle(1) is True
        assert moto_store.lifecycle_days() == 1

    def test_no_rule_reads_as_none(self, moto_store: S3SessionStore) -> None:
        assert moto_store.lifecycle_days() is None


@pytest.mark.s3
class TestOnSeaweed:
    def test_wrong_credentials_are_permission_denied(self, seaweed: SeaweedServer) -> None:
        """A wrong secret or an unknown key is ``StoragePermissionDenied``."""
        bucket = random_bucket()
        make_s3_store(seaweed.endpoint, bucket)
        for access_key, secret in (("rce-test", "wrong"), ("nobody", "wrong")):
            store = make_s3_store(
                seaweed.endpoint, bucket, create=False, access_key=access_key, secret_key=secret
            )
            with pytest.raises(StoragePermissionDenied, match="refused our credentials"):
                store.list(new_id())

    def test_a_refused_lifecycle_rule_is_logged_not_raised(
        self, seaweed: SeaweedServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A key that may not set lifecycle rules gets a warning, and start-up goes on."""
        bucket = random_bucket()
        make_s3_store(seaweed.endpoint, bucket)
        reader = make_s3_store(seaweed.endpoint, bucket, create=False, access_key=READER_ACCESS_KEY)
        assert reader.ensure_lifecycle(48) is False
        assert "no S3 lifecycle rule" in caplog.text
        with pytest.raises(StoragePermissionDenied):
            _put(reader, new_id())

    def test_lifecycle_rule_is_accepted(self, seaweed_store: S3SessionStore) -> None:
        assert seaweed_store.ensure_lifecycle(48) is True
        assert seaweed_store.lifecycle_days() == 2


class TestRequestCount:
    """The S3 requests an exec and a file deletion make, counted on moto."""

    @staticmethod
    def count(store: S3SessionStore) -> Counter[str]:
        calls: Counter[str] = Counter()

        def seen(model: Any, **_: Any) -> None:
            calls[model.name] += 1

        store._client.meta.events.register("before-call.s3", seen)
        return calls

    def test_an_exec_heads_nothing_it_just_wrote_or_deletes(
        self, moto_store: S3SessionStore
    ) -> None:
        """Per output one PutObject and one HEAD (the stored metadata), per deletion
        one DeleteObject and no HEAD (the file was just listed)."""
        sid = new_id()
        alice = Caller("tenant", "user")
        for name in ("keep.txt", "gone.txt"):
            moto_store.put(NewFile(sid, new_id(), name, alice.as_owner()), io.BytesIO(b"x"))
        sandbox = FakeSandbox(
            RunResult("", "", 0), outputs={"a.txt": b"1", "b.txt": b"2"}, deleted=["gone.txt"]
        )
        calls = self.count(moto_store)
        outcome = execute(
            ExecRequest(Language.PYTHON, "x", session_id=sid),
            alice,
            store=moto_store,
            sandbox=sandbox,
            policy=ExecPolicy(),
        )
        assert {f.name for f in outcome.files} >= {"a.txt", "b.txt"}
        assert dict(calls) == dict(
            {
                "ListObjectsV2": 1,  # the session's listing
                "HeadObject": 4,  # its two files' metadata, then each output's
                "GetObject": 2,  # both restored
                "PutObject": 2,  # the two outputs
                "DeleteObject": 1,  # the deleted input
            }
        )
        assert [m.name for m in moto_store.list(sid)] == ["a.txt", "b.txt", "keep.txt"]

    def test_a_file_deletion_is_one_head_and_one_delete(self, moto_store: S3SessionStore) -> None:
        sid, alice = new_id(), Caller("tenant", "user")
        fid = _put(moto_store, sid)
        calls = self.count(moto_store)
        delete_file(moto_store, alice, sid, fid)
        assert calls == Counter({"HeadObject": 1, "DeleteObject": 1})
        assert moto_store.list(sid) == []
