"""The execute() use case, on fakes."""

from __future__ import annotations

import io

import pytest

from core.errors import AccessDenied, FileNotFound, InputsTooLarge, InvalidId, PayloadTooLarge
from core.identity import Caller, Owner
from core.ids import new_id
from runner.base import Language, Limits, RunResult
from runner.fake import FakeSandbox
from runner.service import ExecPolicy, ExecRequest, FileRef, execute
from storage.base import NewFile
from storage.memory import InMemorySessionStore

ALICE = Caller("key", "alice")
BOB = Caller("key", "bob")


@pytest.fixture(name="store")
def _store() -> InMemorySessionStore:
    return InMemorySessionStore()


def put(
    store: InMemorySessionStore, sid: str, name: str, data: bytes, owner: Caller = ALICE
) -> str:
    fid = new_id()
    store.put(NewFile(sid, fid, name, owner.as_owner()), io.BytesIO(data))
    return fid


def run(
    store: InMemorySessionStore,
    sandbox: FakeSandbox,
    request: ExecRequest,
    caller: Caller = ALICE,
    policy: ExecPolicy | None = None,
):  # type: ignore[no-untyped-def]
    return execute(request, caller, store=store, sandbox=sandbox, policy=policy or ExecPolicy())


class TestExecute:
    def test_new_exec_gets_a_new_session_and_stores_outputs(
        self, store: InMemorySessionStore
    ) -> None:
        """Without session_id, outputs land in a fresh session owned by the caller."""
        sandbox = FakeSandbox(RunResult("4\n", "", 0), outputs={"out/a.csv": b"x,y\n"})
        outcome = run(store, sandbox, ExecRequest(Language.PYTHON, "print(2+2)"))
        assert len(outcome.session_id) == 21
        [f] = outcome.files
        assert f.name == "out/a.csv"
        meta = store.stat(outcome.session_id, f.file_id)
        assert meta.owner == Owner("key", "alice")
        assert store.objects[(outcome.session_id, f.file_id)][1] == b"x,y\n"

    def test_restores_session_files_before_running(self, store: InMemorySessionStore) -> None:
        """Files stored for the session are in the workspace before the code runs."""
        sid = new_id()
        put(store, sid, "data/in.csv", b"1,2\n")
        sandbox = FakeSandbox()
        run(store, sandbox, ExecRequest(Language.PYTHON, "x", session_id=sid))
        assert sandbox.written_files == {"data/in.csv": b"1,2\n"}

    def test_refs_are_restored_under_their_names(self, store: InMemorySessionStore) -> None:
        """A files[] ref from another session appears at its requested name."""
        other = new_id()
        fid = put(store, other, "upload.csv", b"abc")
        sandbox = FakeSandbox()
        run(
            store,
            sandbox,
            ExecRequest(Language.PYTHON, "x", files=(FileRef(fid, other, "renamed.csv"),)),
        )
        assert sandbox.written_files == {"renamed.csv": b"abc"}

    def test_unchanged_outputs_upload_nothing(self, store: InMemorySessionStore) -> None:
        """An output identical to the stored file is not uploaded again."""
        sid = new_id()
        fid = put(store, sid, "same.txt", b"same")
        before = store.stat(sid, fid)
        sandbox = FakeSandbox(outputs={"same.txt": b"same"})
        outcome = run(store, sandbox, ExecRequest(Language.PYTHON, "x", session_id=sid))
        assert outcome.files == []
        assert store.stat(sid, fid) == before

    def test_changed_file_keeps_its_id(self, store: InMemorySessionStore) -> None:
        """A changed file of the session is replaced under the same id."""
        sid = new_id()
        fid = put(store, sid, "a.txt", b"old")
        outcome = run(
            store,
            FakeSandbox(outputs={"a.txt": b"new"}),
            ExecRequest(Language.PYTHON, "x", session_id=sid),
        )
        assert [f.file_id for f in outcome.files] == [fid]
        assert store.objects[(sid, fid)][1] == b"new"

    def test_deleted_inputs_are_reported_and_removed(self, store: InMemorySessionStore) -> None:
        """A file deleted by the program is gone from its session and reported."""
        sid = new_id()
        fid = put(store, sid, "gone.txt", b"bye")
        outcome = run(
            store,
            FakeSandbox(deleted=["gone.txt"]),
            ExecRequest(Language.PYTHON, "x", session_id=sid),
        )
        assert outcome.deleted_files == ["gone.txt"]
        with pytest.raises(FileNotFound):
            store.stat(sid, fid)

    def test_foreign_session_is_refused(self, store: InMemorySessionStore) -> None:
        """Bob cannot continue Alice's session."""
        sid = new_id()
        put(store, sid, "secret.txt", b"s")
        with pytest.raises(AccessDenied):
            run(store, FakeSandbox(), ExecRequest(Language.PYTHON, "x", session_id=sid), caller=BOB)

    def test_foreign_ref_is_refused(self, store: InMemorySessionStore) -> None:
        """Bob cannot restore Alice's file by id."""
        sid = new_id()
        fid = put(store, sid, "secret.txt", b"s")
        sandbox = FakeSandbox()
        with pytest.raises(AccessDenied):
            run(
                store,
                sandbox,
                ExecRequest(Language.PYTHON, "x", files=(FileRef(fid, sid),)),
                caller=BOB,
            )
        assert sandbox.ran == []

    def test_bad_session_id(self, store: InMemorySessionStore) -> None:
        """A session id of the wrong shape is a 400-class error."""
        with pytest.raises(InvalidId):
            run(store, FakeSandbox(), ExecRequest(Language.PYTHON, "x", session_id="../etc"))

    def test_code_over_the_limit(self, store: InMemorySessionStore) -> None:
        """Oversized code is refused before any sandbox starts."""
        with pytest.raises(PayloadTooLarge):
            run(
                store,
                FakeSandbox(),
                ExecRequest(Language.PYTHON, "x" * 11),
                policy=ExecPolicy(max_code_bytes=10),
            )

    def test_timeout_is_capped(self, store: InMemorySessionStore) -> None:
        """A caller's timeout cannot exceed the server's maximum."""
        sandbox = FakeSandbox()
        run(
            store,
            sandbox,
            ExecRequest(Language.PYTHON, "x", timeout_s=10_000),
            policy=ExecPolicy(max_run_timeout_s=60),
        )
        assert sandbox.ran[0].limits.run_timeout_s == 60

    def test_skipped_outputs_are_named_in_stderr(self, store: InMemorySessionStore) -> None:
        """Outputs left out by a cap are named where the model will read them."""
        from runner.base import SkippedFile

        outcome = run(
            store,
            FakeSandbox(skipped=[SkippedFile("big.bin", "larger than 10 bytes")]),
            ExecRequest(Language.PYTHON, "x"),
        )
        assert "big.bin" in outcome.run.stderr


def test_changed_read_only_file_comes_back_as_the_original(store: InMemorySessionStore) -> None:
    """LibreChat expects a changed read-only (skill) file as the original ref, inherited."""
    other = new_id()
    fid = new_id()
    store.put(
        NewFile(other, fid, "skills/SKILL.md", ALICE.as_owner(), read_only=True),
        io.BytesIO(b"orig"),
    )
    outcome = run(
        store,
        FakeSandbox(outputs={"skills/SKILL.md": b"changed"}),
        ExecRequest(Language.BASH, "x", files=(FileRef(fid, other),)),
    )
    [f] = outcome.files
    assert (f.file_id, f.session_id, f.inherited) == (fid, other, True)
    assert store.objects[(other, fid)][1] == b"orig"


class TestOwnersAndNames:
    def test_shared_file_is_never_replaced_by_another_users_output(
        self, store: InMemorySessionStore
    ) -> None:
        """Bob writing ``data.csv`` in a session where Alice shared ``data.csv`` gets his
        own file; Alice's object keeps her bytes and her ownership."""
        from core.identity import FileKind

        sid, fid = new_id(), new_id()
        store.put(
            NewFile(sid, fid, "data.csv", ALICE.as_owner(), kind=FileKind.AGENT),
            io.BytesIO(b"alice"),
        )
        outcome = run(
            store,
            FakeSandbox(outputs={"data.csv": b"bob"}),
            ExecRequest(Language.PYTHON, "x", session_id=sid),
            caller=BOB,
        )
        [f] = outcome.files
        assert f.file_id != fid
        assert store.objects[(sid, fid)][0].owner == ALICE.as_owner()
        assert store.objects[(sid, fid)][1] == b"alice"
        assert store.objects[(sid, f.file_id)][0].owner == BOB.as_owner()
        # Bob's next exec restores his own version, not Alice's.
        sandbox = FakeSandbox()
        run(store, sandbox, ExecRequest(Language.PYTHON, "x", session_id=sid), caller=BOB)
        assert sandbox.written_files == {"data.csv": b"bob"}

    def test_input_is_checked_again_when_opened(self, store: InMemorySessionStore) -> None:
        """A file that changed owner between the listing and the open is not streamed."""
        sid = new_id()
        fid = put(store, sid, "in.txt", b"bob's", owner=BOB)
        inner = FakeSandbox()

        class Swapping(FakeSandbox):
            def run(self, request):  # type: ignore[no-untyped-def]
                store.put(NewFile(sid, fid, "in.txt", ALICE.as_owner()), io.BytesIO(b"alice's"))
                return inner.run(request)

        with pytest.raises(AccessDenied):
            run(store, Swapping(), ExecRequest(Language.PYTHON, "x", session_id=sid), caller=BOB)
        assert inner.written_files == {}

    def test_hostile_output_names_are_skipped_and_the_run_answers(
        self, store: InMemorySessionStore
    ) -> None:
        """Refused output names are skipped with a reason (shown escaped); the rest is saved."""
        deep = "/".join(["d" * 50] * 40) + "/f.txt"
        outputs = {"evil\u202egnp.exe": b"1", "a\\b": b"2", deep: b"3", "ok.txt": b"4"}
        outcome = run(
            store,
            FakeSandbox(RunResult("hi\n", "", 0), outputs=outputs),
            ExecRequest(Language.PYTHON, "x"),
        )
        assert [f.name for f in outcome.files] == ["ok.txt"]
        assert outcome.run.stdout == "hi\n"
        shown = {s.name for s in outcome.run.skipped}
        assert "evil\\u202egnp.exe" in shown and "a\\\\b" in shown
        assert all("\u202e" not in s.name and len(s.name) <= 300 for s in outcome.run.skipped)
        assert len(outcome.run.skipped) == 3

    def test_unchanged_large_input_is_not_skipped(self, store: InMemorySessionStore) -> None:
        """The sandbox is asked to compare files up to the largest input, so an untouched
        input over the limit is not reported; a changed one is skipped by the real limit."""
        from runner.base import Limits

        sid = new_id()
        put(store, sid, "big.bin", b"x" * 5000)
        policy = ExecPolicy(limits=Limits(max_file_bytes=1000))
        sandbox = FakeSandbox()
        outcome = run(
            store, sandbox, ExecRequest(Language.PYTHON, "x", session_id=sid), policy=policy
        )
        assert sandbox.ran[0].limits.max_file_bytes == 5000
        assert outcome.run.skipped == [] and "not saved" not in outcome.run.stderr
        changed = FakeSandbox(outputs={"big.bin": b"y" * 5000})
        outcome = run(
            store, changed, ExecRequest(Language.PYTHON, "x", session_id=sid), policy=policy
        )
        [skip] = outcome.run.skipped
        assert skip.name == "big.bin" and "1000 byte limit" in skip.reason
        assert outcome.files == []


ANONYMOUS = Caller("key", None)


class TestWorkspaceCap:
    def test_inputs_over_the_workspace_are_refused_before_the_sandbox(
        self, store: InMemorySessionStore
    ) -> None:
        """Restored bytes are capped at the workspace size: 413-class error, no run."""
        sid = new_id()
        fid = put(store, sid, "big.bin", b"x" * 600)
        sandbox = FakeSandbox()
        policy = ExecPolicy(limits=Limits(workspace_bytes=1000))
        with pytest.raises(InputsTooLarge, match="RCE_WORKSPACE_SIZE"):
            run(
                store,
                sandbox,
                ExecRequest(
                    Language.PYTHON,
                    "x",
                    files=(FileRef(fid, sid, "a.bin"), FileRef(fid, sid, "b.bin")),
                ),
                policy=policy,
            )
        assert sandbox.ran == []

    def test_inputs_that_fit_run(self, store: InMemorySessionStore) -> None:
        """One reference of the same file fits."""
        sid = new_id()
        fid = put(store, sid, "big.bin", b"x" * 600)
        sandbox = FakeSandbox()
        policy = ExecPolicy(limits=Limits(workspace_bytes=1000))
        run(
            store,
            sandbox,
            ExecRequest(Language.PYTHON, "x", files=(FileRef(fid, sid),)),
            policy=policy,
        )
        assert sandbox.written_files == {"big.bin": b"x" * 600}


class TestAnonymousKeyCaller:
    def test_reads_a_users_file_by_id(self, store: InMemorySessionStore) -> None:
        """Capability read: a key caller naming no user may restore a file by its ids."""
        sid = new_id()
        fid = put(store, sid, "data.csv", b"a,b\n")
        sandbox = FakeSandbox()
        outcome = run(
            store, sandbox, ExecRequest(Language.PYTHON, "x", files=(FileRef(fid, sid),)), ANONYMOUS
        )
        assert sandbox.written_files == {"data.csv": b"a,b\n"}
        assert outcome.session_id != sid

    def test_cannot_write_into_a_users_session(self, store: InMemorySessionStore) -> None:
        """An exec in a session holding a user's files would write there: refused."""
        sid = new_id()
        put(store, sid, "data.csv", b"a,b\n")
        sandbox = FakeSandbox(outputs={"data.csv": b"overwritten"})
        with pytest.raises(AccessDenied):
            run(store, sandbox, ExecRequest(Language.PYTHON, "x", session_id=sid), ANONYMOUS)
        assert sandbox.ran == []

    def test_continues_its_own_session(self, store: InMemorySessionStore) -> None:
        """Its own (anonymous) session is its to continue."""
        sid = new_id()
        put(store, sid, "mine.txt", b"1", owner=ANONYMOUS)
        sandbox = FakeSandbox()
        outcome = run(store, sandbox, ExecRequest(Language.PYTHON, "x", session_id=sid), ANONYMOUS)
        assert outcome.session_id == sid
