"""The per-field rules of ``fields``, and the pure merges behind its lattice rules.

``max``, ``min``, ``union`` and ``append`` are joins of a semilattice: :func:`merge_values` is
commutative, associative and idempotent, so replicas that merge the same values in any grouping agree,
and merging a merge again changes nothing. A missing field and ``null`` are the bottom of every one of
these lattices (missing below ``null``): they never beat a real value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from couchfarm.canonical import canonical, dumps
from couchfarm.resolvers.values import canon_key, instant

RULES = ("lww", "max", "min", "union", "append", "priority", "keep", "drop")
LATTICE = ("max", "min", "union", "append", "stamps")


class _Missing:
    """A field a leaf does not have (distinct from ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()


class MergeError(ValueError):
    """Values a rule cannot merge (a string where ``max`` wants numbers); the document fails."""


@dataclass(frozen=True)
class Rule:
    """One parsed rule. ``stamps`` is internal: the per-field timestamp map, merged key-wise."""

    kind: str
    key: str = "id"  #: ``append``: the member that identifies a record
    order: tuple[Any, ...] = ()  #: ``priority``: the winning values, best first

    def describe(self) -> Any:
        """The canonical configuration form (for fingerprints)."""
        if self.kind == "append":
            return {"append": {"key": self.key}}
        if self.kind == "priority":
            return {"priority": list(self.order)}
        return self.kind


def parse_rule(raw: Any) -> Rule:
    """``"max"``, ``"append"`` (key ``id``), ``{"append": {"key": "sku"}}`` or
    ``{"priority": [...]}``; ``ValueError`` saying what is wrong."""
    if isinstance(raw, str) and raw in RULES and raw != "priority":
        return Rule(raw)
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((kind, arg),) = raw.items()
        key = arg.get("key") if isinstance(arg, Mapping) and set(arg) == {"key"} else None
        if kind == "append" and isinstance(key, str) and key:
            return Rule("append", key=key)
        if kind == "priority" and isinstance(arg, list | tuple) and arg:
            return Rule("priority", order=tuple(arg))
    raise ValueError(
        f"{raw!r} is not a rule (want one of lww, max, min, union, keep, drop, append, "
        '{"append": {"key": NAME}} or {"priority": [BEST, ...]})'
    )


def merge_values(rule: Rule | str | Mapping[str, Any], values: Sequence[Any]) -> Any:
    """The join of ``values`` under a lattice rule; :data:`MISSING` when no value is present.

    Raises :class:`MergeError` when the values do not fit the rule.
    """
    rule = rule if isinstance(rule, Rule) else parse_rule(rule)
    if rule.kind not in LATTICE:
        raise ValueError(f"{rule.kind} is not a lattice rule")
    present = [v for v in values if v is not MISSING]
    real = [v for v in present if v is not None]
    if not real:
        return None if present else MISSING
    return _JOINS[rule.kind](rule, real)


def _extreme(rule: Rule, values: list[Any]) -> Any:
    kinds = {_kind(v) for v in values}
    if len(kinds) != 1 or None in kinds:
        raise MergeError(f"{rule.kind} needs all numbers, all strings or all booleans, got {values!r}")
    pick = max if rule.kind == "max" else min
    return pick(values, key=canon_key)


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str" if isinstance(value, str) else None


def _lists(rule: Rule, values: list[Any]) -> list[list[Any]]:
    if not all(isinstance(v, list) for v in values):
        raise MergeError(f"{rule.kind} needs arrays, got {values!r}")
    return values


def _union(rule: Rule, values: list[Any]) -> list[Any]:
    items = {dumps(item): item for value in _lists(rule, values) for item in value}
    return [canonical(item) for item in sorted(items.values(), key=canon_key)]


def _append(rule: Rule, values: list[Any]) -> list[Any]:
    """Records de-duplicated by ``rule.key``; of two different records with one key, the larger in
    :func:`canon_key` order stays (a join, so the choice is the same in every grouping)."""
    best: dict[str, Any] = {}
    for value in _lists(rule, values):
        for record in value:
            if not isinstance(record, dict) or rule.key not in record:
                raise MergeError(f"append needs objects with a {rule.key!r} member, got {record!r}")
            ident = dumps(record[rule.key])
            if ident not in best or canon_key(record) > canon_key(best[ident]):
                best[ident] = record
    return [canonical(r) for r in sorted(best.values(), key=lambda r: canon_key(r[rule.key]))]


def _stamps(rule: Rule, values: list[Any]) -> dict[str, Any]:
    """Per-field timestamp maps: for each field the latest timestamp (unparseable ones lose)."""
    if not all(isinstance(v, dict) for v in values):
        raise MergeError(f"the per-field timestamps must be objects, got {values!r}")
    best: dict[str, Any] = {}
    for value in values:
        for name, stamp in value.items():
            if name not in best or _stamp_key(stamp) > _stamp_key(best[name]):
                best[name] = stamp
    return {name: canonical(best[name]) for name in sorted(best)}


def _stamp_key(stamp: Any) -> tuple[Any, ...]:
    moment = instant(stamp)
    return (moment is not None, moment or Fraction(0), canon_key(stamp))


_JOINS: dict[str, Callable[[Rule, list[Any]], Any]] = {
    "max": _extreme,
    "min": _extreme,
    "union": _union,
    "append": _append,
    "stamps": _stamps,
}
