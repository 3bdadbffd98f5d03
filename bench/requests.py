"""``python -m bench.requests``: the server's CPU for one small request of each kind a database costs.

Seeds N databases with two conflicted documents each on a fresh pouchdb-server (or ``--url``), then
sends, one at a time, ``--count`` requests of each kind the farm makes per database (database info,
a normal ``_changes`` read, a ``_local`` read and write, a two-document leaf read), spread over the
databases, and prints the server's CPU per request. With the number of requests a database costs the
farm, this bounds the documents per second of many small databases (docs/performance.md).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.seed import seed
from bench.server import ServerProcess, find_server
from couchfarm.couch import CouchClient
from workers.local_servers import PouchServer


def per_request(server: ServerProcess, name: str, count: int, call: Callable[[int], Any]) -> None:
    cpu, wall = server.cpu_seconds(), time.perf_counter()
    for i in range(count):
        call(i)
    wall = (time.perf_counter() - wall) / count * 1000
    now = server.cpu_seconds()
    used = "-" if now is None or cpu is None else f"{(now - cpu) / count * 1000:.2f}"
    print(f"  {name:<36} server CPU {used:>6} ms   wall {wall:6.2f} ms   (mean of {count})", flush=True)


def kinds(client: CouchClient, server: ServerProcess, dbs: list[str], count: int) -> None:
    def db(i: int) -> str:
        return dbs[i % len(dbs)]

    per_request(server, "GET /{db} (update_seq poll)", count, lambda i: client.db_info(db(i)))
    per_request(server, "_changes style=all_docs", count, lambda i: client.changes(db(i), style="all_docs"))
    per_request(server, "GET _local (absent)", count, lambda i: client.get_local(db(i), f"bench-{i}"))
    per_request(server, "PUT _local", count, lambda i: client.put_local(db(i), f"bench-{i}", {"i": i}))
    per_request(
        server,
        "leaf read of 2 documents (without revs)",
        count,
        lambda i: client.read_leaf_sets(db(i), ["doc-000000", "doc-000001"]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__.splitlines()[0])
    parser.add_argument("--dbs", default="1,1000", help="numbers of databases (default 1,1000)")
    parser.add_argument("--count", type=int, default=300, help="requests of each kind (default 300)")
    parser.add_argument(
        "--url", help="a CouchDB server (admin credentials in the URL); default: a local pouchdb-server"
    )
    args = parser.parse_args(argv)
    pouch = None if args.url else PouchServer().start()
    try:
        url = args.url or pouch.url  # type: ignore[union-attr]
        pid = pouch.proc.pid if pouch is not None and pouch.proc is not None else None
        server = find_server(url) if args.url else ServerProcess(pid, "pouchdb-server")
        client = CouchClient(url)
        print(f"server CPU: {server.how}")
        stem = f"bench-req-{int(time.time())}"
        for n in (int(x) for x in args.dbs.split(",")):
            dbs = [f"{stem}-{n}-{i:05d}" for i in range(n)]
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda name: seed(client, name, 2, 3), dbs))
            print(f"{n} database(s) on the server, 2 conflicted documents each:")
            kinds(client, server, dbs, args.count)
    finally:
        if pouch is not None:
            pouch.close()


if __name__ == "__main__":
    main()
