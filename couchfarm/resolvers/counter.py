"""``counter``: the highest monotonic sequence number or Lamport counter wins.

A leaf whose ``field`` is missing or not a finite number loses to every leaf that has one; equal
counters (two writers that did not see each other) fall to CouchDB's winner order, by rev.
Unlike ``lww`` no clock is involved, so skew cannot make an older write win.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Options, merged, preferred, rank
from couchfarm.resolvers.values import number

VERSION = 1
_ZERO = Fraction(0)


@dataclass(frozen=True)
class HighestCounter:
    field: str

    name: ClassVar[str] = "counter"
    version: ClassVar[int] = VERSION

    @property
    def options(self) -> dict[str, Any]:
        return {"field": self.field}

    def key(self, leaf: Leaf) -> tuple[Any, ...]:
        count = number(leaf.body.get(self.field))
        return (count is not None, count or _ZERO, rank(leaf))

    def choose(self, conflict: ConflictSet, leaves: tuple[Leaf, ...]) -> Resolution:
        order = preferred(leaves, self.key)
        return merged(order[0].body, order)


def build(opts: Options) -> HighestCounter:
    """Options: ``field`` (required)."""
    return HighestCounter(field=opts.required_field("field"))
