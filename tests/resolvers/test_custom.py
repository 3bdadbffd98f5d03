"""``custom``: the user's function, its results, its failures."""

from __future__ import annotations

import pytest

from couchfarm.errors import ConfigError, ResolverError
from couchfarm.models import Resolution
from couchfarm.resolvers import build_resolver, parse_strategy
from tests.resolvers import custom_examples
from tests.resolvers.factory import leaf, resolve, tombstone

MOD = "tests.resolvers.custom_examples"
A, B = leaf("2-aaa", {"n": 2}), leaf("3-bbb", {"n": 5})


def custom(function: str) -> str:
    return f"custom:function={MOD}:{function}"


def test_dict_is_the_merged_body_without_underscore_members() -> None:
    assert resolve(custom("total"), A, B) == Resolution.merged({"n": 7})


def test_none_fails_the_document() -> None:
    assert resolve(custom("give_up"), A, B) == Resolution.fail("custom resolver returned None")


def test_deleted_marker_means_delete() -> None:
    assert resolve(custom("delete"), A, B) == Resolution.deletion()


def test_the_function_sees_candidates_in_winner_order() -> None:
    assert resolve(custom("revs"), A, tombstone("9-f"), B).body == {"revs": ["3-bbb", "2-aaa"]}


def test_class_attribute_paths_work() -> None:
    assert resolve(custom("Merger.first_rev"), A, B).body == {"rev": "2-aaa"}


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("boom", "custom resolver tests.resolvers.custom_examples:boom raised KeyError: 'price'"),
        ("wrong_type", "returned list [1, 2], not a dict or None"),
        ("not_json", "returned a body that is not JSON"),
    ],
)
def test_exceptions_and_garbage_become_resolver_errors(function: str, message: str) -> None:
    with pytest.raises(ResolverError) as info:
        resolve(custom(function), A, B)
    assert message in str(info.value)
    assert info.value.strategy == "custom"


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no.such.module:f", "cannot load 'no.such.module:f': ModuleNotFoundError"),
        (f"{MOD}:missing", "AttributeError"),
        (f"{MOD}:NOT_CALLABLE", "is not callable"),
        ("justamodule", "must look like package.module:function"),
    ],
)
def test_bad_function_is_a_config_error_naming_the_option(function: str, message: str) -> None:
    with pytest.raises(ConfigError, match="strategy custom: option 'function'") as info:
        build_resolver(parse_strategy(f"custom:function={function}"))
    assert message in str(info.value)


def test_function_is_required() -> None:
    with pytest.raises(ConfigError, match="strategy custom: option 'function' is required"):
        build_resolver(parse_strategy("custom"))


def test_fingerprint_follows_the_function_and_its_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = build_resolver(parse_strategy(custom("total"))).fingerprint
    assert before != build_resolver(parse_strategy(custom("give_up"))).fingerprint
    monkeypatch.setattr(custom_examples.total, "version", "3")
    assert build_resolver(parse_strategy(custom("total"))).fingerprint != before
