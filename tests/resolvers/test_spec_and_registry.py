"""``parse_strategy``, ``build_resolver`` errors and fingerprints."""

from __future__ import annotations

import re
from typing import Any

import pytest

from couchfarm.errors import ConfigError
from couchfarm.resolvers import STRATEGIES, build_resolver, parse_strategy
from couchfarm.settings import StrategySpec


@pytest.mark.parametrize(
    ("text", "strategy", "options", "deletion"),
    [
        ("winner", "winner", {}, "update_wins"),
        (
            " lww : field = updated_at , tie=counter ",
            "lww",
            {"field": "updated_at", "tie": "counter"},
            "update_wins",
        ),
        ("custom:function=mymod:merge", "custom", {"function": "mymod:merge"}, "update_wins"),
        ("fields:timestamp=updated_at", "fields", {"timestamp": "updated_at"}, "update_wins"),
        ("lww:field=t,deletion=tombstone_wins", "lww", {"field": "t"}, "tombstone_wins"),
        (
            "x:a=3,b=2.5,c=true,d=null,e=2024-01-01,f=0x,g=yes,h=010,i=-1e3,j=nan,k=TRUE",
            "x",
            {
                "a": 3,
                "b": 2.5,
                "c": True,
                "d": None,
                "e": "2024-01-01",
                "f": "0x",
                "g": "yes",
                "h": 10,
                "i": -1000.0,
                "j": "nan",
                "k": True,
            },
            "update_wins",
        ),
        ("vclock:fallback=lww:field=t", "vclock", {"fallback": "lww:field=t"}, "update_wins"),
        ("winner:", "winner", {}, "update_wins"),
    ],
)
def test_parse_strategy(text: str, strategy: str, options: dict[str, Any], deletion: str) -> None:
    spec = parse_strategy(text)
    assert (spec.strategy, spec.options, spec.deletion) == (strategy, options, deletion)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a lowercase word"),
        ("LWW", "is not a lowercase word"),
        ("lww:field", "'field' is not key=value"),
        ("lww:=x", "is not key=value"),
        ("lww:field=", "option 'field' has no value"),
        ("lww:field=a,field=b", "option 'field' is given twice"),
        ("lww:deletion=delete_wins", "deletion must be one of update_wins, tombstone_wins"),
        ("lww:field=a,,tie=b", "'' is not key=value"),
    ],
)
def test_parse_strategy_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_strategy(text)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            StrategySpec(strategy="nope"),
            "unknown strategy 'nope' (known: counter, custom, fields, lww, vclock, winner)",
        ),
        (StrategySpec(strategy="lww"), "strategy lww: option 'field' is required"),
        (
            StrategySpec(strategy="lww", options={"field": ""}),
            "strategy lww: option 'field' must be a non-empty",
        ),
        (
            StrategySpec(strategy="lww", options={"field": "t", "tei": "c"}),
            "strategy lww: option 'tei' is unknown",
        ),
        (
            StrategySpec(strategy="counter", options={"field": ["x"]}),
            "strategy counter: option 'field' must be",
        ),
        (StrategySpec(strategy="vclock", options={"field": "_rev"}), "option 'field' names a body field"),
        (
            StrategySpec(strategy="winner", options={"field": "t"}),
            "strategy winner: option 'field' is unknown",
        ),
        (
            StrategySpec(strategy="vclock", options={"fallback": "lww"}),
            "strategy vclock: option 'fallback' is not",
        ),
        (
            StrategySpec(strategy="vclock", options={"fallback": "LWW"}),
            "strategy vclock: option 'fallback' is not",
        ),
        (
            StrategySpec(strategy="vclock", options={"fallback": 3}),
            "strategy vclock: option 'fallback' must be",
        ),
        (
            StrategySpec(strategy="vclock", options={"fallback": {"strategy": "x", "bad": 1}}),
            "option 'fallback'",
        ),
        (
            StrategySpec(strategy="vclock", options={"fallback": "winner:deletion=tombstone_wins"}),
            "deletion policy",
        ),
    ],
)
def test_build_resolver_errors(spec: StrategySpec, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_resolver(spec)
    assert message in str(info.value)


def test_every_strategy_has_a_name_and_a_12_hex_fingerprint() -> None:
    options = {
        "lww": {"field": "t"},
        "counter": {"field": "n"},
        "fields": {"timestamp": "t"},
        "custom": {"function": "tests.resolvers.custom_examples:total"},
    }
    prints = set()
    for name in STRATEGIES:
        built = build_resolver(StrategySpec(strategy=name, options=options.get(name, {})))
        assert built.name == name and re.fullmatch(r"[0-9a-f]{12}", built.fingerprint)
        prints.add(built.fingerprint)
    assert len(prints) == len(STRATEGIES)


def test_fingerprint_is_stable_and_ignores_spelling() -> None:
    assert build_resolver(parse_strategy("vclock")).fingerprint == "a5333168fd7c"  # pinned: provenance
    assert (
        build_resolver(parse_strategy("vclock")).fingerprint
        == build_resolver(parse_strategy("vclock:field=vclock,fallback=winner")).fingerprint
    )
    rules = {"rules": {"a": "append", "b": "max"}, "timestamp": "t"}
    same = {"timestamp": "t", "rules": {"b": "max", "a": {"append": {"key": "id"}}}}
    fields = [build_resolver(StrategySpec(strategy="fields", options=o)).fingerprint for o in (rules, same)]
    assert fields[0] == fields[1]
    assert (
        build_resolver(parse_strategy("lww:field=t")).fingerprint
        != build_resolver(parse_strategy("lww:field=u")).fingerprint
    )
