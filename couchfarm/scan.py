"""Find a database's conflicted documents: more than one live leaf.

Pages through ``_changes?style=all_docs`` (every leaf rev, cheap) and reads the leaves of only the
documents that list more than one rev, to tell live leaves from deleted ones. A document whose other
leaves are all deleted is not conflicted (CouchDB does not list it in ``_conflicts`` either).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from couchfarm.couch import CouchClient
from couchfarm.feeds import Seq
from couchfarm.models import Leaf, winner_key


@dataclass(frozen=True)
class ConflictSummary:
    doc_id: str
    live: tuple[str, ...]  #: live leaf revs, CouchDB's winner first
    deleted: tuple[str, ...]  #: deleted leaf revs

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.doc_id,
            "leaves": len(self.live),
            "revs": list(self.live),
            "deleted_revs": list(self.deleted),
        }


def candidate_pages(
    client: CouchClient, db: str, *, page_size: int = 500, since: Seq = None
) -> Iterator[tuple[list[str], int]]:
    """Ids of documents with more than one leaf, a page at a time, with the rows read per page."""
    while True:
        page = client.changes(db, since=since, limit=page_size, style="all_docs")
        yield [r.id for r in page.results if len(r.revs) > 1], len(page.results)
        if len(page.results) < page_size:
            return
        since = page.last_seq


def summarize(doc_id: str, docs: list[dict[str, Any]]) -> ConflictSummary:
    leaves = sorted(
        (Leaf.from_doc(d) for d in docs), key=lambda leaf: winner_key(leaf.rev, leaf.deleted), reverse=True
    )
    return ConflictSummary(
        doc_id,
        tuple(leaf.rev for leaf in leaves if not leaf.deleted),
        tuple(leaf.rev for leaf in leaves if leaf.deleted),
    )


def scan(
    client: CouchClient,
    db: str,
    *,
    page_size: int = 500,
    include_deleted: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Iterator[ConflictSummary]:
    """Every conflicted document (``include_deleted``: also a live leaf against a deleted one)."""
    for ids, rows in candidate_pages(client, db, page_size=page_size):
        for doc_id, docs in client.read_leaves(db, ids).items():
            summary = summarize(doc_id, docs)
            if len(summary.live) > 1 or (include_deleted and summary.live and summary.deleted):
                yield summary
        if progress is not None:
            progress(rows)
