"""``vclock``: dominance, concurrency with fallbacks, the merged clock, malformed clocks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from couchfarm.resolvers import merge_clocks
from couchfarm.settings import StrategySpec
from tests.resolvers.factory import body_of, clocks, leaf, resolve

FAST = settings(deadline=None, max_examples=100)


def test_dominating_clock_wins_whatever_the_rev() -> None:
    old = leaf("9-fff", {"vclock": {"a": 1}, "v": "old"})
    new = leaf("2-aaa", {"vclock": {"a": 2, "b": 1}, "v": "new"})
    assert body_of("vclock", old, new) == {"vclock": {"a": 2, "b": 1}, "v": "new"}


def test_missing_clock_is_the_empty_clock() -> None:
    assert body_of("vclock", leaf("9-f", {"v": 1}), leaf("1-a", {"vclock": {"a": 1}, "v": 2}))["v"] == 2


def test_concurrent_falls_back_to_winner_and_merges_clocks() -> None:
    x = leaf("2-aaa", {"vclock": {"a": 2, "b": 0}, "v": "x"})
    y = leaf("2-bbb", {"vclock": {"a": 1, "b": 1}, "v": "y"})
    z = leaf("3-ccc", {"vclock": {"a": 1}, "v": "z"})  # dominated by x: must not win via fallback
    assert body_of("vclock", x, y, z) == {"vclock": {"a": 2, "b": 1}, "v": "y"}


def test_concurrent_falls_back_to_lww_given_as_text_or_mapping() -> None:
    x = leaf("2-aaa", {"vc": {"a": 1}, "t": "2024-01-02T00:00:00Z", "v": "x"})
    y = leaf("2-bbb", {"vc": {"b": 1}, "t": "2024-01-01T00:00:00Z", "v": "y"})
    text = "vclock:field=vc,fallback=lww:field=t"
    assert body_of(text, x, y)["v"] == "x"
    mapping = {"field": "vc", "fallback": {"strategy": "lww", "options": {"field": "t"}}}
    assert body_of(StrategySpec(strategy="vclock", options=mapping), x, y) == {
        "vc": {"a": 1, "b": 1},
        "t": "2024-01-02T00:00:00Z",
        "v": "x",
    }


def test_equal_clocks_with_different_bodies_use_the_fallback() -> None:
    x, y = leaf("2-aaa", {"vclock": {"a": 1}, "v": "x"}), leaf("2-bbb", {"vclock": {"a": 1}, "v": "y"})
    assert body_of("vclock", x, y)["v"] == "y"


def test_malformed_clock_fails_the_document_instead_of_raising() -> None:
    for bad in ([1], {"a": "1"}, {"a": -1}, {"a": True}, "a:1"):
        result = resolve("vclock", leaf("2-a", {"vclock": {"a": 1}}), leaf("2-b", {"vclock": bad}))
        assert result.unresolvable and "2-b" in result.unresolvable and "vclock" in result.unresolvable


@FAST
@given(clocks, clocks, clocks)
def test_merge_clocks_is_a_join(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    assert merge_clocks([a, b]) == merge_clocks([b, a])
    assert merge_clocks([a, merge_clocks([b, c])]) == merge_clocks([merge_clocks([a, b]), c])
    assert merge_clocks([a, a]) == merge_clocks([a])
    merged = merge_clocks([a, b])
    assert all(merged[node] >= count for clock in (a, b) for node, count in clock.items())


@FAST
@given(st.lists(clocks, min_size=2, max_size=4))
def test_result_clock_dominates_every_leaf(all_clocks: list[dict[str, int]]) -> None:
    leaves = [leaf(f"2-{i:x}", {"vclock": c}) for i, c in enumerate(all_clocks)]
    assert body_of("vclock", *leaves)["vclock"] == merge_clocks(all_clocks)
