"""Owner-safe writes, on every store: the use cases (upload, exec output sync, delete)
over the in-memory fake, the folder store, S3 on moto and S3 on a real SeaweedFS.

No caller replaces, takes over or deletes a file another owner wrote; read-only
files are never deleted; an input is checked again on the version actually opened.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.errors import AccessDenied, FileNotFound, ReadOnlyFile
from core.identity import Caller, FileKind
from runner.base import Language, RunRequest, RunResult
from runner.fake import FakeSandbox
from runner.service import ExecOutcome, ExecPolicy, ExecRequest, execute
from storage import access
from storage.base import FileMeta, NewFile, SessionStore

ALICE = Caller("tenant", "alice")
BOB = Caller("tenant", "bob")


def read(store: SessionStore, meta: FileMeta) -> bytes:
    stored = store.open(meta.session_id, meta.file_id)
    try:
        return b"".join(stored.chunks)
    finally:
        stored.close()


def upload(
    store: SessionStore,
    who: Caller,
    sid: str,
    name: str,
    data: bytes,
    kind: FileKind = FileKind.USER,
    read_only: bool = False,
) -> FileMeta:
    incoming = access.Incoming(name, io.BytesIO(data))
    return access.upload_file(store, who, sid, incoming, kind=kind, read_only=read_only)


def exec_writing(
    store: SessionStore, who: Caller, sid: str, outputs: dict[str, bytes], **fake: object
) -> ExecOutcome:
    sandbox = FakeSandbox(outputs=outputs, **fake)  # type: ignore[arg-type]
    request = ExecRequest(Language.PYTHON, "x", session_id=sid)
    return execute(request, who, store=store, sandbox=sandbox, policy=ExecPolicy())


def named(store: SessionStore, sid: str, name: str) -> dict[str, bytes]:
    """``{owner user: bytes}`` of every file called ``name`` in the session."""
    out: dict[str, bytes] = {}
    for meta in store.list(sid):
        if meta.name == name:
            assert meta.owner.user not in out, f"{meta.owner.user} holds two {name!r}"
            out[meta.owner.user] = read(store, meta)
    return out


class TestExecOutputs:
    @pytest.mark.parametrize("kind", [FileKind.AGENT, FileKind.SKILL])
    def test_same_named_output_never_replaces_a_shared_file(
        self, store: SessionStore, sid: str, kind: FileKind
    ) -> None:
        """Alice shares ``data.csv``; Bob's exec writes ``data.csv``: Alice's object keeps
        her bytes and owner, Bob's output is his own file under another id."""
        shared = upload(store, ALICE, sid, "data.csv", b"alice", kind=kind)
        outcome = exec_writing(store, BOB, sid, {"data.csv": b"bob"})
        [out] = outcome.files
        assert out.file_id != shared.file_id
        assert store.stat(sid, shared.file_id).owner == ALICE.as_owner()
        assert read(store, shared) == b"alice"
        assert store.stat(sid, out.file_id).owner == BOB.as_owner()
        assert named(store, sid, "data.csv") == {"alice": b"alice", "bob": b"bob"}

    def test_output_never_replaces_another_users_exec_output(
        self, store: SessionStore, sid: str
    ) -> None:
        """Two users' exec outputs of one name in one session are two objects."""
        upload(store, ALICE, sid, "agent.md", b"shared", kind=FileKind.AGENT)
        exec_writing(store, ALICE, sid, {"data.csv": b"alice"})
        exec_writing(store, BOB, sid, {"data.csv": b"bob"})
        exec_writing(store, ALICE, sid, {"data.csv": b"alice v2"})
        assert named(store, sid, "data.csv") == {"alice": b"alice v2", "bob": b"bob"}

    def test_program_deleting_a_shared_file_does_not_delete_it(
        self, store: SessionStore, sid: str
    ) -> None:
        """Bob's program removing Alice's shared file reports it; the store keeps it."""
        shared = upload(store, ALICE, sid, "data.csv", b"alice", kind=FileKind.AGENT)
        outcome = exec_writing(store, BOB, sid, {}, deleted=["data.csv"])
        assert outcome.deleted_files == ["data.csv"]
        assert read(store, shared) == b"alice"

    def test_program_deleting_its_own_output_deletes_it(
        self, store: SessionStore, sid: str
    ) -> None:
        """The owner's own deletion still removes the file."""
        mine = upload(store, ALICE, sid, "old.txt", b"x")
        exec_writing(store, ALICE, sid, {}, deleted=["old.txt"])
        with pytest.raises(FileNotFound):
            store.stat(sid, mine.file_id)

    def test_concurrent_writers_of_one_name_keep_one_object_per_owner(
        self, store: SessionStore, sid: str
    ) -> None:
        """Eight execs each of Alice and Bob writing ``data.csv`` at once: Alice's shared
        upload is untouched, each owner ends with one whole version of their own."""
        shared = upload(store, ALICE, sid, "data.csv", b"shared", kind=FileKind.AGENT)
        jobs = [(who, f"{who.user}-{i}".encode() * 1000) for i in range(8) for who in (ALICE, BOB)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda job: exec_writing(store, job[0], sid, {"data.csv": job[1]}), jobs))
        assert read(store, shared) == b"shared"
        files = [m for m in store.list(sid) if m.name == "data.csv"]
        assert len(files) == 3
        for meta in files:
            if meta.file_id == shared.file_id:
                continue
            data = read(store, meta)
            assert (meta.owner.user, data) in {(w.user, d) for w, d in jobs}


class TestDelete:
    def test_another_owner_cannot_delete_a_shared_file(self, store: SessionStore, sid: str) -> None:
        """Bob may read Alice's shared file but not delete it."""
        shared = upload(store, ALICE, sid, "skill.md", b"s", kind=FileKind.SKILL)
        assert access.stat_file(store, BOB, sid, shared.file_id) == store.stat(sid, shared.file_id)
        with pytest.raises(AccessDenied, match="only the owner"):
            access.delete_file(store, BOB, sid, shared.file_id)
        assert read(store, shared) == b"s"

    def test_read_only_file_cannot_be_deleted_even_by_its_owner(
        self, store: SessionStore, sid: str
    ) -> None:
        """``read_only`` is honoured by DELETE."""
        ro = upload(store, ALICE, sid, "SKILL.md", b"s", kind=FileKind.SKILL, read_only=True)
        with pytest.raises(ReadOnlyFile, match="read-only"):
            access.delete_file(store, ALICE, sid, ro.file_id)
        assert read(store, ro) == b"s"

    def test_owner_deletes_own_file(self, store: SessionStore, sid: str) -> None:
        """The owner's delete works."""
        mine = upload(store, ALICE, sid, "a.txt", b"a")
        access.delete_file(store, ALICE, sid, mine.file_id)
        with pytest.raises(FileNotFound):
            store.stat(sid, mine.file_id)


class TestUpload:
    def test_upload_of_a_taken_name_is_a_new_file(self, store: SessionStore, sid: str) -> None:
        """Bob uploading ``data.csv`` next to Alice's leaves hers alone."""
        shared = upload(store, ALICE, sid, "data.csv", b"alice", kind=FileKind.AGENT)
        bobs = upload(store, BOB, sid, "data.csv", b"bob")
        assert bobs.file_id != shared.file_id
        assert named(store, sid, "data.csv") == {"alice": b"alice", "bob": b"bob"}


class TestOpenedVersion:
    def test_input_that_changed_owner_after_the_listing_is_refused(
        self, store: SessionStore, sid: str
    ) -> None:
        """The owner check runs on the version actually opened: an object rewritten
        under another owner between the listing and the open is not streamed."""
        mine = upload(store, BOB, sid, "in.txt", b"bob's")
        inner = FakeSandbox()

        class Swap(FakeSandbox):
            def run(self, request: RunRequest) -> RunResult:
                swapped = NewFile(sid, mine.file_id, "in.txt", ALICE.as_owner())
                store.put(swapped, io.BytesIO(b"alice's secret"))
                return inner.run(request)

        request = ExecRequest(Language.PYTHON, "x", session_id=sid)
        with pytest.raises(AccessDenied):
            execute(request, BOB, store=store, sandbox=Swap(), policy=ExecPolicy())
        assert inner.written_files == {}

    def test_sync_compares_with_the_version_opened(self, store: SessionStore, sid: str) -> None:
        """When the file was replaced (by its owner) after the listing, an output equal
        to the version the sandbox received is unchanged: nothing is written."""
        mine = upload(store, BOB, sid, "in.txt", b"v1")

        class Replace(FakeSandbox):
            def run(self, request: RunRequest) -> RunResult:
                store.put(NewFile(sid, mine.file_id, "in.txt", BOB.as_owner()), io.BytesIO(b"v2"))
                return super().run(request)

        sandbox = Replace(outputs={"in.txt": b"v2"})
        request = ExecRequest(Language.PYTHON, "x", session_id=sid)
        outcome = execute(request, BOB, store=store, sandbox=sandbox, policy=ExecPolicy())
        assert sandbox.written_files == {"in.txt": b"v2"}
        assert outcome.files == []


class TestSharedResources:
    def test_owners_run_does_not_rewrite_a_shared_file(self, store: SessionStore, sid: str) -> None:
        """A run of the shared file's own owner writes a user file of hers instead: the
        resource other users read is unchanged, and her next run sees her version."""
        shared = upload(store, ALICE, sid, "data.csv", b"shared", kind=FileKind.AGENT)
        [out] = exec_writing(store, ALICE, sid, {"data.csv": b"mine"}).files
        assert out.file_id != shared.file_id
        assert read(store, shared) == b"shared"
        sandbox = FakeSandbox()
        request = ExecRequest(Language.PYTHON, "x", session_id=sid)
        execute(request, ALICE, store=store, sandbox=sandbox, policy=ExecPolicy())
        assert sandbox.written_files == {"data.csv": b"mine"}
