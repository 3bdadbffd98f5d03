"""Latency from conflict creation to resolution while conflicts arrive at a steady trickle."""

from __future__ import annotations

import threading
import time

from bench.seed import leaves
from couchfarm.couch import CouchClient


def trickle(client: CouchClient, db: str, rate: float, seconds: float) -> list[float]:
    """Write one conflicted document every 1/rate s for ``seconds``; returns each one's latency (s)."""
    created: dict[str, float] = {}
    latencies: dict[str, float] = {}
    lock = threading.Lock()
    done = threading.Event()

    def writer() -> None:
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            doc_id = f"tr-{i:06d}"
            client.bulk_docs(db, leaves(doc_id, 2, stamp=i), new_edits=False)
            with lock:
                created[doc_id] = time.perf_counter()
            i += 1
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.perf_counter() + seconds + 60
    while time.perf_counter() < deadline:
        with lock:
            pending = [d for d in created if d not in latencies]
        if done.is_set() and not pending:
            break
        if pending:
            now = time.perf_counter()
            for doc_id, docs in client.read_leaves(db, pending).items():
                if sum(1 for d in docs if not d.get("_deleted")) == 1:
                    latencies[doc_id] = now - created[doc_id]
        time.sleep(0.05)
    thread.join()
    return sorted(latencies.values())
