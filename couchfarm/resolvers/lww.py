"""``lww``: last writer wins, by a timestamp field in the body.

Order, the largest wins:

1. a leaf whose ``field`` parses (ISO-8601 string with ``Z`` or an offset, compared as an instant;
   no offset means UTC; or a number) beats one where it is missing or unparseable;
2. the later instant;
3. a leaf with a numeric ``tie`` field (a counter, optional) beats one without;
4. the higher ``tie``;
5. CouchDB's winner order (higher generation, then higher rev hash); revs are unique, so the order
   is total and the result depends only on the set of leaves.

Clocks drift between replicas: this is the strategy to pick when the application stamps writes
and accepts that a skewed writer can win; ``vclock`` or ``fields`` lose less.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Options, merged, preferred, rank
from couchfarm.resolvers.values import instant, number

VERSION = 1
_ZERO = Fraction(0)


@dataclass(frozen=True)
class LastWriterWins:
    field: str
    tie: str | None = None

    name: ClassVar[str] = "lww"
    version: ClassVar[int] = VERSION

    @property
    def options(self) -> dict[str, Any]:
        return {"field": self.field, "tie": self.tie}

    def key(self, leaf: Leaf) -> tuple[Any, ...]:
        stamp = instant(leaf.body.get(self.field))
        tie = number(leaf.body.get(self.tie)) if self.tie else None
        return (stamp is not None, stamp or _ZERO, tie is not None, tie or _ZERO, rank(leaf))

    def choose(self, conflict: ConflictSet, leaves: tuple[Leaf, ...]) -> Resolution:
        order = preferred(leaves, self.key)
        return merged(order[0].body, order)


def build(opts: Options) -> LastWriterWins:
    """Options: ``field`` (required), ``tie`` (optional counter field)."""
    return LastWriterWins(field=opts.required_field("field"), tie=opts.field("tie"))
