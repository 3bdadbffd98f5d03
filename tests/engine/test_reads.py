"""A failed read is a retry of that document, never a no-op (pouchdb-server, and recorded CouchDB 3.4.3).

On pouchdb-server a proxy injects the failures between the real client and the real server; the
CouchDB answers (error entries inside a 200 ``_bulk_get``, the 404 of an ancestor compacted away)
are replayed from the recordings in ``tests/fixtures/couchdb``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from couchfarm.breaker import RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.deadletters import MemoryDeadLetters
from couchfarm.models import Outcome
from couchfarm.resolution import DocResult, Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.settings import StrategySpec
from tests.helpers import live_leaves, make_conflict, resolve_all
from tests.replication.fakes import exchange, fake_client
from tests.trace.proxy import RecordingProxy
from workers.local_servers import PouchServer

LEAVES = [{"t": "2026-01-01", "v": 1}, {"t": "2026-02-01", "v": 2}]


@contextmanager
def proxied(server: PouchServer, answer: Callable[[str, str], Any]) -> Iterator[CouchClient]:
    with RecordingProxy(server.plain_url, answer) as proxy:
        url = f"http://{server.user}:{server.password}@127.0.0.1:{proxy.port}"
        yield CouchClient(url, retry=RetryPolicy(attempts=1))


def resolve_once(
    client: CouchClient, db: str, ids: list[str], spec: str = "lww:field=t"
) -> dict[str, DocResult]:
    engine = Engine(client, Router([], default=parse_strategy(spec)))
    return {r.doc_id: r for r in engine.resolve(db, ids)}


def test_a_failed_leaf_read_retries_that_document_only(
    pouch_server: PouchServer, client: CouchClient, db: str
) -> None:
    for doc_id in ("a", "b"):
        make_conflict(client, db, doc_id, LEAVES)

    def fail_a(method: str, path: str) -> Any:
        return (503, {"error": "unavailable"}) if path.startswith(f"/{db}/a?") else None

    with proxied(pouch_server, fail_a) as flaky:
        out = resolve_once(flaky, db, ["a", "b"])
    assert out["a"].outcome is Outcome.RETRY and "leaves not read completely" in (out["a"].reason or "")
    assert out["b"].outcome is Outcome.RESOLVED
    assert len(live_leaves(client, db, "a")) == 2  # untouched, resolved at its retry
    assert resolve_once(client, db, ["a"])["a"].outcome is Outcome.RESOLVED


def test_a_read_with_no_leaf_or_a_missing_entry_for_an_existing_document_is_retried(
    pouch_server: PouchServer, client: CouchClient, db: str
) -> None:
    make_conflict(client, db, "empty", LEAVES)
    make_conflict(client, db, "partial", LEAVES)
    first = client.open_revs(db, "partial")[0]
    partial = [{"ok": first}, {"missing": "2-" + "9" * 32}]

    def broken(method: str, path: str) -> Any:
        if path.startswith(f"/{db}/empty?") and "open_revs" in path:
            return (200, [])
        if path.startswith(f"/{db}/partial?") and "open_revs" in path:
            return (200, partial)
        return None

    with proxied(pouch_server, broken) as flaky:
        out = resolve_once(flaky, db, ["empty", "partial"])
    assert out["empty"].outcome is Outcome.RETRY and "no leaf" in (out["empty"].reason or "")
    assert out["partial"].outcome is Outcome.RETRY and "missing" in (out["partial"].reason or "")


def test_a_document_that_is_gone_is_a_noop_with_a_reason(client: CouchClient, db: str) -> None:
    make_conflict(client, db, "deleted", [], deleted=2)
    out = resolve_once(client, db, ["never", "deleted"])
    assert out["never"].outcome is Outcome.NOOP and "does not exist" in (out["never"].reason or "")
    assert out["deleted"].outcome is Outcome.NOOP


def test_a_failed_ancestor_read_retries_that_document_only(
    pouch_server: PouchServer, client: CouchClient, db: str
) -> None:
    for doc_id in ("a", "b"):
        make_conflict(client, db, doc_id, LEAVES, base={"t": "2025-12-01", "v": 0})

    def fail_base(method: str, path: str) -> Any:
        # the batch's ancestors are read in one _bulk_get; when that fails, each document reads
        # its own, and a's fails
        failing = path.startswith(f"/{db}/a?rev=") or path.startswith(f"/{db}/_bulk_get")
        return (503, {"error": "unavailable"}) if failing else None

    with proxied(pouch_server, fail_base) as flaky:
        out = resolve_once(flaky, db, ["a", "b"], "fields:timestamp=t")
    assert out["a"].outcome is Outcome.RETRY and "common ancestor read failed" in (out["a"].reason or "")
    assert out["b"].outcome is Outcome.RESOLVED


# -- recorded CouchDB 3.4.3 answers -------------------------------------------------------------

SERVER = ("GET", "/"), [(200, exchange("08", 0)["response"]["body"])]


def bulk_get(*answers: dict[str, Any]) -> tuple[tuple[str, str], list[tuple[int, Any]]]:
    return ("POST", "/rec_compact/_bulk_get"), [(200, {"results": list(answers)})]


def test_recorded_error_entry_for_an_existing_document_is_retried() -> None:
    # 12: the error entry CouchDB puts inside a 200 _bulk_get (here for a compacted revision of "a")
    answer = exchange("12", 9)["response"]["body"]["results"]
    client, session = fake_client(
        dict(
            [
                SERVER,
                bulk_get(*answer),
                (("GET", "/rec_compact/a"), [(200, exchange("12", 8)["response"]["body"])]),
            ]
        )
    )
    (result,) = Engine(client, Router([])).resolve("rec_compact", ["a"])
    assert result.outcome is Outcome.RETRY and result.error == "ReadError"
    assert "not_found: missing (rev 1-aaa)" in (result.reason or "")
    assert ("POST", "/rec_compact/_bulk_docs") not in session.calls


def test_recorded_missing_document_is_a_noop() -> None:
    missing = exchange("03", 7)["response"]["body"]["results"][0]  # {"id": "nope", "docs": [{"error": ...}]}
    gone = exchange("08", 21)["response"]  # GET of a missing document: 404 missing
    client, _ = fake_client(
        dict([SERVER, bulk_get(missing), (("GET", "/rec_compact/nope"), [(gone["status"], gone["body"])])])
    )
    (result,) = Engine(client, Router([])).resolve("rec_compact", ["nope"])
    assert result.outcome is Outcome.NOOP and "does not exist" in (result.reason or "")


def test_recorded_compacted_ancestor_retries_then_dead_letters_without_writing() -> None:
    # 12: leaves 2-bbb/2-ccc keep bodies and _revisions; GET ?rev=1-aaa is 404 after compaction
    leaves = [{"ok": row["ok"]} for row in exchange("12", 10)["response"]["body"]]
    compacted = exchange("12", 7)["response"]
    client, session = fake_client(
        dict(
            [
                SERVER,
                bulk_get({"id": "a", "docs": leaves}),
                (("GET", "/rec_compact/a"), [(compacted["status"], compacted["body"])]),
            ]
        )
    )
    spec = StrategySpec(strategy="fields", options={"rules": {"*": "max"}})
    engine = Engine(client, Router([], default=spec))
    sink = MemoryDeadLetters()
    summary = resolve_all(engine, "rec_compact", ["a"], sink, max_retries=2)
    (result,) = summary.results
    assert result.outcome is Outcome.DEAD_LETTERED and result.error == "AncestorMissing"
    assert "still failing after 2 retries" in (result.reason or "") and "1-aaa" in (result.reason or "")
    assert ("POST", "/rec_compact/_bulk_docs") not in session.calls  # no guess was written
    (entry,) = sink.entries.values()
    assert entry.error == "AncestorMissing"


def test_leaves_known_from_the_feed_are_read_in_two_requests(
    pouch_server: PouchServer, client: CouchClient, db: str
) -> None:
    """pouchdb-server's _bulk_get answers an id with its winner only: with the feed's revisions the
    leaves come in two requests for the whole batch, not one per document, and a revision the feed
    listed that has been edited or tombstoned since is not mistaken for a leaf."""
    known = {}
    for doc_id in ("a", "b", "c"):
        live = make_conflict(client, db, doc_id, LEAVES, deleted=1)
        known[doc_id] = sorted(leaf["_rev"] for leaf in client.open_revs(db, doc_id))
        assert len(known[doc_id]) == len(live) + 1
    with RecordingProxy(pouch_server.plain_url) as proxy:
        url = f"http://{pouch_server.user}:{pouch_server.password}@127.0.0.1:{proxy.port}"
        reads = CouchClient(url).read_leaf_sets(db, list(known), known)
        assert [(m, p.split("?")[0]) for m, p, _ in proxy.seen if p != "/"] == [
            ("POST", f"/{db}/_all_docs"),
            ("POST", f"/{db}/_bulk_get"),
        ]
    for doc_id, read in reads.items():
        assert read.problem is None and sorted(d["_rev"] for d in read.docs) == known[doc_id]
        assert sum(bool(d.get("_deleted")) for d in read.docs) == 1
    resolve_once(client, db, ["a"])  # a's losing leaf is tombstoned, its winner maybe rewritten
    after = client.read_leaf_sets(db, ["a"], {"a": known["a"]})["a"]
    live_now = [d["_rev"] for d in after.docs if not d.get("_deleted")]
    assert after.problem is None and len(live_now) == 1  # the stale loser is not read as a live leaf
    assert live_now == [leaf["_rev"] for leaf in live_leaves(client, db, "a")]
