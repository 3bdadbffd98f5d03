"""A database's conflicted documents for a page: from the conflicts view, else a scan, within a time budget.

The ``_design/couchfarm`` view (``couchfarm conflicts install-view``) answers fast, but CouchDB views
do not index design documents, so their conflicts are added from ``_all_docs`` over the
``_design/`` range. Without the view the changes feed is scanned (``couchfarm.scan``), page by page,
until the budget runs out: the listing then says it is incomplete instead of hanging the page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from couchfarm.couch import CouchClient
from couchfarm.errors import NotFound
from couchfarm.manual import DESIGN_ID, VIEW
from couchfarm.scan import candidate_pages, summarize

PAGE = 500


@dataclass(frozen=True)
class Listed:
    doc_id: str
    leaves: int  #: live leaves
    revs: tuple[str, ...]  #: live revs, CouchDB's winner first when known


@dataclass
class Listing:
    source: str  #: ``view`` or ``scan``
    docs: list[Listed] = field(default_factory=list)
    complete: bool = True  #: False when the budget ran out before the end


def conflicted(client: CouchClient, db: str, budget: float = 5.0) -> Listing:
    """Conflicted documents of ``db``; ``NotFound`` when the database does not exist."""
    deadline = time.monotonic() + budget
    try:
        listing = _from_view(client, db, deadline)
    except NotFound:
        client.db_info(db)  # the database itself is missing: say that
        return _from_scan(client, db, deadline)
    known = {d.doc_id for d in listing.docs}
    listing.docs += [d for d in _design_conflicts(client, db) if d.doc_id not in known]
    return listing


def _from_view(client: CouchClient, db: str, deadline: float) -> Listing:
    listing = Listing("view")
    params: dict[str, object] = {"limit": PAGE}
    while True:
        rows = client.view(db, DESIGN_ID.removeprefix("_design/"), VIEW, **params)
        listing.docs += [
            Listed(r["id"], 1 + len(r.get("value") or []), tuple(r.get("value") or [])) for r in rows
        ]
        if len(rows) < PAGE:
            return listing
        if time.monotonic() > deadline:
            listing.complete = False
            return listing
        params = {"limit": PAGE, "startkey": rows[-1]["key"], "skip": 1}


def _design_conflicts(client: CouchClient, db: str) -> list[Listed]:
    rows = client.all_docs(db, startkey="_design/", endkey="_design0", conflicts=True, include_docs=True)
    out = []
    for row in rows:
        doc = row.get("doc") or {}
        if doc.get("_conflicts"):
            others = tuple(doc["_conflicts"])
            out.append(Listed(row["id"], 1 + len(others), (doc["_rev"], *others)))
    return out


def _from_scan(client: CouchClient, db: str, deadline: float) -> Listing:
    listing = Listing("scan")
    for i, (ids, _rows) in enumerate(candidate_pages(client, db, page_size=PAGE)):
        if i and time.monotonic() > deadline:  # this page was read but there is no time to look at it
            listing.complete = False
            break
        for doc_id, docs in client.read_leaves(db, ids).items():
            summary = summarize(doc_id, docs)
            if len(summary.live) > 1:
                listing.docs.append(Listed(doc_id, len(summary.live), summary.live))
    return listing
