"""The status page's pure parts: the recent-exec ring and HTML escaping."""

from __future__ import annotations

from handler.recent import RecentExecs, percentile
from handler.status import _execs_section, _table


class TestRecentExecs:
    def test_percentiles_per_language_and_outcome(self) -> None:
        """p50/p99 are nearest-rank over each (language, outcome) group."""
        ring = RecentExecs()
        for ms in range(1, 101):
            ring.record("py", "ok", ms / 1000)
        ring.record("js", "timeout", 2.0)
        rows = {(s.language, s.outcome): s for s in ring.summary()}
        assert rows["py", "ok"].count == 100
        assert round(rows["py", "ok"].p50_ms) == 50 and round(rows["py", "ok"].p99_ms) == 99
        assert rows["js", "timeout"].count == 1 and rows["js", "timeout"].p99_ms == 2000

    def test_ring_is_bounded(self) -> None:
        """Only the last ``capacity`` records are kept."""
        ring = RecentExecs(capacity=3)
        for i in range(10):
            ring.record("py", "ok", float(i))
        assert [r.seconds for r in ring.records()] == [7.0, 8.0, 9.0]
        assert percentile([], 0.5) == 0.0


def test_everything_rendered_is_escaped() -> None:
    """Headers and values reach the page escaped."""
    page = _table(["<b>h</b>"], [], "<script>x</script>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    ring = RecentExecs()
    ring.record("<img src=x>", 'o"k', 0.1)
    section = _execs_section(ring.summary(), ring.capacity)
    assert "<img" not in section and "&lt;img src=x&gt;" in section and "o&quot;k" in section
