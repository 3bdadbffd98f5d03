"""``python -m bench``: couchfarm against the best single process and the naive way, in one run.

Seeds N conflicted documents (default 5,000 x 3 leaves, ~1 KB bodies) into fresh databases on the
same server and measures docs/s for: the reference (``bench.reference``: one process, three requests
per page of 500 documents), the naive way (per document: GET ?conflicts=true, GET each rev, POST
``_bulk_docs``) and couchfarm end to end (dispatcher + W worker processes); then latency from creation
to resolution under a steady trickle, the peak RSS of every process and the server's CPU seconds per
resolved document. Prints each way's ratios to the reference and to naive, and the targets of issue 15.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from bench.reference import Tally, reference
from bench.report import report, targets_json
from bench.seed import conflicted_ids, remaining, seed
from bench.server import ServerProcess, find_server
from bench.trickle import trickle
from bench.ways import BENCH_FARM, FarmRun, naive, peak_rss_mb
from couchfarm.couch import CouchClient
from couchfarm.ledger import Ledger
from couchfarm.state import FarmState
from workers.local_servers import PouchServer, RedisServer

Way = Callable[[CouchClient, str, list[str]], float]


class ServerClock:
    """The server's CPU seconds and the wall clock between ``start()`` and ``stop()``."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.cpu: float | None = None
        self.wall = 0.0

    def start(self) -> None:
        self.cpu, self.wall = self.server.cpu_seconds(), time.perf_counter()

    def stop(self, docs: int) -> dict[str, Any]:
        """Seconds, and the server's CPU per resolved document and per wall second (None: unknown)."""
        seconds = time.perf_counter() - self.wall
        now = self.server.cpu_seconds()
        used = None if now is None or self.cpu is None else now - self.cpu
        return {
            "seconds": round(seconds, 2),
            "docs_per_s": round(docs / seconds, 1),
            "server_cpu_s": None if used is None else round(used, 2),
            "server_cpu_s_per_doc": None if used is None or not docs else round(used / docs, 6),
            "server_busy": None if used is None else round(used / seconds, 2),
        }


def timed(client: CouchClient, server: ServerProcess, db: str, n: int, k: int, way: Way) -> dict[str, Any]:
    seed(client, db, n, k)
    ids = conflicted_ids(client, db)
    clock = ServerClock(server)
    clock.start()
    way(client, db, ids)
    measured = clock.stop(len(ids))
    return {"docs": len(ids), **measured, "left_conflicted": remaining(client, db, ids)}


def timed_reference(client: CouchClient, server: ServerProcess, db: str, n: int, k: int) -> dict[str, Any]:
    tally = Tally()
    result = timed(client, server, db, n, k, lambda c, d, ids: reference(c, d, ids, tally))
    return {**result, "tally": tally.as_json()}


def farm(
    client: CouchClient,
    server: ServerProcess,
    couch_url: str,
    redis_url: str,
    db: str,
    n: int,
    k: int,
    workers: int,
) -> dict[str, Any]:
    seed(client, db, n, k)
    ids = conflicted_ids(client, db)
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), BENCH_FARM)
    state.pause(db)  # the farm starts and takes the lease, but reads nothing until the clock starts
    run = FarmRun(couch_url, redis_url, db, workers)
    clock = ServerClock(server)
    try:
        run.start_workers()
        run.start_dispatcher()
        wait(lambda: state.holder(db)[0] is not None, 60)
        time.sleep(3)  # the worker pool is up (Celery starts in about a second)
        clock.start()
        state.unpause(db)
        wait(lambda: idle(client, state, db), 900, interval=0.25)
        measured = clock.stop(len(ids))
        rss = {name: [round(peak_rss_mb(p), 1) for p in pids] for name, pids in run.pids().items()}
    finally:
        run.stop()
    left = remaining(client, db, ids)
    return {"workers": workers, "docs": len(ids), **measured, "left_conflicted": left, "rss_mb": rss}


def idle(client: CouchClient, state: FarmState, db: str) -> bool:
    cp = state.checkpoint(db)
    if cp.read is None or Ledger(state.redis, state.farm).batches(db):
        return False
    return not client.changes(db, since=cp.read, limit=1).results


def wait(pred: Any, timeout: float, interval: float = 0.2) -> None:
    end = time.perf_counter() + timeout
    while not pred():
        if time.perf_counter() > end:
            raise TimeoutError("benchmark step did not finish")
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--leaves", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to run the farm with")
    parser.add_argument(
        "--naive-docs", type=int, default=500, help="the naive way is timed on this many documents"
    )
    parser.add_argument("--trickle-rate", type=float, default=10.0, help="conflicts per second")
    parser.add_argument("--trickle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--url", default=None, help="a CouchDB server to use instead of a local pouchdb-server"
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    pouch = None if args.url else PouchServer().start()
    redis_server = RedisServer().start()
    couch_url = args.url or pouch.url  # type: ignore[union-attr]
    server = find_server(args.url) if args.url else local_server(pouch)
    client = CouchClient(couch_url, timeout=(3.05, 300))
    tag = str(int(time.time()))
    results: dict[str, Any] = {"docs": args.docs, "leaves": args.leaves, "server": client.server_info()}
    results["server_process"] = server.how
    try:
        results["reference"] = timed_reference(client, server, f"bench-ref-{tag}", args.docs, args.leaves)
        results["naive"] = timed(client, server, f"bench-naive-{tag}", args.naive_docs, args.leaves, naive)
        results["farm"] = [
            farm(
                client, server, couch_url, redis_server.url, f"bench-farm{w}-{tag}", args.docs, args.leaves, w
            )
            for w in (int(x) for x in args.workers.split(","))
        ]
        results["trickle"] = trickle_run(client, couch_url, redis_server.url, f"bench-trickle-{tag}", args)
        if pouch is not None:
            results["server_rss_mb"] = round(peak_rss_mb(pouch.proc.pid), 1)  # type: ignore[union-attr]
        results["redis_rss_mb"] = round(peak_rss_mb(redis_server.proc.pid), 1)  # type: ignore[union-attr]
    finally:
        redis_server.close()
        if pouch is not None:
            pouch.close()
    results["targets"] = targets_json(results)
    report(results)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


def local_server(pouch: PouchServer | None) -> ServerProcess:
    pid = pouch.proc.pid if pouch is not None and pouch.proc is not None else None
    return ServerProcess(pid, f"pouchdb-server's node process (pid {pid}), started by the benchmark")


def trickle_run(client: CouchClient, couch_url: str, redis_url: str, db: str, args: Any) -> dict[str, Any]:
    client.create_db(db)
    run = FarmRun(couch_url, redis_url, db, workers=2, batch=10)
    try:
        run.start_workers()
        run.start_dispatcher()
        state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), BENCH_FARM)
        wait(lambda: state.holder(db)[0] is not None, 60)
        time.sleep(3)
        latencies = trickle(client, db, args.trickle_rate, args.trickle_seconds)
    finally:
        run.stop()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    return {
        "rate_per_s": args.trickle_rate,
        "resolved": len(latencies),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_s": round(p99, 3) if p99 is not None else None,
    }


if __name__ == "__main__":
    main()
