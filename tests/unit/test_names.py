"""Workspace names: what is accepted, normalized and refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidRequest
from core.names import (
    MAX_COMPONENT_BYTES,
    MAX_DISPLAY_CHARS,
    MAX_NAME_BYTES,
    check_name,
    display_name,
    name_problem,
    normalize_name,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.csv", "a.csv"),
        ("dir/b.png", "dir/b.png"),
        ("./c.txt", "c.txt"),
        ("/mnt/data/d.txt", "d.txt"),
        ("dir//e.txt", "dir/e.txt"),
        ("données/été.csv", "données/été.csv"),
        ("数据.xlsx", "数据.xlsx"),
    ],
)
def test_accepted_names(raw: str, expected: str) -> None:
    """Relative names, nested or Unicode, come back canonical."""
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("../../etc/passwd", r"'\.\.'"),
        ("a/../../b", r"'\.\.'"),
        ("/etc/passwd", "absolute"),
        ("a\x00b", "control"),
        ("evil\u202egnp.exe", "invisible"),
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 300, "component"),
        ("/".join(["d" * 200] * 6), "longer than 1024"),
        ("a\\b.txt", "backslash"),
        ("..\\..\\x", "backslash"),
        ("zero\u200bwidth", "invisible"),
        ("line\u2028sep", "control or invisible"),
        ("\udc80", "control or invisible"),
    ],
)
def test_refused_names(raw: str, reason: str) -> None:
    """Escapes, control and bidi characters and over-long names are refused."""
    with pytest.raises(InvalidRequest, match=reason):
        normalize_name(raw)


def test_ids_refuse_a_trailing_newline() -> None:
    """An id with a trailing newline is not an id."""
    from core.ids import is_valid_id, new_id

    value = new_id()
    assert is_valid_id(value) and not is_valid_id(value + "\n")


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("", "empty"),
        ("/abs", "absolute"),
        ("a//b", "empty or '.'"),
        ("./a", "empty or '.'"),
        ("a/", "empty or '.'"),
        ("a/../b", "'..'"),
        ("a\\b", "backslash"),
        ("\u202ecod.exe", "invisible"),
        ("é" * 128, "component"),
        ("/".join(["d" * 50] * 40), "longer than 1024"),
    ],
)
def test_output_names_are_checked_not_rewritten(name: str, word: str) -> None:
    """``check_name`` (outputs) refuses what ``normalize_name`` would have rewritten."""
    problem = name_problem(name)
    assert problem is not None and word in problem
    with pytest.raises(InvalidRequest, match=word.replace(".", r"\.")):
        check_name(name)


def test_limits_are_inclusive() -> None:
    """A component of exactly 255 bytes and a name of exactly 1024 bytes pass."""
    assert check_name("é" * (MAX_COMPONENT_BYTES // 2) + "x") is not None
    name = "/".join(["d" * 255] * 3 + ["d" * 254, "x"])
    assert len(name.encode()) == MAX_NAME_BYTES
    assert check_name(name) == name


_NAME_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")


@given(st.text(_NAME_CHARS, max_size=80))
def test_normalize_is_idempotent_and_agrees_with_check(raw: str) -> None:
    """Whatever normalizes is accepted unchanged by ``check_name``, and normalizing
    it again gives the same name: one policy, two entry points."""
    try:
        name = normalize_name(raw)
    except InvalidRequest:
        return
    assert name_problem(name) is None
    assert normalize_name(name) == name


@given(st.text(st.characters(codec="utf-8"), max_size=2000))
def test_an_accepted_name_is_safe(name: str) -> None:
    """Any name ``check_name`` accepts is a bounded relative path with no escape, no
    backslash and no control or bidi character."""
    if name_problem(name) is not None:
        return
    parts = name.split("/")
    assert not name.startswith("/") and ".." not in parts and "" not in parts
    assert "\\" not in name and all(len(p.encode()) <= MAX_COMPONENT_BYTES for p in parts)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert not any(ord(c) < 32 or ord(c) == 0x7F or 0x202A <= ord(c) <= 0x202E for c in name)


@given(st.text(st.characters(codec="utf-8"), max_size=1000))
def test_display_name_is_bounded_and_plain(name: str) -> None:
    """A name shown back is at most ``MAX_DISPLAY_CHARS`` with no refused character."""
    shown = display_name(name)
    assert len(shown) <= MAX_DISPLAY_CHARS
    assert all(
        name_problem(c) in (None, "file name contains a backslash (use '/' between directories)")
        or c in "/."
        for c in shown
    )
