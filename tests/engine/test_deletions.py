"""``tombstone_wins`` on pouchdb-server: which deletions delete a document, on the trees users make."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm import factory, metrics
from couchfarm.couch import CouchClient
from couchfarm.models import Outcome
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from tests.engine.test_engine import run
from tests.helpers import live_leaves

SPEC = "lww:field=updated_at,deletion=tombstone_wins"
ROOT = "1-" + "0" * 32


def engine(client: CouchClient, **kw: Any) -> Engine:
    return Engine(client, Router([], default=parse_strategy(SPEC)), **kw)


def tree(client: CouchClient, db: str, doc_id: str, branches: dict[str, dict[str, Any]]) -> None:
    """``ROOT`` and one child per entry (``rev: body``; ``_deleted`` for a deletion)."""
    docs: list[dict[str, Any]] = [
        {"_id": doc_id, "_rev": ROOT, "v": 0, "_revisions": {"start": 1, "ids": [ROOT[2:]]}}
    ]
    for rev, body in branches.items():
        ids = [rev.split("-", 1)[1], ROOT[2:]]
        docs.append({"_id": doc_id, "_rev": rev, **body, "_revisions": {"start": 2, "ids": ids}})
    assert all(r.ok for r in client.bulk_docs(db, docs, new_edits=False))


def test_resolved_by_hand_then_edited_stays_alive(client: CouchClient, db: str) -> None:
    # the usual manual resolution: DELETE the losing leaf, then edit the survivor (recording 12, m)
    losing, keeping = "2-" + "a" * 32, "2-" + "b" * 32
    tree(client, db, "m", {losing: {"updated_at": "2026-01-01"}, keeping: {"updated_at": "2026-01-02"}})
    client.http.request("DELETE", f"{db}/m", params={"rev": losing})
    edited = client.put(db, {"_id": "m", "_rev": keeping, "updated_at": "2026-03-01", "edited": True})
    out = run(engine(client), db, ["m"])
    assert out["results"]["m"].outcome is Outcome.NOOP
    (alive,) = live_leaves(client, db, "m")
    assert alive["_rev"] == edited["rev"] and alive["edited"] is True


def test_recreated_after_the_farm_deleted_it_stays_alive(client: CouchClient, db: str) -> None:
    tree(
        client, db, "d", {"2-" + "c" * 32: {"_deleted": True}, "2-" + "e" * 32: {"updated_at": "2026-01-01"}}
    )
    first = run(engine(client), db, ["d"])["results"]["d"]
    assert first.outcome is Outcome.RESOLVED and not live_leaves(client, db, "d")  # a real delete-vs-edit
    # re-created: a PUT without _rev extends the farm's tombstone, the highest deleted leaf
    client.put(db, {"_id": "d", "updated_at": "2026-05-01", "again": True})
    events: list[str] = []
    again = run(engine(client, on_event=lambda name, **f: events.append(name)), db, ["d"])["results"]["d"]
    assert again.outcome is Outcome.NOOP and events == []  # decided from the history, not a guess
    (alive,) = live_leaves(client, db, "d")
    assert alive["again"] is True and alive["_rev"].startswith("4-")


def test_two_edits_concurrent_with_a_delete_read_their_history(client: CouchClient, db: str) -> None:
    edit = "2-" + "e" * 32
    tree(client, db, "d", {"2-" + "c" * 32: {"_deleted": True}, edit: {"updated_at": "2026-01-01"}})
    client.put(db, {"_id": "d", "_rev": edit, "updated_at": "2026-01-02"})  # a second edit: 3-x on 2-e
    out = run(engine(client), db, ["d"])["results"]["d"]
    assert out.outcome is Outcome.RESOLVED and not live_leaves(client, db, "d")


def test_undecidable_after_compaction_is_kept_alive_and_said(
    client: CouchClient, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    tree(
        client, db, "d", {"2-" + "c" * 32: {"_deleted": True}, "2-" + "e" * 32: {"updated_at": "2026-01-01"}}
    )
    run(engine(client), db, ["d"])
    client.put(db, {"_id": "d", "updated_at": "2026-05-01", "again": True})
    client.http.request("POST", f"{db}/_compact", body={})  # the bodies of 3-tombstone and 2-e go
    before = metrics.DELETIONS_UNDECIDED.labels(metrics.FARM[0], db)._value.get()
    out = run(engine(client, on_event=factory.emit), db, ["d"])["results"]["d"]
    assert out.outcome is Outcome.NOOP and live_leaves(client, db, "d")
    assert metrics.DELETIONS_UNDECIDED.labels(metrics.FARM[0], db)._value.get() == before + 1
    assert f"kept {db}/d alive" in caplog.text and "2-" + "c" * 32 in caplog.text
