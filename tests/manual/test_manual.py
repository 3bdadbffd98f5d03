"""``couchfarm.manual`` in-process against pouchdb-server: comparisons, plans, edits and the view."""

from __future__ import annotations

import pytest

from couchfarm import manual
from couchfarm.couch import CouchClient
from couchfarm.models import Outcome
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from tests.helpers import live_leaves, make_conflict

HASHES = ["a" * 32, "b" * 32]  # 2-bbb... is CouchDB's winner


def engine(client: CouchClient, strategy: str = "lww:field=updated_at") -> Engine:
    return Engine(client, Router([], default=parse_strategy(strategy)))


def seed(client: CouchClient, db: str, doc_id: str = "d") -> list[str]:
    return make_conflict(
        client,
        db,
        doc_id,
        [
            {"updated_at": "2026-02-01", "name": "new", "tags": ["x"]},
            {"updated_at": "2026-01-01", "name": "old", "tags": ["x"], "extra": None},
        ],
        hashes=HASHES,
    )


def test_compare_marks_differences_winner_first(client: CouchClient, db: str) -> None:
    seed(client, db)
    eng = engine(client)
    conflict = manual.read_conflict(eng, db, "d")
    proposal = manual.propose(eng, conflict)
    assert proposal.body is not None and proposal.body["name"] == "new"
    rows = {row.field: row for row in manual.compare(conflict, proposal)}
    assert [leaf.rev for leaf in conflict.live] == [f"2-{'b' * 32}", f"2-{'a' * 32}"]
    assert rows["name"].differs and rows["name"].values == ("old", "new")
    assert not rows["tags"].differs
    assert rows["extra"].differs and rows["extra"].values == (None, manual.ABSENT)
    assert manual.cell(manual.ABSENT, 10) == "-" and manual.cell(None, 10) == "null"
    assert manual.cell("x" * 40, 10) == '"xxxxxxxx…'


def test_pick_plan_and_apply(client: CouchClient, db: str) -> None:
    revs = seed(client, db)
    eng = engine(client)
    with pytest.raises(manual.ManualRefused, match=r"live revs: 2-b+, 2-a+$"):
        manual.pick_plan(manual.read_conflict(eng, db, "d"), "2-" + "c" * 32)
    plan = manual.pick_plan(manual.read_conflict(eng, db, "d"), revs[0])
    assert plan.strategy == manual.MANUAL and plan.winner_write is not None
    assert manual.apply(eng, plan).outcome is Outcome.RESOLVED
    (winner,) = live_leaves(client, db, "d")
    assert winner["name"] == "new" and "couchfarm" not in winner


def test_parse_edit_refusals() -> None:
    assert manual.parse_edit('{"a": [1]}') == {"a": [1]}
    for text, problem in [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "JSON object, not list"),
        ('{"_id": "x", "_rev": "1-a", "a": 1}', "reserved by CouchDB: _id, _rev"),
    ]:
        with pytest.raises(manual.ManualRefused, match=problem):
            manual.parse_edit(text)


def test_reread_refuses_changed_leaves(client: CouchClient, db: str) -> None:
    seed(client, db)
    eng = engine(client)
    before = manual.read_conflict(eng, db, "d")
    assert manual.reread_unchanged(eng, before).revs == before.revs
    client.put(db, {"_id": "d", "_rev": before.live[0].rev, "name": "someone else"})
    with pytest.raises(manual.ManualRefused, match="changed while you were editing"):
        manual.reread_unchanged(eng, before)


def test_install_view_keeps_other_views_and_pages(client: CouchClient, db: str) -> None:
    for i in range(3):
        seed(client, db, f"d{i}")
    client.put(db, {"_id": manual.DESIGN_ID, "views": {"other": {"map": "function (doc) { emit(1); }"}}})
    assert manual.install_view(client, db) == "updated"
    ddoc = client.get(db, manual.DESIGN_ID)
    assert set(ddoc["views"]) == {"other", "conflicts"}
    assert manual.install_view(client, db) == "unchanged"
    assert client.get(db, manual.DESIGN_ID)["_rev"] == ddoc["_rev"]
    source, found = manual.list_conflicts(client, db, page_size=2)
    assert source == "view"
    assert found == [{"id": f"d{i}", "revs": [f"2-{'a' * 32}"]} for i in range(3)]
