"""``python -m bench.steps``: the server's CPU for each request of the reference, one at a time.

Seeds a database on a fresh pouchdb-server (or ``--url``), then sends, with nothing else in flight,
the requests the reference makes for a few pages (feed page, ``_bulk_get`` of the losing leaves,
``_bulk_docs`` of winners and tombstones) and, for comparison, the farm's leaf read on servers
other than CouchDB (one ``GET ?open_revs=all`` per document). Prints wall and server CPU seconds of
each, so the reference's cost per document can be split by request.
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
    since = None
    for i in range(count):
        print(f"page {i + 1} ({PAGE} documents)")
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
        ids = [row.id for row in feed.results]
        timed(server, f"farm's read_leaves of {len(ids)} documents", client.read_leaves, db, ids)
        writes = [w for row in feed.results for w in writes_for(db, row.id, [row.doc or {}, *leaves[row.id]])]
        timed(server, f"_bulk_docs of {len(writes)} winners and tombstones", client.bulk_docs, db, writes)


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
