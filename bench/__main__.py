"""``python -m bench``: couchfarm against the fastest single process and the naive way, in one run.

Seeds N conflicted documents (default 5,000 x 3 leaves, ~1 KB bodies) into fresh databases on the
same server and measures docs/s for: the reference (one process, bulk reads, one ``_bulk_docs`` per
batch: what the server allows), couchfarm end to end (dispatcher + W worker processes), and the naive
way (per document: GET ?conflicts=true, GET each rev, POST ``_bulk_docs``); then latency from creation
to resolution under a steady trickle, and the peak RSS of every process. Prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import redis

from bench.seed import conflicted_ids, remaining, seed
from bench.trickle import trickle
from bench.ways import FarmRun, cpu_seconds, naive, peak_rss_mb, reference
from couchfarm.couch import CouchClient
from couchfarm.ledger import Ledger
from couchfarm.state import FarmState
from workers.local_servers import PouchServer, RedisServer


def farm(
    client: CouchClient, couch_url: str, redis_url: str, db: str, n: int, k: int, workers: int
) -> dict[str, Any]:
    seed(client, db, n, k)
    ids = conflicted_ids(client, db)
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True))
    state.pause(db)  # the farm starts and takes the lease, but reads nothing until the clock starts
    run = FarmRun(couch_url, redis_url, db, workers)
    try:
        run.start_workers()
        run.start_dispatcher()
        wait(lambda: state.holder(db)[0] is not None, 60)
        time.sleep(3)  # the worker pool is up (Celery starts in about a second)
        started, cpu = time.perf_counter(), server_cpu()
        state.resume(db)
        wait(lambda: idle(client, state, db), 900, interval=0.25)
        seconds = time.perf_counter() - started
        busy = round((server_cpu() - cpu) / seconds, 2) if SERVER_PID else None
        rss = {name: [round(peak_rss_mb(p), 1) for p in pids] for name, pids in run.pids().items()}
    finally:
        run.stop()
    left = remaining(client, db, ids)
    return {
        "workers": workers,
        "docs": len(ids),
        "seconds": round(seconds, 2),
        "docs_per_s": round(len(ids) / seconds, 1),
        "left_conflicted": left,
        "rss_mb": rss,
        "server_busy": busy,
    }


def idle(client: CouchClient, state: FarmState, db: str) -> bool:
    cp = state.checkpoint(db)
    if cp.read is None or Ledger(state.redis).batches(db):
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
    if pouch is not None and pouch.proc is not None:
        SERVER_PID.append(pouch.proc.pid)
    client = CouchClient(couch_url, timeout=(3.05, 300))
    tag = str(int(time.time()))
    results: dict[str, Any] = {"docs": args.docs, "leaves": args.leaves, "server": client.server_info()}
    try:
        results["reference"] = timed(client, f"bench-ref-{tag}", args.docs, args.leaves, reference)
        results["naive"] = timed(client, f"bench-naive-{tag}", args.naive_docs, args.leaves, naive)
        results["farm"] = [
            farm(client, couch_url, redis_server.url, f"bench-farm{w}-{tag}", args.docs, args.leaves, w)
            for w in (int(x) for x in args.workers.split(","))
        ]
        results["trickle"] = trickle_run(client, couch_url, redis_server.url, f"bench-trickle-{tag}", args)
        if pouch is not None:
            results["server_rss_mb"] = round(peak_rss_mb(pouch.proc.pid), 1)  # type: ignore[union-attr]
        results["redis_rss_mb"] = round(peak_rss_mb(redis_server.proc.pid), 1)  # type: ignore[union-attr]
    finally:
        redis_server.stop()
        if pouch is not None:
            pouch.stop()
    report(results)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


SERVER_PID: list[int] = []  #: the local pouchdb-server, whose CPU use shows when the server is the limit


def server_cpu() -> float:
    return cpu_seconds(SERVER_PID[0]) if SERVER_PID else 0.0


def timed(client: CouchClient, db: str, n: int, k: int, way: Any) -> dict[str, Any]:
    seed(client, db, n, k)
    ids = conflicted_ids(client, db)
    cpu = server_cpu()
    seconds = way(client, db, ids)
    return {
        "docs": len(ids),
        "seconds": round(seconds, 2),
        "docs_per_s": round(len(ids) / seconds, 1),
        "left_conflicted": remaining(client, db, ids),
        "server_busy": round((server_cpu() - cpu) / seconds, 2) if SERVER_PID else None,
    }


def trickle_run(client: CouchClient, couch_url: str, redis_url: str, db: str, args: Any) -> dict[str, Any]:
    client.create_db(db)
    run = FarmRun(couch_url, redis_url, db, workers=2, batch=10)
    try:
        run.start_workers()
        run.start_dispatcher()
        state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True))
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


def report(r: dict[str, Any]) -> None:
    ref, nai = r["reference"]["docs_per_s"], r["naive"]["docs_per_s"]
    print(f"\ncouchfarm benchmark: {r['docs']} conflicted documents x {r['leaves']} leaves, ~1 KB bodies")
    print(f"{'way':<28}{'docs':>7}{'seconds':>9}{'docs/s':>9}{'left':>6}{'server CPU':>12}")
    rows = [("reference (1 process)", r["reference"]), ("naive (per document)", r["naive"])]
    rows += [(f"couchfarm, {f['workers']} worker(s)", f) for f in r["farm"]]
    for name, row in rows:
        busy = f"{row['server_busy']:.0%}" if row.get("server_busy") is not None else "-"
        print(
            f"{name:<28}{row['docs']:>7}{row['seconds']:>9}{row['docs_per_s']:>9}{row['left_conflicted']:>6}"
            f"{busy:>12}"
        )
    print()
    for f in r["farm"]:
        print(
            f"farm/reference with {f['workers']} worker(s): {f['docs_per_s'] / ref:.2f}   "
            f"farm/naive: {f['docs_per_s'] / nai:.1f}"
        )
    t = r["trickle"]
    print(
        f"\ntrickle of {t['rate_per_s']}/s: {t['resolved']} resolved, "
        f"latency p50 {t['p50_s']} s, p99 {t['p99_s']} s"
    )
    print("\npeak RSS (MB):")
    for f in r["farm"]:
        print(f"  {f['workers']} worker(s): " + ", ".join(f"{k} {v}" for k, v in f["rss_mb"].items()))
    if "server_rss_mb" in r:
        print(f"  pouchdb-server {r['server_rss_mb']}, redis-server {r['redis_rss_mb']}")


if __name__ == "__main__":
    main()
