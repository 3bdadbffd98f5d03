"""CouchClient against a real pouchdb-server."""

from __future__ import annotations

import threading
import time

import pytest

from couchfarm.couch import CouchClient
from couchfarm.errors import Conflict, NotFound
from couchfarm.feeds import ChangeRow, FeedEnd
from tests.helpers import make_conflict

WEIRD_IDS = ["a/b", "with space", "ünïcødé-✓", "plus+percent%q?hash#amp&eq=", "_design/x", "_design/a b"]


def test_server_and_db_info(client: CouchClient, db: str) -> None:
    assert client.server_info()
    assert db in client.all_dbs()
    assert "update_seq" in client.db_info(db)
    assert client.create_db(db) is False  # exists: 412 is not an error with exist_ok
    with pytest.raises(NotFound):
        client.db_info(db + "-missing")


def test_normal_feed_resume_from_returned_seq(client: CouchClient, db: str) -> None:
    for i in range(5):
        client.put(db, {"_id": f"d{i}", "n": i})
    first = client.changes(db, limit=3)
    assert [r.id for r in first.results] == ["d0", "d1", "d2"]
    rest = client.changes(db, since=first.last_seq)
    assert [r.id for r in rest.results] == ["d3", "d4"]
    assert client.changes(db, since=rest.last_seq).results == []


def test_longpoll_wakes_on_write_and_times_out_client_side(client: CouchClient, db: str) -> None:
    client.put(db, {"_id": "x"})
    now = client.changes(db).last_seq
    started = time.monotonic()
    page = client.changes(db, feed="longpoll", since=now, deadline=1.0, heartbeat=200, timeout=500)
    assert page.timed_out and page.results == [] and page.last_seq == now
    assert time.monotonic() - started < 5

    def write() -> None:
        time.sleep(0.5)
        client.put(db, {"_id": "late"})

    t = threading.Thread(target=write)
    t.start()
    page = client.changes(db, feed="longpoll", since=now, deadline=10, heartbeat=200)
    t.join()
    assert [r.id for r in page.results] == ["late"] and not page.timed_out


def test_continuous_feed_streams_with_heartbeats(client: CouchClient, db: str) -> None:
    for i in range(3):
        client.put(db, {"_id": f"c{i}"})
    rows = list(client.stream_changes(db, deadline=1.5, heartbeat=200))
    ids = [r.id for r in rows if isinstance(r, ChangeRow)]
    assert ids == ["c0", "c1", "c2"]
    limited = list(client.stream_changes(db, deadline=5, heartbeat=200, limit=2))
    assert [r.id for r in limited if isinstance(r, ChangeRow)] == ["c0", "c1"]
    resumed = list(client.stream_changes(db, since=limited[-1].seq, deadline=1.0, heartbeat=200))
    assert [r.id for r in resumed if not isinstance(r, FeedEnd)] == ["c2"]


def test_changes_filters_and_conflicts(client: CouchClient, db: str) -> None:
    make_conflict(client, db, "k", [{"v": 1}, {"v": 2}], deleted=1)
    client.put(db, {"_id": "plain", "type": "t"})
    page = client.changes(db, style="all_docs", include_docs=True, conflicts=True)
    by_id = {r.id: r for r in page.results}
    assert len(by_id["k"].revs) == 3 and len(by_id["k"].conflicts) == 1
    assert [r.id for r in client.changes(db, doc_ids=["plain"]).results] == ["plain"]
    assert [r.id for r in client.changes(db, selector={"type": "t"}).results] == ["plain"]


def test_read_leaves_four_leaves_one_deleted(client: CouchClient, db: str) -> None:
    revs = make_conflict(client, db, "four", [{"v": 1}, {"v": 2}, {"v": 3}], deleted=1, base={"v": 0})
    leaves = client.read_leaves(db, ["four", "absent"])
    assert leaves["absent"] == []
    got = leaves["four"]
    assert len(got) == 4
    assert sum(1 for d in got if d.get("_deleted")) == 1
    assert {d["_rev"] for d in got if not d.get("_deleted")} == set(revs)
    assert all(d["_revisions"]["ids"][1] == got[0]["_revisions"]["ids"][1] for d in got)


def test_bulk_docs_mixed_results_matched_by_id(client: CouchClient, db: str) -> None:
    client.put(db, {"_id": "exists", "v": 1})
    client.put(
        db,
        {
            "_id": "_design/guard",
            "validate_doc_update": "function(n,o,u){ if (n.bad) { throw({forbidden: 'no bad docs'}); } }",
        },
    )
    results = client.bulk_docs(
        db, [{"_id": "new", "v": 1}, {"_id": "exists", "v": 2}, {"_id": "forb", "bad": True}, {"_id": "new2"}]
    )
    assert [r.id for r in results] == ["new", "exists", "forb", "new2"]
    assert [r.kind for r in results] == ["ok", "conflict", "forbidden", "ok"]
    assert results[2].reason == "no bad docs"
    assert results[0].rev and results[0].rev.startswith("1-")


@pytest.mark.parametrize("doc_id", WEIRD_IDS)
def test_escaped_ids_round_trip(client: CouchClient, db: str, doc_id: str) -> None:
    rev = client.put(db, {"_id": doc_id, "v": 1})["rev"]
    assert client.get(db, doc_id)["_rev"] == rev
    assert client.open_revs(db, doc_id)[0]["_id"] == doc_id
    assert client.read_leaves(db, [doc_id])[doc_id][0]["_rev"] == rev
    assert doc_id in {r.id for r in client.changes(db).results}
    with pytest.raises(Conflict):
        client.put(db, {"_id": doc_id, "v": 2})


def test_local_documents(client: CouchClient, db: str) -> None:
    assert client.get_local(db, "ck/1") is None
    client.put_local(db, "ck/1", {"done": 5})
    client.put_local(db, "ck/1", {"done": 7})  # sends the current _rev, so no 409 on pouchdb
    assert client.get_local(db, "ck/1")["done"] == 7  # type: ignore[index]
    assert all(r.id != "_local/ck/1" for r in client.changes(db).results)
    assert client.delete_local(db, "ck/1") is True
    assert client.get_local(db, "ck/1") is None
    assert client.delete_local(db, "ck/1") is False


def test_local_documents_with_a_remembered_rev(client: CouchClient, db: str) -> None:
    """One request with the rev the writer remembers; a stale or missing one falls back to reading
    the current rev (someone else wrote it meanwhile), never a lost write."""
    first = client.put_local(db, "ck/2", {"done": 1}, rev="")  # known absent: no read first
    second = client.put_local(db, "ck/2", {"done": 2}, rev=first)
    assert second != first and client.get_local(db, "ck/2")["done"] == 2  # type: ignore[index]
    client.put_local(db, "ck/2", {"done": 3})  # another writer moves it on
    client.put_local(db, "ck/2", {"done": 4}, rev=second)  # stale rev: read, then written
    client.put_local(db, "ck/2", {"done": 5}, rev="")  # "absent" but it exists: read, then written
    assert client.get_local(db, "ck/2")["done"] == 5  # type: ignore[index]


def test_db_updates_absent_degrades(client: CouchClient) -> None:
    assert client.db_updates(timeout_ms=200) is None  # pouchdb-server: 400 -> poll _all_dbs
