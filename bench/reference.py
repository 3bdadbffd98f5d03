"""The reference: the best single process we know for a database full of conflicts.

Per page of ``PAGE`` (500) rows, three requests:

1. ``GET _changes?style=all_docs&conflicts=true&include_docs=true&limit=500``: every leaf rev of each
   document, and the winner's body with its ``_conflicts``, come with the feed;
2. ``POST _bulk_get?revs=true`` with an explicit ``{"id", "rev"}`` pair for exactly the leaves that
   are not the winner. Explicit pairs return any leaf, deleted ones too, on CouchDB and on
   pouchdb-server; only an ``{"id"}`` without a rev is answered with the winner alone by
   pouchdb-server. Every answer is checked against the request (``leaves_missing``);
3. the merge (``bench.merge``: the farm's own lww resolver and plan), then one ``_bulk_docs`` with
   the winners and the tombstones together. This is the reference's safety shortcut: the farm
   writes the winners first and tombstones only what was safely written, one request more.

The calling thread pages the feed; ``THREADS`` threads each read, merge and write one page; at most
``WINDOW`` pages are read and not yet written. The process resolves the conflicted documents it is
given (``ids``) and stops when it has seen all of them or the feed ends, so it never pages through
its own writes, which the feed lists again after the seeded rows.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

from bench.merge import writes_for
from bench.seed import conflicted_ids
from couchfarm.couch import CouchClient
from couchfarm.feeds import ChangeRow, Seq
from couchfarm.http import quote_id
from couchfarm.replies import parse_bulk_get

PAGE = 500  #: documents per page, one feed read, one _bulk_get and one _bulk_docs each
THREADS = 2  #: threads that read leaves, merge and write
WINDOW = 3  #: pages read and not yet written, at most


@dataclass
class Tally:
    """What the reference sent and got back, summed over pages."""

    pages: int = 0
    requests: int = 0
    docs: int = 0
    leaves_requested: int = 0
    leaves_missing: int = 0  #: requested by explicit rev and not returned: must stay 0
    writes: int = 0
    write_errors: int = 0
    #: thread seconds per step (two threads overlap, so the sum can exceed the wall time)
    feed_s: float = 0.0
    bulk_get_s: float = 0.0
    merge_s: float = 0.0
    bulk_docs_s: float = 0.0
    window_full_s: float = 0.0  #: the feed reader waited for a page to be written

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_json(self) -> dict[str, float]:
        return {f.name: round(getattr(self, f.name), 3) for f in fields(self)}


def losing_leaves(row: ChangeRow) -> list[dict[str, str]]:
    """``{"id", "rev"}`` for every leaf of the row's document but the winner the feed carried; ``[]``
    when the winner lists no ``_conflicts`` (its other leaves, if any, are deleted: no conflict)."""
    if row.doc is None or not row.conflicts:
        return []
    winner = row.doc.get("_rev")
    return [{"id": row.id, "rev": rev} for rev in row.revs if rev != winner]


def missing(requested: list[dict[str, str]], leaves: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    """The requested ``{"id", "rev"}`` pairs that the answer does not hold."""
    got = {(doc_id, doc.get("_rev")) for doc_id, docs in leaves.items() for doc in docs}
    return [pair for pair in requested if (pair["id"], pair["rev"]) not in got]


def bulk_get(client: CouchClient, db: str, pairs: list[dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
    """One ``POST _bulk_get?revs=true`` of explicit leaves, as leaves per id."""
    resp = client.http.request(
        "POST", f"{quote_id(db)}/_bulk_get", params={"revs": True}, body={"docs": pairs}
    )
    reads = parse_bulk_get(resp.json(), list(dict.fromkeys(p["id"] for p in pairs)))
    return {doc_id: read.docs for doc_id, read in reads.items()}


def resolve_page(client: CouchClient, db: str, rows: list[ChangeRow]) -> Tally:
    """Read the losing leaves of ``rows`` in one request, merge, write everything in one request."""
    t0 = time.perf_counter()
    pairs = [pair for row in rows for pair in losing_leaves(row)]
    leaves = bulk_get(client, db, pairs)
    t1 = time.perf_counter()
    writes = [w for row in rows for w in writes_for(db, row.id, [row.doc or {}, *leaves.get(row.id, [])])]
    t2 = time.perf_counter()
    results = client.bulk_docs(db, writes)
    return Tally(
        bulk_get_s=t1 - t0,
        merge_s=t2 - t1,
        bulk_docs_s=time.perf_counter() - t2,
        pages=1,
        requests=2,
        docs=len(rows),
        leaves_requested=len(pairs),
        leaves_missing=len(missing(pairs, leaves)),
        writes=len(writes),
        write_errors=sum(not r.ok for r in results),
    )


def reference(
    client: CouchClient,
    db: str,
    ids: list[str],
    tally: Tally | None = None,
    *,
    page: int = PAGE,
    threads: int = THREADS,
    window: int = WINDOW,
) -> float:
    """Resolve the conflicted documents ``ids`` of ``db``; returns the seconds it took and adds what
    it sent to ``tally``."""
    tally = tally if tally is not None else Tally()
    todo = set(ids)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[Tally]] = deque()
        since: Seq = None
        while todo:
            t0 = time.perf_counter()
            while len(pending) >= window:
                tally.add(pending.popleft().result())
            t1 = time.perf_counter()
            feed = client.changes(
                db, since=since, limit=page, style="all_docs", conflicts=True, include_docs=True
            )
            tally.requests += 1
            tally.window_full_s += t1 - t0
            tally.feed_s += time.perf_counter() - t1
            rows = [r for r in feed.results if r.id in todo and r.conflicts]
            todo.difference_update(r.id for r in feed.results)
            if rows:
                pending.append(pool.submit(resolve_page, client, db, rows))
            if len(feed.results) < page:
                break
            since = feed.last_seq
        for future in pending:
            tally.add(future.result())
    return time.perf_counter() - started


def main() -> None:
    """``python -m bench.reference URL DB``: resolve DB's conflicted documents once, as the reference."""
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=main.__doc__)
    parser.add_argument("url", help="the server, with credentials")
    parser.add_argument("db")
    args = parser.parse_args()
    client = CouchClient(args.url, timeout=(3.05, 300))
    ids = conflicted_ids(client, args.db)
    tally, cpu = Tally(), time.process_time()
    seconds = reference(client, args.db, ids, tally)
    print(
        f"{len(ids)} documents in {seconds:.2f} s: {len(ids) / max(seconds, 1e-9):.0f} docs/s, "
        f"this process {1000 * (time.process_time() - cpu) / max(len(ids), 1):.2f} ms CPU per document, "
        f"{tally.requests} requests, {tally.leaves_missing} leaves missing"
    )
    print(", ".join(f"{k} {v}" for k, v in tally.as_json().items() if k.endswith("_s")))


if __name__ == "__main__":
    main()
