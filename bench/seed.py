"""Seeding conflicted documents and checking on them, for the benchmarks."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from couchfarm.couch import CouchClient
from couchfarm.scan import candidate_pages

FILLER = "x" * 900  # with the other fields, a body of about 1 KB


def leaves(doc_id: str, k: int, stamp: int = 0) -> list[dict[str, Any]]:
    base = hashlib.md5(f"{doc_id}:base".encode()).hexdigest()
    out = []
    for i in range(k):
        body = {
            "type": "reading",
            "updated_at": f"2026-01-{1 + (i * 7 + stamp) % 28:02d}T00:00:{i:02d}Z",
            "value": i,
            "sensor": doc_id[-3:],
            "filler": FILLER,
        }
        h = hashlib.md5(f"{doc_id}:{i}:{stamp}:{json.dumps(body)}".encode()).hexdigest()
        out.append({**body, "_id": doc_id, "_rev": f"2-{h}", "_revisions": {"start": 2, "ids": [h, base]}})
    return out


def seed(client: CouchClient, db: str, n: int, k: int, prefix: str = "doc") -> float:
    """``n`` documents with ``k`` live leaves each; returns the seconds it took."""
    started = time.perf_counter()
    client.create_db(db)
    docs = [leaf for i in range(n) for leaf in leaves(f"{prefix}-{i:06d}", k)]
    for i in range(0, len(docs), 1500):
        results = client.bulk_docs(db, docs[i : i + 1500], new_edits=False)
        bad = [r for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"seeding failed: {bad[:3]}")
    return time.perf_counter() - started


def conflicted_ids(client: CouchClient, db: str) -> list[str]:
    """Documents with more than one leaf (cheap: ``style=all_docs``), before any resolution."""
    return [i for page, _ in candidate_pages(client, db, page_size=2000) for i in page]


def remaining(client: CouchClient, db: str, ids: list[str]) -> int:
    """How many of ``ids`` still have more than one live leaf."""
    left = 0
    for i in range(0, len(ids), 200):
        for docs in client.read_leaves(db, ids[i : i + 200]).values():
            left += sum(1 for d in docs if not d.get("_deleted")) > 1
    return left
