"""Workspace names: what is accepted, normalized and refused."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from core.names import normalize_name


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
