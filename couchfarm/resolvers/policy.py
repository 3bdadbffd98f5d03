"""Deletion policies: which leaves a strategy may choose from, and what counts as a conflict.

- ``update_wins`` (default): deleted leaves are ignored; the strategy chooses among the live ones.
  An edit made concurrently with a delete brings the document back.
- ``tombstone_wins``: a deletion made by a user beats the edits it was genuinely concurrent with
  (:mod:`couchfarm.resolvers.deletions` decides from the revision tree); the strategy chooses among
  the live leaves no deletion beats, and when none is left the result is a delete. With
  ``soft_delete_field`` set, a live leaf where that field is truthy beats the other edits too: the
  strategy chooses among the soft-deleted leaves only, so nothing comes back.

The tombstones couchfarm itself writes over losing leaves carry :data:`TOMBSTONE_FIELD`; they are
leftovers of a resolution, never a user's deletion, or every resolution would delete the document
at its next read.
"""

from __future__ import annotations

from typing import Any

from couchfarm.errors import ConfigError
from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Strategy, fingerprint
from couchfarm.resolvers.deletions import defeated
from couchfarm.resolvers.spec import DELETIONS


def is_conflict(conflict: ConflictSet, deletion: str) -> bool:
    """Whether ``conflict`` needs resolving under the deletion policy ``deletion``."""
    check_deletion(deletion)
    if deletion == "tombstone_wins" and defeated(conflict):
        return True
    return len(conflict.live) > 1


def check_deletion(deletion: str) -> None:
    if deletion not in DELETIONS:
        raise ConfigError(
            f"deletion must be one of {', '.join(DELETIONS)}, not {deletion!r}", field="deletion"
        )


class PolicyResolver:
    """A strategy behind a deletion policy: the :class:`~couchfarm.resolvers.base.Resolver` the
    engine calls."""

    def __init__(self, strategy: Strategy, deletion: str, soft_delete_field: str | None = None) -> None:
        check_deletion(deletion)
        self.strategy = strategy
        self.name = strategy.name
        self.deletion = deletion
        self.soft_delete_field = soft_delete_field
        self.fingerprint = fingerprint(self.identity())

    def identity(self) -> dict[str, Any]:
        """Everything that decides the output for a given set of leaves."""
        return {
            "strategy": self.strategy.name,
            "version": self.strategy.version,
            "options": dict(self.strategy.options),
            "deletion": self.deletion,
            "soft_delete_field": self.soft_delete_field,
        }

    def resolve(self, conflict: ConflictSet) -> Resolution:
        candidates = conflict.live
        if self.deletion == "tombstone_wins":
            beaten = defeated(conflict)
            candidates = tuple(leaf for leaf in candidates if leaf.rev not in beaten)
            soft = tuple(leaf for leaf in candidates if self._soft_deleted(leaf))
            candidates = soft or candidates
        if not candidates:
            return Resolution.deletion()  # every leaf is deleted, or beaten by a deletion
        return self.strategy.choose(conflict, candidates)

    def _soft_deleted(self, leaf: Leaf) -> bool:
        return bool(self.soft_delete_field and leaf.body.get(self.soft_delete_field))

    def __repr__(self) -> str:
        return f"<resolver {self.name} {self.deletion} {self.fingerprint}>"
