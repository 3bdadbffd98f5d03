"""``python -m bench.many``: the same number of conflicts in 1, 100 and 1,000 databases.

A database per tenant is the usual CouchDB pattern behind PouchDB sync, and most tenants are idle. For
each N it seeds N fresh databases with TOTAL / N conflicted documents each (3 leaves, ~1 KB bodies),
starts one dispatcher following them by a glob and W worker processes, and measures the documents
resolved per second from the dispatcher's start to the last database caught up. It prints each
figure next to the one-database figure (the target: the 1,000-database figure at least half of it),
with the CPU seconds the server (when it runs on this machine), the dispatcher and the workers spent in
the timed part; ``--requests`` adds the server's requests per database by kind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from bench.seed import conflicted_ids, remaining, seed
from bench.server import ServerProcess, find_server
from bench.ways import BENCH_FARM, FarmRun
from couchfarm.couch import CouchClient
from couchfarm.ledger import Ledger
from couchfarm.state import FarmState
from workers.local_servers import PouchServer, RedisServer


def settled(client: CouchClient, state: FarmState, book: Ledger, dbs: list[str]) -> bool:
    """Every database read to its end with nothing open (Redis first; the server only then)."""
    for db in dbs:
        cp = state.checkpoint(db)
        if cp.read is None or cp.done != cp.read or book.batches(db):
            return False
    return all(not client.changes(db, since=state.checkpoint(db).read, limit=1).results for db in dbs)


def request_kinds(lines: list[str]) -> Counter[str]:
    """pouchdb-server's request log lines counted by kind (``GET /{db}/_changes`` and the like)."""
    kinds: Counter[str] = Counter()
    for line in lines:
        m = re.search(r"- - (\w+) (\S+) \d+$", line)
        if not m:
            continue
        path, _, query = m[2].partition("?")
        parts = path.strip("/").split("/")
        if parts[0].startswith("_") or not parts[0]:
            kind = path
        else:
            kind = "/".join(["/{db}", *(p if p.startswith("_") else "{id}" for p in parts[1:])])
        kinds[f"{m[1]} {kind}{'?open_revs' if 'open_revs' in query else ''}"] += 1
    return kinds


class RequestLog:
    """The lines pouchdb-server logged between ``mark`` and ``take`` (its ``log.txt``)."""

    def __init__(self, path: Path) -> None:
        self.path, self.start = path, 0

    def mark(self) -> None:
        self.start = len(self.path.read_text().splitlines())

    def take(self) -> list[str]:
        return self.path.read_text().splitlines()[self.start :]


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds the processes (a process and its children) used so far."""
    each = [ServerProcess(pid, "").cpu_seconds() for pid in pids]
    return None if None in each else sum(t for t in each if t is not None)


def _spent(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else round(now - before, 1)


def one_run(
    client: CouchClient,
    couch_url: str,
    redis_url: str,
    n: int,
    total: int,
    workers: int,
    log: RequestLog | None = None,
) -> dict[str, Any]:
    stem = f"many{n}x{os.urandom(2).hex()}"
    dbs = [f"{stem}t{i:05d}" for i in range(n)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda db: seed(client, db, total // n, 3), dbs))
    ids = {db: conflicted_ids(client, db) for db in dbs}
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), BENCH_FARM)
    book = Ledger(state.redis, BENCH_FARM)
    run = FarmRun(couch_url, redis_url, f"{stem}t*", workers)
    try:
        run.start_workers()
        time.sleep(3)  # the worker pool is up (Celery starts in about a second)
        if log:
            log.mark()
        server = find_server(couch_url)
        server_cpu, workers_cpu = server.cpu_seconds(), cpu_seconds(run.pids()["worker"])
        started = time.perf_counter()
        run.start_dispatcher()
        end = started + 1800
        while not settled(client, state, book, dbs) and time.perf_counter() < end:
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        pids = run.pids()
        cpu = {
            "server": _spent(server.cpu_seconds(), server_cpu),
            "dispatcher": _spent(cpu_seconds(pids["dispatcher"]), 0.0),
            "workers": _spent(cpu_seconds(pids["worker"]), workers_cpu),
        }
        # the timed part's requests, less the last check's feed read of each database
        kinds = request_kinds(log.take()) if log else Counter()
        kinds["GET /{db}/_changes"] -= n if log else 0
    finally:
        run.stop()
    docs = sum(len(v) for v in ids.values())
    left = sum(remaining(client, db, ids[db]) for db in dbs)
    return {
        "databases": n,
        "docs": docs,
        "seconds": round(seconds, 2),
        "docs_per_s": round(docs / seconds, 1),
        "left": left,
        "cpu_seconds": cpu,
        "requests_per_db": {k: round(v / n, 2) for k, v in kinds.most_common() if v > 0},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.many", description=__doc__)
    parser.add_argument(
        "--url", help="a CouchDB server (admin credentials in the URL); default: a local pouchdb-server"
    )
    parser.add_argument("--total", type=int, default=2000, help="conflicted documents in all (default 2000)")
    parser.add_argument("--dbs", default="1,100,1000", help="numbers of databases (default 1,100,1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--json", dest="json_out", help="also write the results to this file")
    parser.add_argument(
        "--requests",
        action="store_true",
        help="also print the server's requests per database by kind (the local pouchdb-server's log)",
    )
    args = parser.parse_args(argv)
    pouch = None if args.url else PouchServer().start()
    redis_server = RedisServer().start()
    try:
        url = args.url or pouch.url  # type: ignore[union-attr]
        log = RequestLog(pouch.dir / "log.txt") if args.requests and pouch is not None else None
        client = CouchClient(url)
        runs = [
            one_run(client, url, redis_server.url, int(n), args.total, args.workers, log)
            for n in args.dbs.split(",")
        ]
    finally:
        redis_server.close()
        if pouch is not None:
            pouch.close()
    base = runs[0]["docs_per_s"]
    first = f"vs {runs[0]['databases']}"
    print(
        f"{'databases':>10} {'docs':>6} {'seconds':>8} {'docs/s':>8} {first:>8} {'left':>5}"
        f"  CPU s: {'server':>7} {'dispatcher':>10} {'workers':>8}"
    )
    for r in runs:
        cpu = {k: "n/a" if v is None else f"{v:.1f}" for k, v in r["cpu_seconds"].items()}
        print(
            f"{r['databases']:>10} {r['docs']:>6} {r['seconds']:>8.1f} {r['docs_per_s']:>8.1f} "
            f"{r['docs_per_s'] / base:>8.2f} {r['left']:>5}"
            f"         {cpu['server']:>7} {cpu['dispatcher']:>10} {cpu['workers']:>8}"
        )
    ratio = runs[-1]["docs_per_s"] / base
    verdict = "met" if ratio >= 0.5 else "NOT met"
    if len(runs) > 1:  # a ratio of one run to itself says nothing
        print(
            f"target: {runs[-1]['databases']} databases >= 0.5 x {runs[0]['databases']}: {ratio:.2f} x"
            f" ({verdict})"
        )
    for r in runs if args.requests else []:
        print(f"requests per database, {r['databases']} databases (timed part):")
        for kind, per_db in r["requests_per_db"].items():
            print(f"  {per_db:8.2f}  {kind}")
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump(runs, out, indent=2)


if __name__ == "__main__":
    main()
