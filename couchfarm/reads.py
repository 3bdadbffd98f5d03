"""Bulk leaf reads for servers whose ``_bulk_get`` answers an id with its winner only (pouchdb-server).

Apache CouchDB answers ``_bulk_get`` ``{"id"}`` entries with every leaf, deleted ones included:
one request per batch (``CouchClient.read_leaf_sets``). Elsewhere the alternative was one
``GET ?open_revs=all`` per document. When the revisions the ``_changes`` feed listed for each
document (``style=all_docs``: every leaf, deleted ones too) are known, two requests do instead:

1. ``POST _all_docs {"keys"}`` with ``include_docs`` and ``conflicts``: each document's current
   winner and live losing leaves (a document deleted everywhere or gone answers without a doc);
2. one ``POST _bulk_get?revs=true`` of exactly those revisions and the ones the feed listed (the
   feed's deleted leaves; ``latest`` is not used: pouchdb-server crashes on it).

A revision the feed listed may no longer be a leaf (edited, tombstoned or compacted since): every live
leaf is in ``_all_docs``' answer, so a feed-only revision is kept only when it is a deletion (and no
fetched revision descends from it), and one the server no longer has is ignored; a current leaf that
cannot be read makes the read partial (the document is retried). A deletion made
after the feed row is not seen here: it is a change of its own, and its row brings the document back.
"""

from __future__ import annotations

import contextlib
from typing import Any

from couchfarm.errors import NotFound
from couchfarm.http import quote_id
from couchfarm.replies import LeafRead, entry_error


def read_known_leaves(http: Any, db: str, known: dict[str, list[str]]) -> dict[str, LeafRead]:
    """Every leaf of each document of ``known`` (doc id -> the leaf revs the feed listed)."""
    ids = list(known)
    rows = http.request(
        "POST",
        f"{quote_id(db)}/_all_docs",
        params={"include_docs": True, "conflicts": True},
        body={"keys": ids},
    ).json()["rows"]
    current: dict[str, list[str]] = {}
    gone: set[str] = set()
    for row in rows:
        doc = row.get("doc")
        if isinstance(doc, dict):
            current[row["key"]] = [doc["_rev"], *doc.get("_conflicts", [])]
        elif row.get("error") == "not_found" or (row.get("value") or {}).get("deleted"):
            gone.add(row["key"])  # no live leaf: missing, or deleted everywhere
    pairs = [
        {"id": doc_id, "rev": rev}
        for doc_id in ids
        for rev in dict.fromkeys([*current.get(doc_id, []), *known[doc_id]])
    ]
    results = http.request("POST", f"{quote_id(db)}/_bulk_get", params={"revs": True}, body={"docs": pairs})
    return _leaves(ids, current, gone, results.json().get("results", []))


def _leaves(
    ids: list[str], current: dict[str, list[str]], gone: set[str], results: list[dict[str, Any]]
) -> dict[str, LeafRead]:
    docs: dict[str, dict[str, dict[str, Any]]] = {i: {} for i in ids}
    errors: dict[str, list[str]] = {i: [] for i in ids}
    for result in results:
        doc_id = result.get("id")
        if doc_id not in docs:
            continue
        for entry in result.get("docs") or []:
            if isinstance(entry, dict) and isinstance(entry.get("ok"), dict):
                docs[doc_id][entry["ok"]["_rev"]] = entry["ok"]
            elif not isinstance(entry, dict) or not ("missing" in entry or "error" in entry):
                errors[doc_id].append(entry_error(entry))  # not an answer about a revision at all
    out = {}
    for doc_id in ids:
        fetched = docs[doc_id]
        below = {rev for doc in fetched.values() for rev in _ancestry(doc)[1:]}
        live = set(current.get(doc_id, []))
        # every live leaf is in _all_docs' answer; a feed revision that is not is either a deleted
        # leaf (kept) or was a leaf once and has been edited or tombstoned since (dropped)
        leaves = [
            doc for rev, doc in fetched.items() if rev not in below and (rev in live or doc.get("_deleted"))
        ]
        if doc_id in gone and not any(not d.get("_deleted") for d in leaves):
            out[doc_id] = LeafRead(leaves, [], gone=not leaves)
            continue
        missing = [rev for rev in current.get(doc_id, []) if rev not in fetched]  # a live leaf unread
        out[doc_id] = LeafRead(leaves, errors[doc_id] + [f"revision {rev} not returned" for rev in missing])
    return out


def _ancestry(doc: dict[str, Any]) -> list[str]:
    revisions = doc.get("_revisions") or {}
    start = int(revisions.get("start", 0))
    return [f"{start - i}-{h}" for i, h in enumerate(revisions.get("ids", []))]


def read_revisions(http: Any, db: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The bodies of explicit revisions (leaves or not) in one ``_bulk_get``: ``(id, rev)`` -> the
    document, or None where the server no longer has that revision's body (compaction,
    ``_revs_limit``); a pair the answer does not mention is left out (read it on its own)."""
    if not pairs:
        return {}
    body = {"docs": [{"id": doc_id, "rev": rev} for doc_id, rev in dict.fromkeys(pairs)]}
    results = http.request("POST", f"{quote_id(db)}/_bulk_get", params={"revs": True}, body=body).json()
    out: dict[tuple[str, str], Any] = {}
    for result in results.get("results", []):
        for entry in result.get("docs") or []:
            if isinstance(entry, dict) and isinstance(entry.get("ok"), dict):
                out[(str(result.get("id")), entry["ok"]["_rev"])] = entry["ok"]
            elif isinstance(entry, dict) and "missing" in entry:
                out[(str(result.get("id")), str(entry["missing"]))] = None
            elif isinstance(entry, dict) and isinstance(entry.get("error"), dict):
                err = entry["error"]
                if err.get("error") == "not_found":
                    out[(str(err.get("id", result.get("id"))), str(err.get("rev")))] = None
    return out


def update_seqs(client: Any, dbs: list[str]) -> dict[str, Any]:
    """Each database's ``update_seq`` (opaque; compared for equality only); a database that does not
    exist is left out. ``POST /_dbs_info`` answers 100 at a time on CouchDB 2.2+; elsewhere one
    ``GET /{db}`` each, one at a time: on a busy server each answer comes later and polling slows
    down by itself, never holding more than one of the server's request slots."""
    if not dbs:
        return {}
    out: dict[str, Any] = {}
    if client.is_couchdb:
        for i in range(0, len(dbs), 100):
            rows = client.http.request("POST", "_dbs_info", body={"keys": dbs[i : i + 100]}).json()
            out.update({r["key"]: r["info"]["update_seq"] for r in rows if isinstance(r.get("info"), dict)})
        return out
    for db in dbs:
        with contextlib.suppress(NotFound):
            out[db] = client.db_info(db).get("update_seq")
    return out
