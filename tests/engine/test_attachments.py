"""Attachments follow the chosen body, on pouchdb-server (docs/resolution-rules.md)."""

from __future__ import annotations

import base64
from typing import Any

from couchfarm import manual
from couchfarm.couch import CouchClient
from couchfarm.models import Outcome
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from tests.engine.test_engine import run
from tests.helpers import live_leaves

ROOT = "1-" + "0" * 32
WINNER, OTHER = "2-" + "f" * 32, "2-" + "1" * 32  # CouchDB's winner: the higher hash


def data(text: str) -> dict[str, str]:
    return {"content_type": "text/plain", "data": base64.b64encode(text.encode()).decode()}


def leaves(
    client: CouchClient, db: str, doc_id: str, branches: dict[str, dict[str, Any]], base: dict[str, Any]
) -> None:
    """``ROOT`` with ``base`` (``_attachments`` inline) and one child per entry of ``branches``."""
    docs = [{"_id": doc_id, "_rev": ROOT, **base, "_revisions": {"start": 1, "ids": [ROOT[2:]]}}]
    for rev, body in branches.items():
        docs.append(
            {"_id": doc_id, "_rev": rev, **body, "_revisions": {"start": 2, "ids": [rev[2:], ROOT[2:]]}}
        )
    assert all(r.ok for r in client.bulk_docs(db, docs, new_edits=False))


def engine(client: CouchClient, spec: str) -> Engine:
    return Engine(client, Router([], default=parse_strategy(spec)))


def attachment(client: CouchClient, db: str, doc_id: str, name: str) -> bytes:
    (leaf,) = live_leaves(client, db, doc_id)
    return client.get_attachment(db, doc_id, name, leaf["_rev"])[0]


def same_name_conflict(client: CouchClient, db: str) -> None:
    leaves(
        client,
        db,
        "p",
        {
            WINNER: {"t": "2026-01-01", "_attachments": {"photo.txt": data("old bytes")}},
            OTHER: {"t": "2026-02-01", "_attachments": {"photo.txt": data("new bytes"), "x.txt": data("x")}},
        },
        {"t": "2026-01-01"},
    )


def test_lww_keeps_the_newer_leafs_bytes_of_the_same_name(client: CouchClient, db: str) -> None:
    same_name_conflict(client, db)
    assert run(engine(client, "lww:field=t"), db, ["p"])["results"]["p"].outcome is Outcome.RESOLVED
    assert attachment(client, db, "p", "photo.txt") == b"new bytes"  # not CouchDB's winner's
    assert attachment(client, db, "p", "x.txt") == b"x"


def test_two_replicas_mint_the_same_revisions(client: CouchClient, db: str) -> None:
    other = f"{db}-replica"
    client.create_db(other)
    try:
        for name in (db, other):
            same_name_conflict(client, name)
            run(engine(client, "lww:field=t"), name, ["p"])
        revs = [sorted(d["_rev"] for d in client.open_revs(name, "p")) for name in (db, other)]
        assert revs[0] == revs[1] and len(revs[0]) == 2  # the merged winner and one tombstone
    finally:
        client.delete_db(other)


def test_winner_chosen_keeps_its_stub_and_fetches_nothing(
    client: CouchClient, db: str, couch_url: str
) -> None:
    leaves(
        client,
        db,
        "w",
        {
            WINNER: {"t": "2026-03-01", "_attachments": {"photo.txt": data("winner")}},
            OTHER: {"t": "2026-02-01", "_attachments": {"photo.txt": data("older"), "y.txt": data("y")}},
        },
        {"t": "2026-01-01"},
    )

    class Counting(CouchClient):
        fetched: list[tuple[str, str]] = []

        def get_attachment(self, db: str, doc_id: str, name: str, rev: str) -> tuple[bytes, str]:
            self.fetched.append((name, rev))
            return super().get_attachment(db, doc_id, name, rev)

    counting = Counting(couch_url)
    assert run(engine(counting, "lww:field=t"), db, ["w"])["results"]["w"].outcome is Outcome.RESOLVED
    assert counting.fetched == [("y.txt", OTHER)]  # photo.txt went back as the winner's own stub
    assert attachment(client, db, "w", "photo.txt") == b"winner"


def test_fields_merges_attachments_three_way(client: CouchClient, db: str) -> None:
    base = {"t": "2026-01-01", "_attachments": {"keep.txt": data("k"), "drop.txt": data("d")}}
    leaves(
        client,
        db,
        "f",
        {
            WINNER: {"t": "2026-01-01", "_attachments": {"keep.txt": data("k"), "drop.txt": data("d")}},
            OTHER: {"t": "2026-02-01", "_attachments": {"keep.txt": data("k2")}},  # edited one, removed one
        },
        base,
    )
    assert run(engine(client, "fields:timestamp=t"), db, ["f"])["results"]["f"].outcome is Outcome.RESOLVED
    (leaf,) = live_leaves(client, db, "f")
    assert set(leaf["_attachments"]) == {"keep.txt"} and attachment(client, db, "f", "keep.txt") == b"k2"


def test_custom_new_body_with_disagreeing_attachments_is_dead_lettered(client: CouchClient, db: str) -> None:
    same_name_conflict(client, db)
    spec = "custom:function=tests.resolvers.custom_examples:new_body"
    out = run(engine(client, spec), db, ["p"])
    result = out["results"]["p"]
    assert result.outcome is Outcome.DEAD_LETTERED and "attachment 'photo.txt' differs" in (
        result.reason or ""
    )
    assert len(live_leaves(client, db, "p")) == 2


def test_pick_keeps_the_picked_leafs_attachments_unless_told(client: CouchClient, db: str) -> None:
    same_name_conflict(client, db)
    eng = engine(client, "winner")
    plan = manual.pick_plan(manual.read_conflict(eng, db, "p"), WINNER)
    assert manual.apply(eng, plan).outcome is Outcome.RESOLVED
    assert attachment(client, db, "p", "photo.txt") == b"old bytes"  # the picked leaf's copy
    assert attachment(client, db, "p", "x.txt") == b"x"  # only the other leaf had it: kept
    other = f"{db}-b"
    client.create_db(other)
    try:
        same_name_conflict(client, other)
        told = manual.pick_plan(manual.read_conflict(eng, other, "p"), WINNER, attachments_from=OTHER)
        assert manual.apply(eng, told).outcome is Outcome.RESOLVED
        assert attachment(client, other, "p", "photo.txt") == b"new bytes"
    finally:
        client.delete_db(other)
