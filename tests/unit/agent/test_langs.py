"""Language runners: file names, commands and flags, without running a compiler."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rce_agent.langs import RUNNERS, plan_for
from rce_agent.langs.java import classes

from runner.base import Language

ALL = [lang.value for lang in Language]


def test_every_language_the_host_knows_has_a_runner() -> None:
    assert sorted(RUNNERS) == sorted(ALL)


def test_unknown_language_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        plan_for("cobol", "", str(tmp_path))


@pytest.mark.parametrize("lang", ALL)
def test_source_goes_to_the_build_dir_only(lang: str, tmp_path: Path) -> None:
    build = tmp_path / "build"
    plan_for(lang, "code", str(build))
    written = [p for p in build.iterdir() if p.is_file()]
    assert len(written) == 1 and written[0].read_text() == "code"


@pytest.mark.parametrize(
    ("lang", "needles"),
    [
        ("c", ["gcc", "-lm"]),
        ("cpp", ["g++", "-lm"]),
        ("rs", ["rustc", "--edition 2021"]),
        ("go", ["go build", "main.go"]),
        ("ts", ["esbuild", "node"]),
        ("f90", ["gfortran", "-J"]),
        ("d", ["gdc"]),
    ],
)
def test_compiled_languages_compile_then_exec_in_the_workspace(
    lang: str, needles: list[str], tmp_path: Path
) -> None:
    plan = plan_for(lang, "x", str(tmp_path))
    assert plan.argv[:2] == ["/bin/sh", "-c"]
    script = plan.argv[2]
    for needle in needles:
        assert needle in script
    assert "|| exit;" in script and "cd /mnt/data && exec " in script and script.endswith('"$@"')


def test_compile_failure_is_the_exit_code_and_args_reach_the_program(tmp_path: Path) -> None:
    """The shell wrapper itself, with stand-in compile and program commands."""
    from rce_agent.langs.base import compile_and_run

    plan = compile_and_run(str(tmp_path), ["sh", "-c", "echo boom >&2; exit 3"], ["true"])
    script = plan.argv[2].replace("/mnt/data", str(tmp_path))
    done = subprocess.run(["sh", "-c", script, "main"], capture_output=True, text=True)
    assert done.returncode == 3 and "boom" in done.stderr
    plan = compile_and_run(str(tmp_path), ["true"], ["printf", "%s|"])
    script = plan.argv[2].replace("/mnt/data", str(tmp_path))
    done = subprocess.run(["sh", "-c", script, "main", "a b", "c"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "a b|c|"


def test_go_gets_a_writable_cache_in_the_build_dir(tmp_path: Path) -> None:
    plan = plan_for("go", "package main", str(tmp_path))
    assert plan.env["GOCACHE"].startswith(str(tmp_path))
    assert "/opt/rce/gocache" in plan.argv[2]


def test_python_runs_in_process_when_warm(tmp_path: Path) -> None:
    plan = plan_for("py", "print(1)", str(tmp_path))
    assert plan.python == str(tmp_path / "main.py")
    assert plan.argv == ["python3", plan.python] and not plan.env


class TestJava:
    def test_public_class_names_the_file_and_runs_by_source_launcher(self, tmp_path: Path) -> None:
        plan = plan_for("java", "public class Main { }", str(tmp_path))
        assert (tmp_path / "Main.java").exists()
        assert plan.argv[0] == "java" and plan.argv[-1].endswith("/Main.java")
        assert "-XX:TieredStopAtLevel=1" in plan.argv and "-XX:+UseSerialGC" in plan.argv

    def test_helper_before_the_public_class_compiles_with_javac(self, tmp_path: Path) -> None:
        code = "package a.b;\nclass Helper {}\npublic class Greeter { }"
        plan = plan_for("java", code, str(tmp_path))
        assert (tmp_path / "Greeter.java").exists()
        assert "javac" in plan.argv[2] and plan.argv[2].rstrip().endswith('a.b.Greeter "$@"')

    def test_class_detection_ignores_comments_and_nested_classes(self) -> None:
        code = (
            "// class Fake {}\n/* public class Nope {} */\n"
            "public final class Outer {\n  static class Inner {}\n}\n"
        )
        assert classes(code) == ("Outer", "Outer", None)
        assert classes("record R(int x) {}\nclass Main {}") == ("R", None, None)
