"""Helpers for building conflicts on a real CouchDB-API server."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from couchfarm.batch import BatchLife, LocalRecord, Policy, Summary
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetterSink, MemoryDeadLetters
from couchfarm.resolution import Engine

FARM = "test"  #: the farm name of every test farm (COUCHFARM_FARM in tests/farm/procs.py)


def rev_hash(seed: str) -> str:
    return hashlib.md5(seed.encode()).hexdigest()


def make_conflict(
    client: CouchClient,
    db: str,
    doc_id: str,
    leaves: list[dict[str, Any]],
    *,
    base: dict[str, Any] | None = None,
    deleted: int = 0,
    generation: int = 2,
    hashes: list[str] | None = None,
    ancestor_body: bool = True,
) -> list[str]:
    """Write ``len(leaves)`` live leaves (and ``deleted`` deleted ones) of ``doc_id`` that all descend
    from one common ancestor at generation ``generation - 1`` whose body is ``base`` (empty when not
    given; ``ancestor_body=False`` writes no body for it, as after compaction); returns the live leaf
    revs (``hashes`` fixes their hashes, so a test can choose CouchDB's winner: the highest hash).
    Uses ``_bulk_docs`` with ``new_edits:false`` and ``_revisions``.
    """
    base_hash = rev_hash(f"{doc_id}:base")
    docs: list[dict[str, Any]] = []
    if ancestor_body:
        base = base or {}
        docs.append(
            {
                **base,
                "_id": doc_id,
                "_rev": f"{generation - 1}-{base_hash}",
                "_revisions": {"start": generation - 1, "ids": [base_hash]},
            }
        )
    revs = []
    for i, body in enumerate(leaves):
        h = hashes[i] if hashes else rev_hash(f"{doc_id}:{i}:{json.dumps(body, sort_keys=True)}")
        docs.append(
            {
                **body,
                "_id": doc_id,
                "_rev": f"{generation}-{h}",
                "_revisions": {"start": generation, "ids": [h, base_hash]},
            }
        )
        revs.append(f"{generation}-{h}")
    for j in range(deleted):
        h = rev_hash(f"{doc_id}:deleted:{j}")
        docs.append(
            {
                "_id": doc_id,
                "_rev": f"{generation}-{h}",
                "_deleted": True,
                "_revisions": {"start": generation, "ids": [h, base_hash]},
            }
        )
    client.create_db(db)
    results = client.bulk_docs(db, docs, new_edits=False)
    bad = [r for r in results if not r.ok]
    assert not bad, bad
    return revs


def live_leaves(client: CouchClient, db: str, doc_id: str) -> list[dict[str, Any]]:
    return [d for d in client.open_revs(db, doc_id) if not d.get("_deleted")]


def resolve_all(
    engine: Engine, db: str, ids: list[str], sink: DeadLetterSink | None = None, **policy: Any
) -> Summary:
    """Resolve in this process with the farm's loop (``couchfarm resolve``), retries without sleeping."""
    life = BatchLife(engine, LocalRecord(), sink or MemoryDeadLetters(), Policy(**policy))
    return life.run(db, ids, sleep=lambda s: None)


def seed_conflicts(client: CouchClient, db: str, n: int, prefix: str = "doc") -> list[str]:
    """``n`` documents with two live leaves each, in bulk: ``v`` 1 (January) and ``v`` 2 (February),
    so last-write-wins by ``updated_at`` keeps ``v`` 2, over a common ancestor with ``v`` 0 (whose
    body the merges that need it find). Returns the ids."""
    ids, docs = [], []
    for i in range(n):
        doc_id = f"{prefix}-{i:05d}"
        ids.append(doc_id)
        base = rev_hash(f"{doc_id}:base")
        ancestor = {"updated_at": "2025-12-01T00:00:00Z", "v": 0}
        docs.append(
            {**ancestor, "_id": doc_id, "_rev": f"1-{base}", "_revisions": {"start": 1, "ids": [base]}}
        )
        for v, month in ((1, "01"), (2, "02")):
            body = {"updated_at": f"2026-{month}-01T00:00:00Z", "v": v}
            h = rev_hash(f"{doc_id}:{v}")
            docs.append(
                {**body, "_id": doc_id, "_rev": f"2-{h}", "_revisions": {"start": 2, "ids": [h, base]}}
            )
    client.create_db(db)
    for i in range(0, len(docs), 1000):
        bad = [r for r in client.bulk_docs(db, docs[i : i + 1000], new_edits=False) if not r.ok]
        assert not bad, bad[:3]
    return ids


def wait_for(
    check: Callable[[], Any], timeout: float = 60.0, what: str = "condition", every: float = 0.1
) -> Any:
    """``check()``'s first true value, polled every ``every`` s; ``AssertionError`` after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not reached within {timeout}s")
