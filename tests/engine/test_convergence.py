"""Two replicas, two resolvers at once: they converge on one winner and stop (no ping-pong)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from couchfarm.couch import CouchClient
from couchfarm.deadletters import MemoryDeadLetters
from couchfarm.models import Outcome
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.scan import candidate_pages, scan
from tests.helpers import live_leaves, make_conflict, resolve_all
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


# -- three replicas, one compacted before it resolves --------------------------------------------

FIELDS = "fields:timestamp=updated_at"


def replicate_now(client: CouchClient, server: PouchServer, source: str, target: str) -> None:
    """A one-shot ``POST /_replicate``: done when it returns."""
    body = {"source": f"{server.url}/{source}", "target": f"{server.url}/{target}"}
    assert client.http.request("POST", "_replicate", body=body).json()["ok"]


def compacted_resolver_loop(
    client: CouchClient, db: str, stop: threading.Event, outcomes: list[Outcome]
) -> None:
    engine = Engine(client, Router([], default=parse_strategy(FIELDS)))
    while not stop.is_set():
        ids = [i for page, _ in candidate_pages(client, db) for i in page]
        summary = resolve_all(engine, db, ids, max_retries=0)
        outcomes.extend(r.outcome for r in summary.results)
        time.sleep(0.1)


def test_a_compacted_replica_does_not_guess_and_all_converge(
    pouch_server: PouchServer, client: CouchClient
) -> None:
    a, b, c = (f"cmp-{name}-{uuid.uuid4().hex[:6]}" for name in "abc")
    for name in (a, b, c):
        client.create_db(name)
    n = 5
    base = [
        {"_id": f"doc{i}", "updated_at": "2026-01-01T00:00:00Z", "keep": i, "drop_me": "x"} for i in range(n)
    ]
    client.bulk_docs(a, base)
    for target in (b, c):
        replicate_now(client, pouch_server, a, target)
    for i in range(n):  # offline: a removes drop_me, b adds extra (later stamp)
        doc = client.get(a, f"doc{i}")
        client.put(
            a, {k: v for k, v in doc.items() if k != "drop_me"} | {"updated_at": "2026-02-01T00:00:00Z"}
        )
        doc = client.get(b, f"doc{i}")
        client.put(b, {**doc, "extra": "b", "updated_at": "2026-03-01T00:00:00Z"})
    for source, target in ((a, b), (b, a), (a, c), (b, c)):
        replicate_now(client, pouch_server, source, target)
    assert len(list(scan(client, c))) == n
    client.http.request("POST", f"{c}/_compact", body={})  # c loses the common ancestors' bodies
    seq_c = client.db_info(c)["update_seq"]
    alone: list[Outcome] = []
    engine_c = Engine(client, Router([], default=parse_strategy(FIELDS)))
    for result in engine_c.resolve(c, [f"doc{i}" for i in range(n)]):
        alone.append(result.outcome)
        assert result.error == "AncestorMissing" and "has no body on this server" in (result.reason or "")
    assert set(alone) == {Outcome.RETRY} and client.db_info(c)["update_seq"] == seq_c  # no guess written

    for source, target in ((a, b), (b, a), (a, c), (c, a), (b, c), (c, b)):
        replicate(client, pouch_server, source, target, f"{source}-{target}", continuous=True)
    stop = threading.Event()
    c_outcomes: list[Outcome] = []
    threads = [threading.Thread(target=resolver_loop, args=(client, name, FIELDS, stop)) for name in (a, b)]
    threads.append(threading.Thread(target=compacted_resolver_loop, args=(client, c, stop, c_outcomes)))
    for t in threads:
        t.start()
    try:
        wait_for(
            lambda: (
                not any(list(scan(client, name)) for name in (a, b, c))
                and state(client, a) == state(client, b) == state(client, c)
            ),
            timeout=90,
        )
        settled = state(client, a)
        seqs = [client.db_info(name)["update_seq"] for name in (a, b, c)]
        time.sleep(2.0)  # idle rounds on every replica: no new revisions
        assert state(client, a) == settled == state(client, b) == state(client, c)
        assert [client.db_info(name)["update_seq"] for name in (a, b, c)] == seqs
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert Outcome.RESOLVED not in c_outcomes  # c never merged without the ancestor
    for i in range(n):
        winners = [client.get(name, f"doc{i}") for name in (a, b, c)]
        assert winners[0] == winners[1] == winners[2]
        assert "drop_me" not in winners[0] and winners[0]["extra"] == "b"  # the three-way result


def test_without_the_ancestor_anywhere_a_person_gets_it(client: CouchClient, db: str) -> None:
    make_conflict(
        client, db, "d", [{"updated_at": "2026-02-01T00:00:00Z"}, {"updated_at": "2026-03-01T00:00:00Z"}]
    )
    client.http.request("POST", f"{db}/_compact", body={})
    sink = MemoryDeadLetters()
    engine = Engine(client, Router([], default=parse_strategy(FIELDS)))
    (result,) = resolve_all(engine, db, ["d"], sink, max_retries=2).results
    assert result.outcome is Outcome.DEAD_LETTERED and result.error == "AncestorMissing"
    assert "still failing after 2 retries" in (result.reason or "")
    assert len(live_leaves(client, db, "d")) == 2 and len(sink.entries) == 1
