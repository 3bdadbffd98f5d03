"""``winner``: keep the body CouchDB already shows, so a default run changes no visible data.

The losing leaves are still tombstoned by the engine: the conflict goes away, the document does not
change for any reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Options, merged, preferred, rank

VERSION = 1


class Winner:
    """The candidate CouchDB ranks first: live, then highest generation, then highest rev hash."""

    name: ClassVar[str] = "winner"
    version: ClassVar[int] = VERSION
    options: ClassVar[Mapping[str, Any]] = {}

    def choose(self, conflict: ConflictSet, leaves: tuple[Leaf, ...]) -> Resolution:
        order = preferred(leaves, rank)
        return merged(order[0].body, order)


def build(opts: Options) -> Winner:
    """``winner`` takes no options."""
    return Winner()
