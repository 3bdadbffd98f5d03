"""``vclock``: version vectors in the body decide, a fallback strategy breaks true concurrency.

Each leaf carries ``{node: counter}`` in ``field`` (default ``vclock``); a missing field is the
empty clock (a write made before clocks were introduced). The candidates are the leaves whose clock
no other clock strictly dominates. One candidate wins outright; several (concurrent edits, or equal
clocks with different bodies) go to ``fallback`` (default ``winner``), which only ever sees those
candidates, so a strictly older write can never win through it.

The result's clock is the element-wise maximum of every live leaf's clock, so the merge dominates
everything it replaced and a replica that resolves the same leaves writes the same clock.
Attachments follow the chosen candidate; one that only strictly older leaves hold is dropped, since
every newer writer had seen it and removed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError

from couchfarm.errors import ConfigError
from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Options, Strategy, merged
from couchfarm.resolvers.spec import parse_strategy
from couchfarm.settings import StrategySpec

VERSION = 1

Clock = dict[str, int]


def read_clock(value: Any) -> Clock | None:
    """A clock from a body value; None when it is not a map of node to non-negative integer."""
    if not isinstance(value, dict):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value.values()):
        return None
    return dict(value)


def merge_clocks(clocks: Iterable[Mapping[str, int]]) -> Clock:
    """Element-wise maximum, keys sorted: commutative, associative and idempotent."""
    out: Clock = {}
    for clock in clocks:
        for node, count in clock.items():
            out[node] = max(out.get(node, 0), count)
    return {node: out[node] for node in sorted(out)}


def descends(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """``a`` has seen everything ``b`` has (``>=`` on every node; equal clocks descend each other)."""
    return all(a.get(node, 0) >= count for node, count in b.items())


@dataclass(frozen=True)
class VectorClock:
    field: str
    fallback: Strategy

    name: ClassVar[str] = "vclock"
    version: ClassVar[int] = VERSION

    @property
    def options(self) -> dict[str, Any]:
        inner = self.fallback
        return {
            "field": self.field,
            "fallback": {"strategy": inner.name, "version": inner.version, "options": dict(inner.options)},
        }

    def choose(self, conflict: ConflictSet, leaves: tuple[Leaf, ...]) -> Resolution:
        clocks: dict[str, Clock] = {}
        for leaf in (*leaves, *conflict.live):
            clock = read_clock(leaf.body.get(self.field, {}))
            if clock is None:
                return Resolution.fail(
                    f"vclock: field {self.field!r} of leaf {leaf.rev} is not a map of node to "
                    f"non-negative integer: {leaf.body.get(self.field)!r}"
                )
            clocks[leaf.rev] = clock
        candidates = tuple(
            leaf
            for leaf in leaves
            if not any(_strictly_before(clocks[leaf.rev], clocks[other.rev]) for other in leaves)
        )
        if len(candidates) == 1:
            chosen = merged(candidates[0].body, candidates)
        else:
            chosen = self.fallback.choose(conflict, candidates)
        if chosen.body is None:
            return chosen  # a custom fallback may delete or give up
        clock = merge_clocks(clocks[leaf.rev] for leaf in (*leaves, *conflict.live))
        by_rev = {leaf.rev: leaf for leaf in candidates}
        return merged(
            {**chosen.body, self.field: clock},
            tuple(by_rev[rev] for rev in chosen.chosen if rev in by_rev),
            {**superseded(leaves, candidates), **(chosen.attachments or {})},
        )


def superseded(leaves: tuple[Leaf, ...], candidates: tuple[Leaf, ...]) -> dict[str, None]:
    """Attachments only strictly older leaves hold: a newer clock saw them and removed them."""
    kept = {name for leaf in candidates for name in leaf.attachments}
    return {name: None for leaf in leaves for name in leaf.attachments if name not in kept}


def _strictly_before(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    return descends(b, a) and not descends(a, b)


def build(opts: Options) -> VectorClock:
    """Options: ``field`` (default ``vclock``), ``fallback`` (a spec string or mapping; default
    ``winner``). The fallback has no deletion policy of its own: the outer strategy's applies."""
    field = opts.field("field", "vclock") or "vclock"
    spec = _fallback_spec(opts, opts.get("fallback", "winner"))
    try:
        fallback = opts.nested(spec)
    except ConfigError as exc:
        raise opts.error("fallback", f"is not valid: {exc}") from None
    return VectorClock(field=field, fallback=fallback)


def _fallback_spec(opts: Options, raw: Any) -> StrategySpec:
    if isinstance(raw, str):
        try:
            spec = parse_strategy(raw)
        except ConfigError as exc:
            raise opts.error("fallback", f"is not valid: {exc}") from None
    elif isinstance(raw, dict):
        try:
            spec = StrategySpec.model_validate(raw)
        except ValidationError as exc:
            raise opts.error("fallback", f"is not a strategy spec: {exc.errors()[0]['msg']}") from None
    else:
        raise opts.error("fallback", f"must be a strategy string or mapping, not {raw!r}")
    if spec.deletion != "update_wins" or "soft_delete_field" in spec.options:
        raise opts.error("fallback", "cannot set a deletion policy: the outer strategy's applies")
    return spec
