"""When a deleted leaf counts against a live one under ``tombstone_wins`` (docs/resolution-rules.md).

A user's deletion ``D`` counts against a live leaf ``L`` only when the revision tree shows a genuine
concurrent delete-vs-edit: ``D``'s parent is the branch point ``B`` (the newest revision both
ancestries share), and nothing on ``L``'s path after ``B`` is a deletion. Everything else keeps
``L`` alive:

- ``EARLIER``: ``D``'s parent is a revision after ``B``: ``D`` deleted a live edit that was itself
  concurrent with ``L``'s branch, the usual way people resolve a conflict by hand (``DELETE`` the
  losing leaf), so the conflict it answered is over;
- ``RECREATED``: a revision on ``L``'s path after ``B`` is deleted: ``L`` was written on top of a
  deletion (the document was re-created, e.g. after the farm deleted it), so it is newer than any
  deletion it follows;
- ``UNKNOWN``: the tree cannot tell (no ancestry, no shared revision, or a revision on ``L``'s path
  whose body is gone so its deletion state is unknown): the document stays alive, and the engine
  reports it (event ``deletion_undecided``: a metric and a log line).

couchfarm's own tombstones (``couchfarm_tombstone: true``) never count: they are leftovers of a
resolution. ``history_needed`` lists the non-leaf revisions whose deletion state decides a pair;
the engine reads them (``GET ?open_revs=[...]``) into ``ConflictSet.history``. Everything here is
pure: the same leaves and history give the same verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from couchfarm.models import TOMBSTONE_FIELD, ConflictSet, Leaf, Rev


class Verdict(str, Enum):
    COUNTS = "counts"  # a genuine concurrent delete-vs-edit: the deletion beats the edit
    EARLIER = "earlier"  # the deletion resolved an earlier conflict on its own branch
    RECREATED = "recreated"  # the live leaf was written on top of a deletion
    UNKNOWN = "unknown"  # the tree cannot tell: keep the document alive and say so


def is_resolution_tombstone(leaf: Leaf) -> bool:
    return leaf.deleted and leaf.body.get(TOMBSTONE_FIELD) is True


def user_deletions(conflict: ConflictSet) -> tuple[Leaf, ...]:
    """Deleted leaves that a user (or an application) made, not couchfarm."""
    return tuple(leaf for leaf in conflict.deleted if not is_resolution_tombstone(leaf))


def branch_point(deleted: Leaf, live: Leaf) -> str | None:
    """The newest revision both ancestries hold, if any."""
    shared = set(deleted.ancestry[1:]) & set(live.ancestry[1:])
    return max(shared, key=lambda rev: Rev.parse(rev).generation) if shared else None


def _path(deleted: Leaf, live: Leaf) -> tuple[str, ...] | Verdict:
    """``live``'s revisions strictly after the branch point, when ``deleted`` is a direct child of
    it (their deletion state decides); else the verdict the tree gives without them."""
    if len(deleted.ancestry) < 2 or not live.ancestry:
        return Verdict.UNKNOWN
    point = branch_point(deleted, live)
    if point is None:
        return Verdict.UNKNOWN
    if deleted.ancestry[1] != point:
        return Verdict.EARLIER
    return live.ancestry[1 : live.ancestry.index(point)]


def verdict(deleted: Leaf, live: Leaf, history: Mapping[str, bool] | None = None) -> Verdict:
    """Whether the user deletion ``deleted`` counts against ``live`` (see the module docstring)."""
    path = _path(deleted, live)
    if isinstance(path, Verdict):
        return path
    states = [(history or {}).get(rev) for rev in path]
    if any(state is True for state in states):
        return Verdict.RECREATED
    if any(state is None for state in states):
        return Verdict.UNKNOWN
    return Verdict.COUNTS


def verdicts(conflict: ConflictSet) -> dict[tuple[str, str], Verdict]:
    """Every (user deletion rev, live leaf rev) pair of the document and its verdict."""
    return {
        (d.rev, live.rev): verdict(d, live, conflict.history)
        for d in user_deletions(conflict)
        for live in conflict.live
    }


def defeated(conflict: ConflictSet) -> frozenset[str]:
    """The live leaves that a user's deletion beats."""
    return frozenset(live for (_, live), v in verdicts(conflict).items() if v is Verdict.COUNTS)


def undecided(conflict: ConflictSet) -> list[tuple[str, str]]:
    """(deletion, live leaf) pairs the tree cannot decide, for live leaves no deletion beats: the
    document stays alive and the engine says so."""
    beaten = defeated(conflict)
    return sorted(
        pair for pair, v in verdicts(conflict).items() if v is Verdict.UNKNOWN and pair[1] not in beaten
    )


def history_needed(conflict: ConflictSet) -> list[str]:
    """The non-leaf revisions whose deletion state decides a pair (none for the common cases: a
    deletion and an edit both children of the branch point, or a deletion further down its branch)."""
    needed: set[str] = set()
    for d in user_deletions(conflict):
        for live in conflict.live:
            path = _path(d, live)
            if not isinstance(path, Verdict):
                needed.update(path)
    return sorted(needed - set(conflict.history), key=lambda rev: (Rev.parse(rev).generation, rev))
