"""The lattice rules of ``fields`` are joins: commutative, associative, idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from couchfarm.resolvers import MISSING, MergeError, merge_values
from tests.resolvers.factory import records, scalars

FAST = settings(deadline=None, max_examples=100)
bottoms = st.just(MISSING) | st.none()
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "max": bottoms | st.integers(-9, 9) | st.floats(-9, 9, allow_nan=False),
    "min": bottoms | st.sampled_from(["a", "b", "ab", ""]),
    "union": bottoms | st.lists(scalars | st.lists(scalars, max_size=2), max_size=4),
    "append": bottoms | st.lists(records, max_size=4),
}
RULES: dict[str, Any] = {"max": "max", "min": "min", "union": "union", "append": {"append": {"key": "id"}}}


@pytest.mark.parametrize("kind", sorted(VALUES))
@FAST
@given(data=st.data())
def test_join_laws(kind: str, data: st.DataObject) -> None:
    rule, values = RULES[kind], VALUES[kind]
    a, b, c = data.draw(values), data.draw(values), data.draw(values)

    def join(*vs: Any) -> Any:
        return merge_values(rule, list(vs))

    assert join(a, b) == join(b, a)
    assert join(a, join(b, c)) == join(join(a, b), c) == join(a, b, c)
    assert join(a, a) == join(a) == join(join(a))


def test_union_is_sorted_canonically_and_deduplicated() -> None:
    assert merge_values("union", [[3, "a", {"b": 1, "a": 2}], [1, 3, None, True, {"a": 2, "b": 1}]]) == [
        None,
        True,
        1,
        3,
        "a",
        {"a": 2, "b": 1},
    ]


def test_missing_is_below_null_is_below_values() -> None:
    assert merge_values("max", [MISSING]) is MISSING
    assert merge_values("max", [MISSING, None]) is None
    assert merge_values("max", [None, -5, MISSING]) == -5


@pytest.mark.parametrize(
    ("rule", "values"),
    [("max", [1, "1"]), ("min", [True, 1]), ("max", [[1]]), ("union", [1]), ("append", [[1]])],
)
def test_values_that_do_not_fit_raise_merge_error(rule: str, values: list[Any]) -> None:
    with pytest.raises(MergeError):
        merge_values(rule, values)


def test_non_lattice_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="not a lattice rule"):
        merge_values("lww", [1])
