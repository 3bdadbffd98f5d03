"""The one merge every way in the benchmark computes: the farm's own resolver and write plan.

The farm is configured with :data:`LWW` (``FarmRun`` writes it into the farm's configuration), and
the reference and the naive way call the same library functions the farm's engine calls
(``build_resolver``, ``is_conflict``, ``build_plan``), so all three write the same bodies and the
same tombstones; only the number and order of requests differ.
"""

from __future__ import annotations

from typing import Any

from couchfarm.models import ConflictSet, Leaf
from couchfarm.plan import build_plan
from couchfarm.resolvers import build_resolver, is_conflict
from couchfarm.settings import StrategySpec

LWW = StrategySpec(strategy="lww", options={"field": "updated_at"})
RESOLVER = build_resolver(LWW)


def writes_for(db: str, doc_id: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The merged winner (unless the winner already holds the merge) followed by the tombstones of
    the other live leaves, for one document's leaves as read; ``[]`` when it is not conflicted."""
    conflict = ConflictSet(db, doc_id, tuple(Leaf.from_doc(d) for d in docs))
    if not is_conflict(conflict, LWW.deletion):
        return []
    resolution = RESOLVER.resolve(conflict)
    if resolution.unresolvable is not None:
        raise ValueError(f"{doc_id}: lww found it unresolvable: {resolution.unresolvable}")
    plan = build_plan(conflict, resolution, RESOLVER.name)
    if plan.inline:  # the benchmark's documents have no attachments; the farm fetches and inlines them
        raise ValueError(f"{doc_id}: attachments to inline {plan.inline}; the benchmark does not")
    return ([plan.winner_write] if plan.winner_write else []) + plan.tombstones
