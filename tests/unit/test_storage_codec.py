"""The pure helpers under the store adapters: checks, text encoding, metadata."""

from __future__ import annotations

import hashlib
import io
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidId, InvalidRequest, StorageError
from core.identity import FileKind, Owner
from storage._codec import (
    MAX_NAME_BYTES,
    ClosingChunks,
    HashingReader,
    as_utc,
    build_meta,
    check_key_part,
    check_name,
    decode_text,
    encode_text,
    meta_from_json,
    meta_from_s3,
    meta_to_json,
    s3_metadata,
)
from storage.base import NewFile

NEW = NewFile("sess", "file", "dir/naïve 📊.csv", Owner("t", "ü"), FileKind.SKILL, "text/csv", True)
SHA = "a" * 64


class TestTextEncoding:
    @given(st.text())
    def test_any_text_round_trips_through_ascii(self, text: str) -> None:
        """Any valid text encodes to URL-safe ASCII and decodes back unchanged."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return
        encoded = encode_text(text)
        assert set(encoded) <= set(string.ascii_letters + string.digits + "-_")
        assert decode_text(encoded) == text

    @pytest.mark.parametrize("garbage", ["a", "!!!!", "_w"])
    def test_garbage_is_a_value_error(self, garbage: str) -> None:
        with pytest.raises(ValueError, match="base64url"):
            decode_text(garbage)


class TestChecks:
    @pytest.mark.parametrize("value", ["abc", "A_b-9", "x" * 128, "V1StGXR8_Z5jdHi6B-myT"])
    def test_safe_key_parts_pass(self, value: str) -> None:
        assert check_key_part(value, "id") == value

    @pytest.mark.parametrize("value", ["", ".", "..", "a/b", "a.b", "é", "x" * 129, "a\n"])
    def test_unsafe_key_parts_are_invalid_ids(self, value: str) -> None:
        with pytest.raises(InvalidId, match="session id"):
            check_key_part(value, "session id")

    def test_name_limit_counts_utf8_bytes(self) -> None:
        assert check_name("é" * (MAX_NAME_BYTES // 2)) == "é" * (MAX_NAME_BYTES // 2)
        with pytest.raises(InvalidRequest, match="over 1024 bytes"):
            check_name("é" * (MAX_NAME_BYTES // 2) + "x")

    @pytest.mark.parametrize(("name", "message"), [("", "empty"), ("\udc80", "Unicode")])
    def test_empty_and_unencodable_names_are_refused(self, name: str, message: str) -> None:
        with pytest.raises(InvalidRequest, match=message):
            check_name(name)


class TestS3Metadata:
    def test_metadata_is_ascii_and_round_trips(self) -> None:
        """Everything ``put`` writes comes back from what HEAD returns."""
        metadata = s3_metadata(NEW, SHA)
        assert all(value.isascii() for value in metadata.values())
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        upper = {key.upper(): value for key, value in metadata.items()}  # servers vary case
        meta = meta_from_s3(
            "sess", "file", upper, content_type="text/csv", size=3, last_modified=moment,
            etag='"abc"',
        )  # fmt: skip
        assert meta == build_meta(NEW, size=3, sha256=SHA, etag="abc", at=moment)

    def test_over_two_kilobytes_is_refused(self) -> None:
        big = NewFile("s", "f", "n", Owner("t" * 1600, "u"))
        with pytest.raises(InvalidRequest, match="2048-byte limit"):
            s3_metadata(big, SHA)

    def test_foreign_metadata_is_a_storage_error(self) -> None:
        with pytest.raises(StorageError, match="did not write"):
            meta_from_s3(
                "s", "f", {"name": "%%%"}, content_type="", size=0,
                last_modified=datetime.now(UTC), etag="",
            )  # fmt: skip

    def test_missing_metadata_falls_back_to_defaults(self) -> None:
        """An object written by another tool still lists: named by its file id."""
        meta = meta_from_s3(
            "s", "f", {}, content_type="", size=1, last_modified=datetime(2026, 1, 1), etag=""
        )
        assert (meta.name, meta.kind, meta.content_type) == (
            "f",
            FileKind.USER,
            "application/octet-stream",
        )
        assert meta.last_modified.tzinfo is UTC


class TestFolderJson:
    def test_json_document_round_trips(self) -> None:
        moment = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
        meta = build_meta(NEW, size=10, sha256=SHA, etag="v1", at=moment)
        assert meta_from_json("sess", "file", meta_to_json(meta, "v1")) == meta

    def test_broken_document_is_a_storage_error(self) -> None:
        with pytest.raises(StorageError, match="unreadable"):
            meta_from_json("s", "f", {"name": "x"})


class TestStreams:
    def test_hashing_reader_counts_and_hashes_what_passes(self) -> None:
        data = bytes(range(256)) * 1000
        reader = HashingReader(io.BytesIO(data))
        assert b"".join(reader.chunks(1000)) == data
        assert (reader.size, reader.sha256) == (len(data), hashlib.sha256(data).hexdigest())

    def test_closing_chunks_closes_once_even_if_never_iterated(self) -> None:
        closed: list[bool] = []
        chunks = ClosingChunks(iter([b"a"]), lambda: closed.append(True))
        chunks.close()
        chunks.close()
        assert closed == [True]

    def test_closing_chunks_closes_when_exhausted(self) -> None:
        closed: list[bool] = []
        assert list(ClosingChunks(iter([b"a", b"b"]), lambda: closed.append(True))) == [b"a", b"b"]
        assert closed == [True]


def test_as_utc_normalises_offsets_and_naive_values() -> None:
    east = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(east) == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert as_utc(datetime(2026, 1, 1)).tzinfo is UTC
