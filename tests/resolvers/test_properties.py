"""Invariant 4 for every built-in strategy: order-independent and idempotent.

Every strategy runs under both deletion policies, over leaves that include user deletions,
couchfarm tombstones, soft-deleted leaves and malformed fields, with and without a base.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from couchfarm.models import Leaf
from couchfarm.resolvers import build_resolver
from couchfarm.resolvers.policy import PolicyResolver
from couchfarm.settings import StrategySpec
from tests.resolvers.factory import bodies, conflict, dump, leaf, leaf_sets

FAST = settings(deadline=None, max_examples=100)
SPECS: dict[str, dict[str, Any]] = {
    "winner": {"strategy": "winner"},
    "lww": {"strategy": "lww", "options": {"field": "updated_at"}},
    "lww-tie": {"strategy": "lww", "options": {"field": "updated_at", "tie": "seq"}},
    "counter": {"strategy": "counter", "options": {"field": "n"}},
    "vclock": {"strategy": "vclock"},
    "vclock-lww": {"strategy": "vclock", "options": {"fallback": "lww:field=updated_at"}},
    "fields": {"strategy": "fields", "options": {"timestamp": "updated_at"}},
    "fields-rules": {
        "strategy": "fields",
        "options": {
            "timestamp": "updated_at",
            "field_timestamps": "stamps",
            "rules": {
                "n": "max",
                "low": "min",
                "tags": "union",
                "items": {"append": {"key": "id"}},
                "status": {"priority": ["cancelled", "shipped", "paid", "new"]},
                "seq": "keep",
                "vclock": "drop",
                "meta.x": "lww",
                "meta.y": "max",
            },
        },
    },
}
policies = st.sampled_from(
    [("update_wins", None), ("tombstone_wins", None), ("tombstone_wins", "is_deleted")]
)


def build(name: str, deletion: str, soft: str | None) -> PolicyResolver:
    raw = SPECS[name]
    options = {**raw.get("options", {}), **({"soft_delete_field": soft} if soft else {})}
    spec = {"strategy": raw["strategy"], "options": options, "deletion": deletion}
    resolver = build_resolver(StrategySpec.model_validate(spec))
    assert isinstance(resolver, PolicyResolver)
    return resolver


@pytest.mark.parametrize("name", sorted(SPECS))
@FAST
@given(data=st.data(), policy=policies, leaves=leaf_sets(deleted=True), base=st.none() | bodies())
def test_any_order_of_the_same_leaves_resolves_identically(
    name: str, policy: tuple[str, str | None], data: st.DataObject, leaves: tuple[Leaf, ...], base: Any
) -> None:
    resolver = build(name, *policy)
    shuffled = data.draw(st.permutations(leaves))
    expected = dump(resolver.resolve(conflict(*leaves, base=base)))
    assert dump(resolver.resolve(conflict(*shuffled, base=base))) == expected
    # the strategy itself, handed the candidates in any order, agrees too
    first = conflict(*leaves, base=base)
    live = [leaf for leaf in shuffled if not leaf.deleted]
    assert dump(resolver.strategy.choose(first, tuple(live))) == dump(
        resolver.strategy.choose(first, first.live)
    )


@pytest.mark.parametrize("name", sorted(SPECS))
@FAST
@given(policy=policies, leaves=leaf_sets(), base=st.none() | bodies())
def test_resolving_the_merge_again_changes_nothing(
    name: str, policy: tuple[str, str | None], leaves: tuple[Leaf, ...], base: Any
) -> None:
    resolver = build(name, *policy)
    first = resolver.resolve(conflict(*leaves, base=base))
    if first.body is None:
        return  # malformed input: failed, nothing to re-resolve
    again = [leaf(f"{9 + i}-{i:04x}", first.body) for i in range(len(leaves))]
    for base_again in (base, first.body):
        # the body is the same; the chosen leaves are the new ones (attachments follow them)
        assert resolver.resolve(conflict(*again, base=base_again)).body == first.body
