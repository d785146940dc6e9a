"""The pure planning of restore and sync, on literal manifests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from runner.sync import (
    Delete,
    Output,
    Skip,
    StoredRef,
    SyncPlan,
    Upload,
    collect_limit,
    plan_restore,
    plan_sync,
    size_reason,
)

SID = "S" * 21
OTHER = "O" * 21
LIMIT = 1000


def ids() -> Callable[[str], str]:
    return lambda name: f"new-{name}"


def plan(
    outputs: Mapping[str, Output] | None = None,
    *,
    restored: Mapping[str, StoredRef] | None = None,
    writable: Mapping[str, StoredRef] | None = None,
    deleted: Iterable[str] = (),
    max_file_bytes: int = LIMIT,
) -> SyncPlan:
    return plan_sync(
        restored=restored or {},
        writable=writable or {},
        outputs=outputs or {},
        deleted=deleted,
        new_id=ids(),
        max_file_bytes=max_file_bytes,
    )


class TestPlanSync:
    def test_new_output_gets_a_new_id(self) -> None:
        """A file the session never had is uploaded under a fresh id."""
        assert plan({"out.csv": Output("d1", 4)}).uploads == [
            Upload("out.csv", "new-out.csv", replaces=False)
        ]

    def test_changed_own_file_keeps_its_id(self) -> None:
        """A changed file of the caller's own, in the exec's session, is replaced in place."""
        own = {"a.txt": StoredRef(SID, "fa", "old", 3)}
        result = plan({"a.txt": Output("new", 3)}, restored=own, writable=own)
        assert result.uploads == [Upload("a.txt", "fa", replaces=True)]

    def test_unchanged_session_uploads_nothing(self) -> None:
        """Twenty files with their stored digests upload nothing."""
        own = {f"f{i}": StoredRef(SID, f"id{i}", f"d{i}") for i in range(20)}
        result = plan({f"f{i}": Output(f"d{i}") for i in range(20)}, restored=own, writable=own)
        assert result.uploads == []
        assert len(result.unchanged) == 20

    def test_output_over_a_file_of_another_session_is_new(self) -> None:
        """A ref restored from another session is never overwritten there."""
        restored = {"a.txt": StoredRef(OTHER, "fa", "old")}
        result = plan({"a.txt": Output("new")}, restored=restored)
        assert result.uploads == [Upload("a.txt", "new-a.txt", replaces=False)]

    def test_deleted_own_file_is_deleted(self) -> None:
        """Deleting a file of the caller's own in the exec's session deletes it."""
        own = {"a.txt": StoredRef(SID, "fa", "d")}
        result = plan(restored=own, writable=own, deleted=["a.txt"])
        assert result.deletes == [Delete("a.txt", "fa")]
        assert result.deleted_names == ["a.txt"]

    def test_deleted_foreign_file_is_only_reported(self) -> None:
        """A deleted input restored from another session stays in that session."""
        result = plan(restored={"a.txt": StoredRef(OTHER, "fa", "d")}, deleted=["a.txt"])
        assert result.deletes == []
        assert result.deleted_names == ["a.txt"]


class TestOwners:
    """Files the caller may read but not write (another owner's shared files)."""

    SHARED = {"data.csv": StoredRef(SID, "alice-file", "alice-digest", 10)}

    def test_changed_shared_file_becomes_a_new_file_of_the_caller(self) -> None:
        """Bob changing Alice's shared ``data.csv`` writes his own object, never hers."""
        result = plan({"data.csv": Output("bob-digest", 10)}, restored=self.SHARED)
        assert result.uploads == [Upload("data.csv", "new-data.csv", replaces=False)]

    def test_new_output_named_like_a_shared_file_is_a_new_file(self) -> None:
        """An output whose name another owner holds (not restored) is new as well."""
        result = plan({"data.csv": Output("bob-digest", 10)})
        assert [u.file_id for u in result.uploads] == ["new-data.csv"]

    def test_deleting_a_shared_file_does_not_delete_it(self) -> None:
        """Bob's program removing Alice's file only reports it."""
        result = plan(restored=self.SHARED, deleted=["data.csv"])
        assert result.deletes == [] and result.deleted_names == ["data.csv"]

    def test_own_file_shadowed_by_a_ref_is_not_deleted(self) -> None:
        """Deleting the ref that shadowed an own file does not delete the own file."""
        own = {"a.txt": StoredRef(SID, "own", "d1")}
        result = plan(
            restored={"a.txt": StoredRef(OTHER, "ref", "d2")}, writable=own, deleted=["a.txt"]
        )
        assert result.deletes == []


class TestReadOnly:
    def test_changed_read_only_input_is_kept(self) -> None:
        """A read-only input the program changed is neither stored nor replaced."""
        ro = {"skill.md": StoredRef(SID, "fs", "orig", read_only=True)}
        result = plan({"skill.md": Output("changed")}, restored=ro)
        assert result.uploads == [] and result.kept_read_only == ["skill.md"]

    def test_deleted_read_only_input_stays_stored(self) -> None:
        """Deleting a read-only input in the sandbox does not delete it from the store."""
        ro = {"skill.md": StoredRef(SID, "fs", "orig", read_only=True)}
        result = plan(restored=ro, writable=ro, deleted=["skill.md"])
        assert result.deletes == [] and result.deleted_names == ["skill.md"]


class TestNames:
    def test_outputs_with_refused_names_are_skipped_with_the_reason(self) -> None:
        """Bidi, control, backslash and over-long names are skipped, the rest saved."""
        bad = {
            "evil\u202egnp.exe": "invisible",
            "bell\x01.txt": "control",
            "a\\b.txt": "backslash",
            "x" * 300: "component",
            "/".join(["d" * 50] * 40): "longer than 1024",
        }
        result = plan({**{n: Output("d") for n in bad}, "ok.txt": Output("d")})
        assert [u.name for u in result.uploads] == ["ok.txt"]
        reasons = {skip.name: skip.reason for skip in result.skipped}
        assert set(reasons) == set(bad)
        for name, word in bad.items():
            assert word in reasons[name], (name, reasons[name])


class TestSizes:
    def test_unchanged_input_over_the_limit_is_not_skipped(self) -> None:
        """An input bigger than the limit that comes back with its digest is unchanged."""
        big = {"big.bin": StoredRef(SID, "fb", "d", 5000)}
        result = plan({"big.bin": Output("d", 5000)}, restored=big, writable=big)
        assert result.skipped == [] and result.uploads == []
        assert result.unchanged == ["big.bin"]

    def test_changed_input_over_the_limit_is_skipped(self) -> None:
        """A changed file over the limit is skipped with the limit's reason."""
        big = {"big.bin": StoredRef(SID, "fb", "d", 5000)}
        result = plan({"big.bin": Output("d2", 5001)}, restored=big, writable=big)
        assert result.skipped == [Skip("big.bin", size_reason(LIMIT))]
        assert result.uploads == []

    def test_new_output_over_the_limit_is_skipped(self) -> None:
        """A new output over the limit is skipped; one at the limit is saved."""
        result = plan({"big": Output("a", LIMIT + 1), "fits": Output("b", LIMIT)})
        assert result.skipped == [Skip("big", size_reason(LIMIT))]
        assert [u.name for u in result.uploads] == ["fits"]

    def test_collect_limit_covers_every_restored_input(self) -> None:
        """The sandbox compares files up to the largest input (at least the limit)."""
        restored = {"a": StoredRef(SID, "1", "x", 10), "b": StoredRef(SID, "2", "y", 7000)}
        assert collect_limit(LIMIT, restored) == 7000
        assert collect_limit(LIMIT, {}) == LIMIT
        assert collect_limit(LIMIT, {"a": restored["a"]}) == LIMIT


class TestPlanRestore:
    def test_refs_win_over_session_files(self) -> None:
        """An explicit files[] ref replaces a same-named session file."""
        session = {"a": StoredRef(SID, "1", "x"), "b": StoredRef(SID, "2", "y")}
        refs = {"a": StoredRef(OTHER, "3", "z")}
        assert plan_restore(session, refs) == {"a": refs["a"], "b": session["b"]}
