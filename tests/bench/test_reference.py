"""The reference process on a real CouchDB-API server: explicit-rev ``_bulk_get`` returns every leaf
asked for (deleted ones too), and the reference resolves every document with the farm's merge."""

from __future__ import annotations

from typing import Any

from bench.merge import writes_for
from bench.reference import Tally, bulk_get, losing_leaves, missing, reference
from bench.seed import leaves, remaining, seed
from couchfarm.couch import CouchClient
from couchfarm.feeds import ChangeRow
from couchfarm.models import TOMBSTONE_FIELD


def deleted_leaf(live: dict[str, Any], tag: str) -> dict[str, Any]:
    """A deleted sibling of ``live`` (same parent), as replication would bring it."""
    parent = live["_revisions"]["ids"][1]
    return {
        "_id": live["_id"],
        "_rev": f"2-{tag}",
        "_deleted": True,
        "_revisions": {"start": 2, "ids": [tag, parent]},
    }


def newest(doc_id: str) -> dict[str, Any]:
    """The seeded leaf with the latest ``updated_at``: the one lww keeps."""
    return max(leaves(doc_id, 3), key=lambda leaf: leaf["updated_at"])


def body(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def feed_rows(client: CouchClient, db: str) -> dict[str, ChangeRow]:
    page = client.changes(db, style="all_docs", conflicts=True, include_docs=True)
    return {row.id: row for row in page.results}


def test_bulk_get_with_explicit_revs_returns_every_losing_leaf_deleted_ones_too(
    client: CouchClient, db: str
) -> None:
    three = leaves("doc-a", 3)
    client.bulk_docs(db, [*three, deleted_leaf(three[0], "d" * 32), *leaves("doc-b", 4)], new_edits=False)
    rows = feed_rows(client, db)
    pairs = [pair for doc_id in ("doc-a", "doc-b") for pair in losing_leaves(rows[doc_id])]
    assert len(pairs) == 3 + 3  # doc-a: two live losers and the deleted leaf; doc-b: three live losers
    got = bulk_get(client, db, pairs)
    assert missing(pairs, got) == []
    assert {d["_rev"] for d in got["doc-a"] if d.get("_deleted")} == {"2-" + "d" * 32}
    assert all(d["_revisions"]["start"] == 2 for docs in got.values() for d in docs)
    if not client.is_couchdb:  # why the reference names every rev: an id alone gives pouchdb's winner only
        alone = client.http.request("POST", f"{db}/_bulk_get", body={"docs": [{"id": "doc-b"}]}).json()
        assert [len(result["docs"]) for result in alone["results"]] == [1]


def test_missing_names_the_leaves_an_answer_lacks() -> None:
    pairs = [{"id": "a", "rev": "2-x"}, {"id": "a", "rev": "2-y"}, {"id": "b", "rev": "3-z"}]
    assert missing(pairs, {"a": [{"_rev": "2-y"}], "b": []}) == [pairs[0], pairs[2]]


def test_losing_leaves_skips_a_document_whose_other_leaves_are_deleted() -> None:
    row = ChangeRow(id="a", seq=1, revs=("2-b", "2-a"), doc={"_id": "a", "_rev": "2-b"})
    assert losing_leaves(row) == []
    row = ChangeRow(
        id="a", seq=1, revs=("2-b", "2-a", "2-c"), doc={"_id": "a", "_rev": "2-b", "_conflicts": ["2-a"]}
    )
    assert losing_leaves(row) == [{"id": "a", "rev": "2-a"}, {"id": "a", "rev": "2-c"}]


def test_reference_resolves_every_document_with_the_farms_merge(client: CouchClient, db: str) -> None:
    seed(client, db, 23, 3)
    lone = leaves("lone", 2)
    client.bulk_docs(db, [lone[0], deleted_leaf(lone[0], "e" * 32)], new_edits=False)
    ids = [f"doc-{i:06d}" for i in range(23)]
    tally = Tally()
    reference(client, db, ids, tally, page=5, threads=2, window=3)
    assert remaining(client, db, ids) == 0
    assert (tally.docs, tally.leaves_requested, tally.leaves_missing, tally.write_errors) == (23, 46, 0, 0)
    # two tombstones each, and the merged winner unless CouchDB's winner is already the newest leaf
    rewritten = sum(newest(doc_id)["_rev"] != max(d["_rev"] for d in leaves(doc_id, 3)) for doc_id in ids)
    assert tally.writes == 23 * 2 + rewritten
    for doc_id in ids:
        doc = client.get(db, doc_id, conflicts=True)
        assert "_conflicts" not in doc
        assert body(doc) == body(newest(doc_id))
    tombstones = [d for d in client.read_leaves(db, ids[:1])[ids[0]] if d.get("_deleted")]
    assert len(tombstones) == 2 and all(d[TOMBSTONE_FIELD] is True for d in tombstones)
    assert client.get(db, "lone")["_rev"] == lone[0]["_rev"]  # one live leaf: not the reference's business


def test_writes_for_puts_the_merged_winner_first_then_the_tombstones() -> None:
    ids = [f"doc-{i:06d}" for i in range(20)]
    stale = next(i for i in ids if newest(i)["_rev"] != max(d["_rev"] for d in leaves(i, 3)))
    fresh = next(i for i in ids if newest(i)["_rev"] == max(d["_rev"] for d in leaves(i, 3)))
    writes = writes_for("db", stale, leaves(stale, 3))
    assert writes[0]["_rev"] == max(d["_rev"] for d in leaves(stale, 3)) and body(writes[0]) == body(
        newest(stale)
    )
    assert [w.get("_deleted") for w in writes] == [None, True, True]
    # CouchDB's winner already holds the newest body: only the two tombstones
    assert [w.get("_deleted") for w in writes_for("db", fresh, leaves(fresh, 3))] == [True, True]
    assert writes_for("db", stale, leaves(stale, 3)[:1]) == []
