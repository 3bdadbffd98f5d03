"""``fields``: every rule, missing fields, three-way merges, nested paths, malformed data."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.errors import ConfigError
from couchfarm.resolvers import build_resolver
from couchfarm.resolvers.policy import PolicyResolver
from couchfarm.settings import StrategySpec
from tests.resolvers.factory import body_of, conflict, leaf, resolve

OLD, NEW = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"


def spec(rules: dict[str, Any] | None = None, **options: Any) -> StrategySpec:
    return StrategySpec(strategy="fields", options={"timestamp": "t", "rules": rules or {}, **options})


def test_default_rule_is_lww_per_document_timestamp() -> None:
    a = leaf("2-fff", {"t": OLD, "x": 1, "y": "a"})
    b = leaf("2-000", {"t": NEW, "x": 2})
    assert body_of(spec(), a, b) == {"t": NEW, "x": 2, "y": "a"}  # y only in a: kept, not dropped


def test_per_field_timestamps_beat_the_document_timestamp() -> None:
    a = leaf("2-a", {"t": OLD, "name": "A", "phone": "1", "stamps": {"name": NEW}})
    b = leaf("2-b", {"t": NEW, "name": "B", "phone": "2", "stamps": {"name": OLD}})
    body = body_of(spec(field_timestamps="stamps"), a, b)
    assert body["name"] == "A" and body["phone"] == "2"  # phone: no stamp, so the document's
    assert body["stamps"] == {"name": NEW}  # the latest stamp of each field


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        ("max", [3, 9, 1], 9),
        ("min", [3, 9, 1], 1),
        ("max", ["b", "a"], "b"),
        ("max", [False, True], True),
        ("union", [["b", 1], ["a", 1], [None]], [None, 1, "a", "b"]),
        ({"append": {"key": "id"}}, [[{"id": 2}], [{"id": 1, "q": 1}]], [{"id": 1, "q": 1}, {"id": 2}]),
        ({"priority": ["cancelled", "shipped", "paid", "new"]}, ["paid", "shipped", "new"], "shipped"),
        ({"priority": ["cancelled", "shipped"]}, ["weird", "shipped"], "shipped"),  # unknown loses
    ],
)
def test_rules(rule: Any, values: list[Any], expected: Any) -> None:
    leaves = [leaf(f"2-{i}", {"t": OLD, "f": v}) for i, v in enumerate(values)]
    assert body_of(spec({"f": rule}), *leaves)["f"] == expected


def test_priority_between_unknown_values_follows_winner_order() -> None:
    rules = {"s": {"priority": ["cancelled", "shipped"]}}
    a, b = leaf("2-aaa", {"t": OLD, "s": "weird"}), leaf("2-fff", {"t": OLD, "s": "lost"})
    built = build_resolver(spec(rules))
    assert isinstance(built, PolicyResolver)
    for order in ((a, b), (b, a)):
        assert built.strategy.choose(conflict(a, b), order).body == {"t": OLD, "s": "lost"}


def test_append_same_key_different_records_is_deterministic() -> None:
    a = leaf("2-a", {"t": OLD, "items": [{"id": 1, "qty": 1}]})
    b = leaf("2-b", {"t": OLD, "items": [{"id": 1, "qty": 2}]})
    rules = {"items": {"append": {"key": "id"}}}
    assert body_of(spec(rules), a, b)["items"] == body_of(spec(rules), b, a)["items"] == [{"id": 1, "qty": 2}]


def test_keep_drop_and_missing_fields() -> None:
    a = leaf("2-fff", {"t": OLD, "k": "winner", "secret": 1})
    b = leaf("2-000", {"t": NEW, "k": "other", "m": 5, "secret": 2})
    body = body_of(spec({"k": "keep", "secret": "drop", "m": "max"}), a, b)
    assert body == {"t": NEW, "k": "winner", "m": 5}
    # keep also keeps the winner's *absence*
    assert "m" not in body_of(spec({"m": "keep"}), a, b)


def test_lattice_rules_treat_missing_and_null_as_absent() -> None:
    a, b = leaf("2-a", {"t": OLD, "n": None}), leaf("2-b", {"t": OLD, "n": 4})
    assert body_of(spec({"n": "min"}), a, b, leaf("2-c", {"t": OLD}))["n"] == 4
    assert body_of(spec({"n": "min"}), a, leaf("2-c", {"t": OLD}))["n"] is None


def test_three_way_takes_the_one_change() -> None:
    base = {"t": OLD, "x": 1, "y": 1, "z": 1}
    a = leaf("2-fff", {"t": NEW, "x": 1, "y": 2, "z": 1})  # newer, changed y only
    b = leaf("2-000", {"t": OLD, "x": 5, "y": 1})  # older, changed x and deleted z
    assert body_of(spec(), a, b, base=base) == {"t": NEW, "x": 5, "y": 2}


def test_three_way_keeps_base_when_nobody_changed_it() -> None:
    base = {"t": OLD, "x": 1}
    assert (
        body_of(
            spec({"x": "max"}), leaf("2-a", {"t": OLD, "x": 1}), leaf("2-b", {"t": OLD, "x": 1}), base=base
        )["x"]
        == 1
    )


def test_three_way_rule_over_changed_values_only() -> None:
    base = {"t": OLD, "x": 100}
    leaves = [
        leaf("2-a", {"t": OLD, "x": 100}),
        leaf("2-b", {"t": OLD, "x": 3}),
        leaf("2-c", {"t": OLD, "x": 7}),
    ]
    # the unchanged 100 does not take part: max over the two edits
    assert body_of(spec({"x": "max"}), *leaves, base=base)["x"] == 7


def test_three_way_lww_sees_a_deletion_as_a_value() -> None:
    base = {"t": OLD, "x": 1}
    a, b = leaf("2-a", {"t": NEW}), leaf("2-b", {"t": "2024-05-01T10:30:00Z", "x": 2})
    assert "x" not in body_of(spec(), a, b, base=base)
    # a lattice rule ignores the deletion and keeps the other edit
    assert body_of(spec({"x": "max"}), a, b, base=base)["x"] == 2


def test_nested_paths_merge_members_independently() -> None:
    base = {"t": OLD, "addr": {"city": "A", "zip": "1"}, "score": {"n": 1}}
    a = leaf("2-a", {"t": NEW, "addr": {"city": "B", "zip": "1"}, "score": {"n": 5}})
    b = leaf("2-b", {"t": OLD, "addr": {"city": "A", "zip": "2"}, "score": {"n": 9}})
    rules = {"addr.city": "lww", "addr.zip": "lww", "score.n": "min"}
    assert body_of(spec(rules), a, b, base=base) == {
        "t": NEW,
        "addr": {"city": "B", "zip": "2"},
        "score": {"n": 5},
    }


def test_nested_keep_when_the_winner_left_the_object_alone() -> None:
    base = {"t": OLD, "o": {"k": 1, "v": 1}}
    winner = leaf("2-fff", {"t": OLD, "o": {"k": 1, "v": 1}})
    others = [
        leaf("2-000", {"t": NEW, "o": {"k": 2, "v": 2}}),
        leaf("2-111", {"t": OLD, "o": {"k": 3, "v": 1}}),
    ]
    assert body_of(spec({"o.k": "keep", "o.v": "max"}), winner, *others, base=base)["o"] == {"k": 1, "v": 2}


def test_malformed_values_fail_the_document() -> None:
    cases = [
        ({"x": "max"}, 1, "1"),
        ({"x": "union"}, [1], "a"),
        ({"x": "append"}, [{"id": 1}], [{"name": "no id"}]),
        ({"x.y": "max"}, {"y": 1}, 5),
        ({}, 1, 2),  # with per-field stamps that are not an object
    ]
    for rules, first, second in cases:
        stamps = {"field_timestamps": "s"} if not rules else {}
        a = leaf("2-a", {"t": OLD, "x": first, "s": {"x": OLD}})
        b = leaf("2-b", {"t": OLD, "x": second, "s": "not an object"})
        result = resolve(spec(rules, **stamps), a, b)
        assert result.unresolvable and result.unresolvable.startswith("fields:"), (rules, result)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rules": {"x": "max"}}, "option 'timestamp' is required by the lww rule"),
        ({"timestamp": "t", "rules": {"x": "sum"}}, "option 'rules' field 'x': 'sum' is not a rule"),
        ({"timestamp": "t", "rules": {"x": {"priority": []}}}, "field 'x'"),
        ({"timestamp": "t", "rules": {"x": {"append": {"id": "k"}}}}, "field 'x'"),
        ({"timestamp": "t", "rules": {"_id": "max"}}, "bad field name '_id'"),
        ({"timestamp": "t", "rules": ["x"]}, "must map field names to rules"),
        ({"timestamp": "t", "rules": {"a": "max", "a.b": "min"}}, "'a' and 'a.b' overlap"),
        ({"timestamp": 5}, "option 'timestamp' must be a non-empty string"),
    ],
)
def test_bad_options_name_strategy_and_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="strategy fields: ") as info:
        build_resolver(StrategySpec(strategy="fields", options=options))
    assert message in str(info.value)


def test_lww_free_rules_need_no_timestamp() -> None:
    only_max = StrategySpec(strategy="fields", options={"rules": {"*": "max"}})
    assert body_of(only_max, leaf("2-a", {"x": 1}), leaf("2-b", {"x": 2})) == {"x": 2}
