"""From a conflict and its resolution to the writes that carry it out (pure, no I/O).

A plan has at most a winner write (the merged body as a child of CouchDB's current winner, skipped
when the winner already holds the merge) and one tombstone per other live leaf. The write carries
the attachments the resolution chose (``couchfarm/attachments.py``). Tombstones carry
``couchfarm_tombstone: true`` so that the tombstone_wins policy can tell resolution leftovers from
user deletions, and so that two farms on two replicas mint identical tombstone revisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from couchfarm import attachments as atts
from couchfarm.canonical import canonical, digest, same
from couchfarm.models import TOMBSTONE_FIELD, ConflictSet, Leaf, Resolution

PROVENANCE_FIELD = "couchfarm"


@dataclass
class Plan:
    """The writes for one document; ``inline`` lists the attachment copies to fetch and inline."""

    conflict: ConflictSet
    strategy: str
    merged: dict[str, Any] | None  #: the merged body (None when the resolution deletes)
    winner_write: dict[str, Any] | None
    tombstones: list[dict[str, Any]]
    inline: list[tuple[str, str]] = field(default_factory=list)  #: (attachment name, rev holding it)
    attachments: dict[str, str] = field(default_factory=dict)  #: attachment name -> rev of its copy

    @property
    def doc_id(self) -> str:
        return self.conflict.doc_id

    def describe(self) -> dict[str, Any]:
        """What a dry run prints."""
        return {
            "doc_id": self.doc_id,
            "strategy": self.strategy,
            "leaves": [
                {"rev": leaf.rev, "deleted": leaf.deleted, "body": leaf.body} for leaf in self.conflict.leaves
            ],
            "merged": self.merged,
            "attachments": self.attachments,
            "writes": (
                ([{"write_winner_on": self.winner_write["_rev"]}] if self.winner_write else [])
                + [{"tombstone": t["_rev"]} for t in self.tombstones]
            ),
        }


def provenance(conflict: ConflictSet, strategy: str, fingerprint: str) -> dict[str, Any]:
    """Who merged this, with which definition, from which inputs (deterministic across replicas)."""
    # live leaves only: two replicas that differ in a tombstone still replicating stamp the same
    return {
        "strategy": strategy,
        "fingerprint": fingerprint,
        "inputs": digest(sorted(leaf.rev for leaf in conflict.live), 16),
    }


def foreign_provenance(conflict: ConflictSet, fingerprint: str) -> str | None:
    """The fingerprint of a different strategy definition found on a live leaf, if any."""
    for leaf in conflict.live:
        mark = leaf.body.get(PROVENANCE_FIELD)
        if isinstance(mark, dict) and mark.get("fingerprint") not in (None, fingerprint):
            return str(mark["fingerprint"])
    return None


def build_plan(
    conflict: ConflictSet,
    resolution: Resolution,
    strategy: str,
    *,
    mark: dict[str, Any] | None = None,
) -> Plan:
    """The writes for ``resolution``; ``mark`` is the provenance stamp (None when switched off).

    Raises :class:`~couchfarm.attachments.AttachmentChoiceError` when the leaves disagree on an
    attachment and the resolution does not say which copy to keep.
    """
    live = conflict.live
    if resolution.delete or resolution.body is None:
        return Plan(conflict, strategy, None, None, [tombstone(conflict.doc_id, leaf) for leaf in live])
    winner = live[0]
    body = dict(resolution.body)
    if mark is not None:
        body[PROVENANCE_FIELD] = mark
    body = canonical(body)
    chosen = atts.sources(live, resolution)
    write: dict[str, Any] | None = None
    inline: list[tuple[str, str]] = []
    if not holds(winner.body, body, mark) or not atts.unchanged(winner, chosen):
        write = {"_id": conflict.doc_id, "_rev": winner.rev, **body}
        stubs, inline = atts.winner_attachments(winner, chosen)
        if stubs:
            write["_attachments"] = stubs
    losers = [tombstone(conflict.doc_id, leaf) for leaf in live[1:]]
    return Plan(conflict, strategy, body, write, losers, inline, atts.describe(chosen))


def holds(current: dict[str, Any], merged: dict[str, Any], mark: dict[str, Any] | None) -> bool:
    """Whether the current winner already holds the merge. A winner stamped by this very strategy
    definition is compared without the stamp, so a retry after a successful winner write does not
    rewrite it only because the stamp's inputs changed."""
    stamp = current.get(PROVENANCE_FIELD)
    if mark is not None and isinstance(stamp, dict) and stamp.get("fingerprint") == mark["fingerprint"]:
        return same(unmarked(current), unmarked(merged))
    return same(current, merged)


def unmarked(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != PROVENANCE_FIELD}


def tombstone(doc_id: str, leaf: Leaf) -> dict[str, Any]:
    return {"_id": doc_id, "_rev": leaf.rev, "_deleted": True, TOMBSTONE_FIELD: True}
