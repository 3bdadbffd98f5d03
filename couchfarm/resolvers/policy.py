"""Deletion policies: which leaves a strategy may choose from, and what counts as a conflict.

- ``update_wins`` (default): deleted leaves are ignored; the strategy chooses among the live ones.
  An edit made concurrently with a delete brings the document back.
- ``tombstone_wins``: a deletion made by a user beats every edit, so the result is a delete. With
  ``soft_delete_field`` set, a live leaf where that field is truthy beats the other edits too: the
  strategy chooses among the soft-deleted leaves only, so nothing comes back.

The tombstones couchfarm itself writes over losing leaves carry :data:`TOMBSTONE_FIELD`; they are
leftovers of a resolution, never a user's deletion, or every resolution would delete the document
at its next read.
"""

from __future__ import annotations

from typing import Any

from couchfarm.errors import ConfigError
from couchfarm.models import TOMBSTONE_FIELD, ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Strategy, fingerprint
from couchfarm.resolvers.spec import DELETIONS


def is_resolution_tombstone(leaf: Leaf) -> bool:
    return leaf.deleted and leaf.body.get(TOMBSTONE_FIELD) is True


def user_deletions(conflict: ConflictSet) -> tuple[Leaf, ...]:
    """Deleted leaves that a user (or an application) made, not couchfarm."""
    return tuple(leaf for leaf in conflict.deleted if not is_resolution_tombstone(leaf))


def is_conflict(conflict: ConflictSet, deletion: str) -> bool:
    """Whether ``conflict`` needs resolving under the deletion policy ``deletion``."""
    check_deletion(deletion)
    live = len(conflict.live)
    if deletion == "tombstone_wins" and live and user_deletions(conflict):
        return True
    return live > 1


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
            if user_deletions(conflict):
                return Resolution.deletion()
            soft = tuple(leaf for leaf in candidates if self._soft_deleted(leaf))
            candidates = soft or candidates
        if not candidates:
            return Resolution.deletion()  # every leaf is deleted: stay deleted
        return self.strategy.choose(conflict, candidates)

    def _soft_deleted(self, leaf: Leaf) -> bool:
        return bool(self.soft_delete_field and leaf.body.get(self.soft_delete_field))

    def __repr__(self) -> str:
        return f"<resolver {self.name} {self.deletion} {self.fingerprint}>"
