"""The pure planning of restore and sync."""

from __future__ import annotations

from collections.abc import Callable

from runner.sync import Delete, StoredRef, Upload, plan_restore, plan_sync

SID = "S" * 21
OTHER = "O" * 21


def ids() -> Callable[[str], str]:
    return lambda name: f"new-{name}"


class TestPlanSync:
    def test_new_output_gets_a_new_id(self) -> None:
        """A file the session never had is uploaded under a fresh id."""
        plan = plan_sync(SID, {}, {"out.csv": "d1"}, [], ids())
        assert plan.uploads == [Upload("out.csv", "new-out.csv", replaces=False)]

    def test_changed_file_keeps_its_id(self) -> None:
        """A changed file of the exec's own session is replaced in place."""
        own = {"a.txt": StoredRef(SID, "fa", "old")}
        plan = plan_sync(SID, own, {"a.txt": "new"}, [], ids())
        assert plan.uploads == [Upload("a.txt", "fa", replaces=True)]

    def test_unchanged_session_uploads_nothing(self) -> None:
        """Twenty files with their stored digests upload nothing."""
        own = {f"f{i}": StoredRef(SID, f"id{i}", f"d{i}") for i in range(20)}
        plan = plan_sync(SID, own, {f"f{i}": f"d{i}" for i in range(20)}, [], ids())
        assert plan.uploads == []
        assert len(plan.unchanged) == 20

    def test_output_over_a_file_of_another_session_is_new(self) -> None:
        """A ref restored from another session is never overwritten there."""
        own = {"a.txt": StoredRef(OTHER, "fa", "old")}
        plan = plan_sync(SID, own, {"a.txt": "new"}, [], ids())
        assert plan.uploads == [Upload("a.txt", "new-a.txt", replaces=False)]

    def test_deleted_own_file_is_deleted(self) -> None:
        """Deleting a file of the exec's own session deletes it from the store."""
        own = {"a.txt": StoredRef(SID, "fa", "d")}
        plan = plan_sync(SID, own, {}, ["a.txt"], ids())
        assert plan.deletes == [Delete("a.txt", "fa")]
        assert plan.deleted_names == ["a.txt"]

    def test_deleted_foreign_file_is_only_reported(self) -> None:
        """A deleted input restored from another session stays in that session."""
        own = {"a.txt": StoredRef(OTHER, "fa", "d")}
        plan = plan_sync(SID, own, {}, ["a.txt"], ids())
        assert plan.deletes == []
        assert plan.deleted_names == ["a.txt"]


class TestPlanRestore:
    def test_refs_win_over_session_files(self) -> None:
        """An explicit files[] ref replaces a same-named session file."""
        session = {"a": StoredRef(SID, "1", "x"), "b": StoredRef(SID, "2", "y")}
        refs = {"a": StoredRef(OTHER, "3", "z")}
        assert plan_restore(session, refs) == {"a": refs["a"], "b": session["b"]}


class TestReadOnly:
    def test_changed_read_only_input_is_kept(self) -> None:
        """A read-only input the program changed is neither stored nor replaced."""
        own = {"skill.md": StoredRef(SID, "fs", "orig")}
        plan = plan_sync(SID, own, {"skill.md": "changed"}, [], ids(), read_only={"skill.md"})
        assert plan.uploads == [] and plan.kept_read_only == ["skill.md"]

    def test_deleted_read_only_input_stays_stored(self) -> None:
        """Deleting a read-only input in the sandbox does not delete it from the store."""
        own = {"skill.md": StoredRef(SID, "fs", "orig")}
        plan = plan_sync(SID, own, {}, ["skill.md"], ids(), read_only={"skill.md"})
        assert plan.deletes == [] and plan.deleted_names == ["skill.md"]
