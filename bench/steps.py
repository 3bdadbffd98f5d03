"""``python -m bench.steps``: the server's CPU for each request of the reference, one at a time.

Seeds a database on a fresh pouchdb-server (or ``--url``), then sends, with nothing else in flight,
the requests the reference makes for a page (feed page with bodies, ``_bulk_get`` of the losing
leaves, one ``_bulk_docs`` of winners and tombstones) on odd pages, and those the farm makes for a
batch of the same size on even pages (feed page without bodies, the leaf read, winners, then
tombstones). Prints wall and server CPU seconds of each, so each way's cost per document can be
split by request.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from bench.merge import writes_for
from bench.reference import PAGE, bulk_get, losing_leaves
from bench.seed import seed
from bench.server import ServerProcess, find_server
from couchfarm.couch import CouchClient
from workers.local_servers import PouchServer


def timed(server: ServerProcess, name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    cpu, wall = server.cpu_seconds(), time.perf_counter()
    result = call(*args, **kwargs)
    wall = time.perf_counter() - wall
    now = server.cpu_seconds()
    used = "-" if now is None or cpu is None else f"{now - cpu:.3f}"
    print(f"  {name:<52} wall {wall:6.3f} s   server CPU {used} s")
    return result


def pages(client: CouchClient, server: ServerProcess, db: str, count: int) -> None:
    """Odd pages the reference's way, even pages the farm's (each page its own documents)."""
    since = None
    for i in range(count):
        if i % 2:
            since = farm_page(client, server, db, since)
            continue
        print(f"page {i + 1} ({PAGE} documents), the reference's requests")
        options = {
            "since": since,
            "limit": PAGE,
            "style": "all_docs",
            "conflicts": True,
            "include_docs": True,
        }
        feed = timed(server, "_changes style=all_docs conflicts include_docs", client.changes, db, **options)
        since = feed.last_seq
        pairs = [pair for row in feed.results for pair in losing_leaves(row)]
        leaves = timed(server, f"_bulk_get of {len(pairs)} explicit leaves", bulk_get, client, db, pairs)
        writes = [w for row in feed.results for w in writes_for(db, row.id, [row.doc or {}, *leaves[row.id]])]
        timed(server, f"_bulk_docs of {len(writes)} winners and tombstones", client.bulk_docs, db, writes)


def farm_page(client: CouchClient, server: ServerProcess, db: str, since: Any) -> Any:
    """The farm's requests for one page, as the dispatcher and a worker send them for a batch of
    ``PAGE`` documents: the feed without bodies (the dispatcher's read), every leaf of the batch
    (``CouchClient.read_leaf_sets`` with the revs the feed listed: two requests where ``_bulk_get``
    answers an ``{"id"}`` with the winner only), then the winners and, only after them, the tombstones
    (two ``_bulk_docs``: the farm never tombstones a leaf before its winner is written)."""
    print(f"page of {PAGE} documents, the farm's requests")
    options = {"since": since, "limit": PAGE, "style": "all_docs"}
    feed = timed(server, "_changes style=all_docs (dispatcher)", client.changes, db, **options)
    known = {row.id: list(row.revs) for row in feed.results}
    reads = timed(
        server, f"read_leaf_sets of {len(known)} documents", client.read_leaf_sets, db, known, known
    )
    writes = [w for doc_id, read in reads.items() for w in writes_for(db, doc_id, read.docs)]
    winners = [w for w in writes if not w.get("_deleted")]
    tombstones = [w for w in writes if w.get("_deleted")]
    timed(server, f"_bulk_docs of {len(winners)} winners", client.bulk_docs, db, winners)
    timed(server, f"_bulk_docs of {len(tombstones)} tombstones", client.bulk_docs, db, tombstones)
    return feed.last_seq


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument(
        "--url", default=None, help="a CouchDB server to use instead of a local pouchdb-server"
    )
    args = parser.parse_args()
    pouch = None if args.url else PouchServer().start()
    try:
        url = args.url or pouch.url  # type: ignore[union-attr]
        pid = pouch.proc.pid if pouch is not None and pouch.proc is not None else None
        server = find_server(url) if args.url else ServerProcess(pid, "pouchdb-server")
        client, db = CouchClient(url, timeout=(3.05, 300)), f"bench-steps-{int(time.time())}"
        seed(client, db, args.docs, 3)
        print(f"server CPU: {server.how}")
        pages(client, server, db, min(args.pages, args.docs // PAGE))
    finally:
        if pouch is not None:
            pouch.close()


if __name__ == "__main__":
    main()
