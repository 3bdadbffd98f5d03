"""The resolution engine against a real pouchdb-server."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from couchfarm.archive import Archive, undo
from couchfarm.couch import CouchClient
from couchfarm.deadletters import MemoryDeadLetters
from couchfarm.models import Outcome
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.settings import DatabaseRule
from tests.helpers import live_leaves, make_conflict, resolve_all

LWW = "lww:field=updated_at"


def engine(client: CouchClient, spec: str = LWW, **kw: Any) -> Engine:
    return Engine(client, Router([], default=parse_strategy(spec)), **kw)


def run(eng: Engine, db: str, ids: list[str], **kw: Any) -> dict[str, Any]:
    sink = MemoryDeadLetters()
    summary = resolve_all(eng, db, ids, sink, **kw)
    return {"results": {r.doc_id: r for r in summary.results}, "dead": sink.entries, "summary": summary}


def edits(*stamps: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"updated_at": s, "value": i, **extra} for i, s in enumerate(stamps)]


def test_three_plus_leaves_resolve_to_newest(client: CouchClient, db: str) -> None:
    make_conflict(
        client,
        db,
        "d",
        edits(
            "2026-01-01T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2025-12-31T23:59:59+00:00",
        ),
    )
    out = run(engine(client), db, ["d"])
    assert out["results"]["d"].outcome is Outcome.RESOLVED
    leaves = live_leaves(client, db, "d")
    assert len(leaves) == 1 and leaves[0]["updated_at"] == "2026-03-01T00:00:00Z"
    again = run(engine(client), db, ["d"])  # resolving the result again writes nothing
    assert again["results"]["d"].outcome is Outcome.NOOP


@pytest.mark.parametrize("policy,survives", [("update_wins", True), ("tombstone_wins", False)])
def test_deleted_leaf_against_edit(client: CouchClient, db: str, policy: str, survives: bool) -> None:
    make_conflict(client, db, "d", edits("2026-01-01T00:00:00Z"), deleted=1)
    out = run(engine(client, f"{LWW},deletion={policy}"), db, ["d"])
    expected = Outcome.NOOP if policy == "update_wins" else Outcome.RESOLVED
    assert out["results"]["d"].outcome is expected
    assert bool(live_leaves(client, db, "d")) is survives


def test_soft_deleted_record_does_not_come_back(client: CouchClient, db: str) -> None:
    make_conflict(
        client,
        db,
        "d",
        [
            {"updated_at": "2026-01-01T00:00:00Z", "is_deleted": True},
            {"updated_at": "2026-05-01T00:00:00Z", "name": "edited later"},
        ],
    )
    run(engine(client, f"{LWW},deletion=tombstone_wins,soft_delete_field=is_deleted"), db, ["d"])
    leaves = live_leaves(client, db, "d")
    assert len(leaves) == 1 and leaves[0]["is_deleted"] is True and "name" not in leaves[0]


def test_attachments_survive_a_merge(client: CouchClient, db: str) -> None:
    revs = make_conflict(client, db, "att", edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    for rev, (name, data) in zip(
        revs, [("a.txt", b"from leaf one"), ("b.txt", b"from leaf two")], strict=True
    ):
        doc = client.get(db, "att", rev=rev)
        doc["_attachments"] = {name: {"content_type": "text/plain", "data": base64.b64encode(data).decode()}}
        client.bulk_docs(db, [doc], new_edits=True)
    assert run(engine(client), db, ["att"])["results"]["att"].outcome is Outcome.RESOLVED
    (winner,) = live_leaves(client, db, "att")
    assert set(winner["_attachments"]) == {"a.txt", "b.txt"}
    assert client.get_attachment(db, "att", "a.txt", winner["_rev"])[0] == b"from leaf one"
    assert client.get_attachment(db, "att", "b.txt", winner["_rev"])[0] == b"from leaf two"


@pytest.mark.parametrize("doc_id", ["a/b", "with space", "ünï/cødé ✓"])
def test_awkward_ids(client: CouchClient, db: str, doc_id: str) -> None:
    make_conflict(client, db, doc_id, edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    assert run(engine(client), db, [doc_id])["results"][doc_id].outcome is Outcome.RESOLVED
    assert len(live_leaves(client, db, doc_id)) == 1


def test_rejected_winner_keeps_every_leaf(client: CouchClient, db: str) -> None:
    bodies = edits("2026-03-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z")
    bodies[0]["reject"] = True  # the newest leaf (lowest hash: not CouchDB's winner) carries reject
    make_conflict(client, db, "rej", bodies, hashes=["0" * 32, "1" * 32, "2" * 32])
    guard = "function(n,o,u){ if (n.reject) { throw({forbidden: 'rejected by guard'}); } }"
    client.put(db, {"_id": "_design/guard", "validate_doc_update": guard})
    before = {d["_rev"] for d in live_leaves(client, db, "rej")}
    out = run(engine(client), db, ["rej"])
    result = out["results"]["rej"]
    assert result.outcome is Outcome.DEAD_LETTERED and "rejected by guard" in (result.reason or "")
    assert {d["_rev"] for d in live_leaves(client, db, "rej")} == before
    (entry,) = out["dead"].values()
    assert entry.doc_id == "rej" and "rejected by guard" in entry.reason


class RacingClient(CouchClient):
    """Edits the document between the engine's read and its first write (a real 409)."""

    raced = 0

    def bulk_docs(self, db: str, docs: list[dict[str, Any]], *, new_edits: bool = True) -> Any:
        if not self.raced and new_edits:
            self.raced += 1
            current = super().get(db, docs[0]["_id"])
            super().put(db, {**current, "updated_at": "2027-01-01T00:00:00Z", "raced": True})
        return super().bulk_docs(db, docs, new_edits=new_edits)


def test_edit_between_read_and_write_is_retried(couch_url: str, client: CouchClient, db: str) -> None:
    make_conflict(client, db, "race", edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    racing = RacingClient(couch_url)
    out = run(engine(racing), db, ["race"])
    assert racing.raced == 1
    assert out["results"]["race"].outcome is Outcome.RESOLVED
    (leaf,) = live_leaves(client, db, "race")
    assert leaf["raced"] is True  # the edit made during the race won: it is the newest


def test_custom_resolver_that_raises_is_dead_lettered(client: CouchClient, db: str) -> None:
    make_conflict(client, db, "c", edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    out = run(engine(client, "custom:function=tests.engine.custom_resolvers:explode"), db, ["c"])
    assert out["results"]["c"].outcome is Outcome.DEAD_LETTERED
    assert "cannot merge c" in out["dead"][next(iter(out["dead"]))].reason
    assert len(live_leaves(client, db, "c")) == 2


def test_schema_invalid_leaf_is_dead_lettered(client: CouchClient, db: str, tmp_path: Any) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(
        '{"type": "object", "required": ["updated_at"], '
        '"properties": {"value": {"type": "integer", "maximum": 0}}}'
    )
    make_conflict(client, db, "bad", edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    rule = DatabaseRule(name=db, strategy="lww", options={"field": "updated_at"}, schema=str(schema))
    out = run(Engine(client, Router([rule])), db, ["bad"])
    result = out["results"]["bad"]
    assert result.outcome is Outcome.DEAD_LETTERED and result.error == "InvalidDocument"
    assert "value" in (result.reason or "") and len(live_leaves(client, db, "bad")) == 2


def test_undo_restores_an_archived_resolution(client: CouchClient, db: str) -> None:
    bodies = edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    make_conflict(client, db, "u", bodies)
    archive = Archive(client, f"{db}-audit")
    try:
        out = run(engine(client, archive=archive), db, ["u"])
        assert out["results"]["u"].outcome is Outcome.RESOLVED
        (entry,) = archive.entries(db, "u")
        assert len(entry["leaves"]) == 3 and entry["strategy"] == "lww"
        undo(client, archive, db, "u")
        restored = sorted(d["updated_at"] for d in live_leaves(client, db, "u"))
        assert restored == sorted(b["updated_at"] for b in bodies)  # the conflict as it was
        run(engine(client, archive=archive), db, ["u"])
        pick = next(
            item["rev"]
            for item in archive.entries(db, "u")[-1]["leaves"]
            if item["body"]["updated_at"] == "2026-01-01T00:00:00Z"
        )
        undo(client, archive, db, "u", pick=pick)
        (leaf,) = live_leaves(client, db, "u")
        assert leaf["updated_at"] == "2026-01-01T00:00:00Z"
    finally:
        client.delete_db(f"{db}-audit")


def test_dry_run_writes_nothing(client: CouchClient, db: str) -> None:
    make_conflict(client, db, "d", edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    seq = client.db_info(db)["update_seq"]
    out = run(engine(client), db, ["d"], dry_run=True)
    plan = out["results"]["d"].plan
    assert plan and plan["merged"]["updated_at"] == "2026-02-01T00:00:00Z" and len(plan["leaves"]) == 2
    assert client.db_info(db)["update_seq"] == seq


def test_deep_conflict_raises_an_event_log_and_metric(
    client: CouchClient, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    from couchfarm import factory, metrics

    make_conflict(client, db, "deep", edits(*(f"2026-01-0{i}T00:00:00Z" for i in range(1, 6))))
    before = metrics.DEEP_CONFLICTS.labels(metrics.FARM[0], db)._value.get()
    events: list[tuple[str, dict[str, Any]]] = []

    def record(name: str, **fields: Any) -> None:
        events.append((name, fields))
        factory.emit(name, **fields)

    run(engine(client, deep_conflict_leaves=3, on_event=record), db, ["deep"])
    assert events == [("deep_conflict", {"db": db, "doc_id": "deep", "leaves": 5})]
    assert metrics.DEEP_CONFLICTS.labels(metrics.FARM[0], db)._value.get() == before + 1
    assert "deep conflict" in caplog.text and "5 live leaves" in caplog.text


def test_pydantic_model_schema(client: CouchClient, db: str) -> None:
    make_conflict(client, db, "ok", edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    make_conflict(
        client, db, "bad", [{"updated_at": "2026-01-01T00:00:00Z", "value": 99}, {"updated_at": "x"}]
    )
    rule = DatabaseRule(
        name=db,
        strategy="lww",
        options={"field": "updated_at"},
        schema="tests.engine.custom_resolvers:Reading",
    )
    out = run(Engine(client, Router([rule])), db, ["ok", "bad"])
    assert out["results"]["ok"].outcome is Outcome.RESOLVED
    bad = out["results"]["bad"]
    assert bad.outcome is Outcome.DEAD_LETTERED and "value" in (bad.reason or "")


def test_provenance_stamps_and_refuses_a_foreign_definition(client: CouchClient, db: str) -> None:
    make_conflict(client, db, "p", edits("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    assert run(engine(client, provenance=True), db, ["p"])["results"]["p"].outcome is Outcome.RESOLVED
    (winner,) = live_leaves(client, db, "p")
    mark = winner["couchfarm"]
    assert mark["strategy"] == "lww" and len(mark["fingerprint"]) == 12 and mark["inputs"]
    # a new conflict on top of a merge made by another definition (here: a different tie field)
    client.bulk_docs(
        db,
        [
            {
                **{k: v for k, v in winner.items() if k != "_rev"},
                "_rev": "9-" + "a" * 32,
                "_revisions": {"start": 9, "ids": ["a" * 32]},
            }
        ],
        new_edits=False,
    )
    other = run(engine(client, "lww:field=updated_at,tie=value", provenance=True), db, ["p"])["results"]["p"]
    assert other.outcome is Outcome.DEAD_LETTERED and other.error == "ProvenanceMismatch"
    same = run(engine(client, provenance=True), db, ["p"])["results"]["p"]
    assert same.outcome is Outcome.RESOLVED  # the definition that made the merge may go on
