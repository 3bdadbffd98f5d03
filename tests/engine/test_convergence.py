"""Two replicas, two resolvers at once: they converge on one winner and stop (no ping-pong)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from couchfarm.couch import CouchClient
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.scan import candidate_pages, scan
from tests.helpers import resolve_all
from workers.local_servers import PouchServer

STRATEGIES = ["lww:field=updated_at", "fields:timestamp=updated_at"]


def replicate(
    client: CouchClient, server: PouchServer, source: str, target: str, doc_id: str, **kw: Any
) -> None:
    client.create_db("_replicator")
    client.put(
        "_replicator",
        {"_id": doc_id, "source": f"{server.url}/{source}", "target": f"{server.url}/{target}", **kw},
    )


def wait_for(pred: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached")


def state(client: CouchClient, db: str) -> dict[str, str]:
    """doc id -> every leaf rev (live and deleted), the whole revision state."""
    return {r.id: ",".join(sorted(r.revs)) for r in client.changes(db, style="all_docs").results}


def resolver_loop(client: CouchClient, db: str, spec: str, stop: threading.Event) -> None:
    engine = Engine(client, Router([], default=parse_strategy(spec)))
    while not stop.is_set():
        ids = [i for page, _ in candidate_pages(client, db) for i in page]
        resolve_all(engine, db, ids)
        time.sleep(0.1)


@pytest.mark.parametrize("spec", STRATEGIES)
def test_two_replicas_converge_without_ping_pong(
    pouch_server: PouchServer, client: CouchClient, spec: str
) -> None:
    a, b = f"conv-a-{spec[:3]}", f"conv-b-{spec[:3]}"
    for name in (a, b):
        client.create_db(name)
    n = 20
    base = [
        {"_id": f"doc{i}", "updated_at": "2026-01-01T00:00:00Z", "n": 0, "tags": ["base"]} for i in range(n)
    ]
    client.bulk_docs(a, base)
    replicate(client, pouch_server, a, b, f"seed-{a}")
    wait_for(lambda: len(state(client, b)) == n)
    for name, stamp in ((a, "2026-02-01T00:00:00Z"), (b, "2026-03-01T00:00:00Z")):  # offline edits
        docs = [client.get(name, f"doc{i}") for i in range(n)]
        client.bulk_docs(name, [{**d, "updated_at": stamp, "n": i, "side": name} for i, d in enumerate(docs)])
    replicate(client, pouch_server, a, b, f"ab-{a}", continuous=True)
    replicate(client, pouch_server, b, a, f"ba-{a}", continuous=True)
    wait_for(lambda: len(list(scan(client, a))) == n and len(list(scan(client, b))) == n)

    stop = threading.Event()
    threads = [threading.Thread(target=resolver_loop, args=(client, name, spec, stop)) for name in (a, b)]
    for t in threads:
        t.start()
    try:
        wait_for(
            lambda: (
                not list(scan(client, a))
                and not list(scan(client, b))
                and state(client, a) == state(client, b)
            ),
            timeout=60,
        )
        settled = state(client, a)
        seq_a = client.db_info(a)["update_seq"]
        time.sleep(2.0)  # several more resolver rounds and replication passes
        assert state(client, a) == settled == state(client, b), "revisions kept growing (ping-pong)"
        assert client.db_info(a)["update_seq"] == seq_a
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    winners_a = {i: client.get(a, f"doc{i}") for i in range(n)}
    winners_b = {i: client.get(b, f"doc{i}") for i in range(n)}
    assert winners_a == winners_b
    if spec.startswith("lww"):
        assert all(d["side"] == b for d in winners_a.values())
