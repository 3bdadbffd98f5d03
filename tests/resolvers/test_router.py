"""``Router``: database globs, type rules, defaults, inheritance and caching."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.errors import ConfigError
from couchfarm.resolvers import Router
from couchfarm.settings import DatabaseRule, StrategySpec
from tests.resolvers.factory import conflict, leaf, tombstone

ORDER = conflict(leaf("2-aaa", {"type": "order"}), leaf("2-bbb", {"type": "order", "t": 1}), doc_id="o:1")


def rule(name: str, **fields: Any) -> DatabaseRule:
    return DatabaseRule.model_validate({"name": name, **fields})


def test_first_matching_database_glob_wins_case_sensitively() -> None:
    router = Router(
        [
            rule("shop-*", strategy="lww", options={"field": "t"}),
            rule("*", strategy="counter", options={"field": "n"}),
        ]
    )
    assert router.route("shop-eu", ORDER)[0].name == "lww"
    assert router.route("SHOP-eu", ORDER)[0].name == "counter"


def test_no_rule_uses_the_default_then_winner() -> None:
    assert Router([]).route("db", ORDER)[1] == StrategySpec()
    default = StrategySpec(strategy="lww", options={"field": "t"})
    resolver, spec = Router([rule("other")], default).route("db", ORDER)
    assert resolver.name == "lww" and spec == default


def test_type_rules_by_field_value_and_id_prefix() -> None:
    types = [
        {"value": "invoice", "strategy": "counter", "options": {"field": "n"}},
        {"field": "type", "value": "order", "strategy": "fields", "options": {"timestamp": "t"}},
        {"id_prefix": "o:", "strategy": "lww", "options": {"field": "t"}},
    ]
    router = Router([rule("shop", types=types)])
    assert router.route("shop", ORDER)[0].name == "fields"
    by_prefix = conflict(leaf("2-a", {"type": "x"}), leaf("2-b", {}), doc_id="o:2")
    assert router.route("shop", by_prefix)[0].name == "lww"
    neither = conflict(leaf("2-a", {"type": "x"}), leaf("2-b", {}), doc_id="p:2")
    assert router.route("shop", neither)[0].name == "winner"  # the database rule's own spec


def test_type_is_read_from_couchdbs_winner_only() -> None:
    types = [{"value": "order", "strategy": "lww", "options": {"field": "t"}}]
    router = Router([rule("shop", types=types)])
    loser_says_order = conflict(leaf("2-aaa", {"type": "order"}), leaf("2-fff", {"type": "note"}))
    assert router.route("shop", loser_says_order)[0].name == "winner"
    assert (
        router.route("shop", conflict(leaf("2-aaa", {"type": "order"}), tombstone("9-fff")))[0].name == "lww"
    )


def test_both_conditions_must_hold() -> None:
    types = [{"id_prefix": "o:", "value": "invoice", "strategy": "lww", "options": {"field": "t"}}]
    assert Router([rule("shop", types=types)]).route("shop", ORDER)[0].name == "winner"


def test_type_rule_inherits_what_it_does_not_set() -> None:
    db_rule = rule(
        "shop",
        strategy="lww",
        options={"field": "t"},
        schema="schemas/doc.json",
        deletion="tombstone_wins",
        types=[{"value": "order", "schema": "schemas/order.json"}, {"id_prefix": "z", "strategy": "winner"}],
    )
    router = Router([db_rule])
    _, spec = router.route("shop", ORDER)
    assert (spec.strategy, spec.options, spec.schema_path, spec.deletion) == (
        "lww",
        {"field": "t"},
        "schemas/order.json",
        "tombstone_wins",
    )
    _, spec = router.route("shop", conflict(leaf("2-a", {}), leaf("2-b", {}), doc_id="z1"))
    assert (spec.strategy, spec.options, spec.schema_path) == ("winner", {}, "schemas/doc.json")


def test_resolvers_are_cached_per_spec() -> None:
    rules = [
        rule("a", strategy="lww", options={"field": "t"}),
        rule("b", strategy="lww", options={"field": "t"}),
    ]
    router = Router(rules)
    assert router.route("a", ORDER)[0] is router.route("b", ORDER)[0]


def test_bad_configuration_fails_when_the_router_is_built() -> None:
    with pytest.raises(ConfigError, match="strategy lww: option 'field' is required"):
        Router([rule("a", types=[{"value": "x", "strategy": "lww"}])])
    with pytest.raises(ConfigError, match="type rule 1 needs a value or an id_prefix"):
        Router([rule("a", types=[{"strategy": "winner"}])])
    with pytest.raises(ConfigError, match="unknown strategy"):
        Router([], StrategySpec(strategy="nope"))
