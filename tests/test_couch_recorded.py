"""Parsing of responses recorded from a real CouchDB 3.4.3 (what pouchdb-server cannot show)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from couchfarm.couch import match_bulk_results, parse_bulk_get
from couchfarm.feeds import ChangeRow, ChangesPage, FeedEnd, LineSplitter, parse_continuous_line
from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.plan import build_plan
from tests.replication.fakes import fake_client

FIXTURES = Path(__file__).parent / "fixtures" / "couchdb"


def exchanges(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())["exchanges"]


def find(name: str, path_start: str, method: str = "GET") -> dict[str, Any]:
    return next(
        e for e in exchanges(name) if e["request"]["method"] == method and e["request"]["path"] == path_start
    )


def test_opaque_string_seqs_and_pending() -> None:
    page = ChangesPage.parse(find("02_changes_feed.json", "/rec_chg/_changes?limit=0")["response"]["body"])
    assert isinstance(page.last_seq, str) and page.last_seq.startswith("0-g1AA") and page.pending == 4
    full = ChangesPage.parse(find("02_changes_feed.json", "/rec_chg/_changes")["response"]["body"])
    assert all(isinstance(r.seq, str) for r in full.results)


def test_all_docs_style_lists_every_leaf() -> None:
    body = next(
        e["response"]["body"]
        for e in exchanges("02_changes_feed.json")
        if "filter=_doc_ids&style=all_docs" in e["request"]["path"]
    )
    row = ChangesPage.parse(body).results[0]
    assert set(row.revs) == {"2-eee", "2-bbb", "2-abc", "3-ddd"}
    assert set(row.conflicts) == {"2-bbb", "2-abc"}


def test_continuous_stream_with_final_line() -> None:
    raw = find("02_changes_feed.json", "/rec_chg/_changes?feed=continuous&timeout=2000")["response"]["body"]
    splitter = LineSplitter()
    items = [parse_continuous_line(line) for line in splitter.feed(raw.encode() + b"\n")]
    assert isinstance(items[-1], FeedEnd) and isinstance(items[-1].last_seq, str)
    assert items[-1].pending is not None
    assert all(isinstance(i, ChangeRow) for i in items[:-1])


def test_longpoll_timeout_body_with_heartbeat_newlines() -> None:
    raw = find("02_changes_feed.json", "/rec_chg/_changes?feed=longpoll&timeout=1000&since=now")
    page = ChangesPage.parse(json.loads(raw["response"]["body"]))
    assert page.results == [] and page.pending == 0


def test_bulk_get_every_leaf_and_error_entries() -> None:
    body = find("03_bulk_get.json", "/rec_bg/_bulk_get", "POST")["response"]["body"]
    leaves = parse_bulk_get(body, ["a"])
    assert {d["_rev"] for d in leaves["a"].docs} == {"2-abc", "2-bbb", "3-ddd", "2-eee"}
    assert leaves["a"].problem is None
    missing = next(
        e["response"]["body"]
        for e in exchanges("03_bulk_get.json")
        if e["request"].get("body") == {"docs": [{"id": "nope"}]}
    )
    # an error entry inside the 200 is kept: the engine checks the document and retries or skips it
    (nope,) = parse_bulk_get(missing, ["nope"]).values()
    assert nope.docs == [] and nope.problem == "not_found: missing (rev undefined)"


def test_bulk_docs_results_in_request_order_and_new_edits_false_errors() -> None:
    for e in exchanges("05_bulk_docs_mixed_results.json"):
        req, resp = e["request"], e["response"]
        if (
            not req["path"].endswith("_bulk_docs")
            or resp["status"] != 201
            or not isinstance(req["body"], dict)
        ):
            continue
        docs = req["body"]["docs"]
        results = match_bulk_results(docs, resp["body"], missing_ok=req["body"].get("new_edits") is False)
        assert len(results) == len(docs)
        for doc, res in zip(docs, results, strict=True):
            assert res.id == doc.get("_id", res.id)
            assert res.kind in {"ok", "conflict", "forbidden", "unauthorized", "other"}
        kinds = {r.kind for r in results}
        assert kinds & {"conflict", "forbidden", "unauthorized", "other"} or all(r.ok for r in results)


def test_bulk_get_error_entries_make_a_partial_read() -> None:
    # 12: after compaction a non-leaf revision comes back as an error entry inside the 200
    body = exchanges("12_compaction_and_manual_deletes.json")[9]["response"]["body"]
    (read,) = parse_bulk_get(body, ["a"]).values()
    assert [d["_rev"] for d in read.docs] == ["2-bbb"] and read.problem == "not_found: missing (rev 1-aaa)"
    # 03: five requests, duplicates of one id included; an entry without an id belongs to nobody
    mixed = find("03_bulk_get.json", "/rec_bg/_bulk_get?revs=true", "POST")["response"]["body"]
    reads = parse_bulk_get(mixed, ["a", "nope", "b"])
    assert {d["_rev"] for d in reads["a"].docs} == {"2-abc", "2-bbb", "3-ddd", "2-eee"}
    assert reads["a"].problem == "not_found: missing (rev 9-zzz)"
    assert reads["b"].problem is None and reads["nope"].docs == []
    no_id = exchanges("03_bulk_get.json")[13]["response"]["body"]
    assert parse_bulk_get(no_id, ["a"])["a"].problem == "the read returned no leaf"


def test_deletion_state_of_revisions_before_and_after_compaction() -> None:
    before = exchanges("01_conflicted_doc_reads.json")[18]["response"]["body"]  # open_revs=["1-aaa"]
    after = exchanges("01_conflicted_doc_reads.json")[36]["response"]["body"]  # [{"missing": "1-aaa"}]
    client, _ = fake_client({("GET", "/rec_conf/a"): [(200, before), (200, after)]})
    assert client.revs_deleted("rec_conf", "a", ["1-aaa"]) == {"1-aaa": False}
    assert client.revs_deleted("rec_conf", "a", ["1-aaa"]) == {}  # body gone: the state is unknown


def test_attachments_merge_writes_what_couchdb_accepts() -> None:
    # 05b: leaves 2-bbb {f.txt='hello'} and 2-ccc {f.txt='world', g.bin} (winner 2-ccc), read with stubs
    rows = exchanges("05b_attachment_stubs_merge.json")[3]["response"]["body"]
    leaves = tuple(Leaf.from_doc(row["ok"]) for row in rows)
    conflict = ConflictSet("rec_att", "m", leaves)
    plan = build_plan(conflict, Resolution.merged({"merged": 1}, ("2-bbb", "2-ccc")), "lww")
    write = plan.winner_write
    assert write is not None and write["_rev"] == "2-ccc"  # a child of CouchDB's winner
    parent = next(leaf for leaf in leaves if leaf.rev == "2-ccc").attachments
    # g.bin: the parent's stub exactly as read, the form CouchDB accepted (exchange 18)
    accepted = exchanges("05b_attachment_stubs_merge.json")[18]["request"]["body"]["docs"][0]["_attachments"]
    assert write["_attachments"]["g.bin"] == parent["g.bin"] and set(accepted["g.bin"]) == set(
        parent["g.bin"]
    )
    # f.txt: 2-bbb's bytes, inline (exchange 8), never a stub the parent does not hold (412, exchange 11)
    assert plan.inline == [("f.txt", "2-bbb")] and "stub" not in write["_attachments"]["f.txt"]
    refused = exchanges("05b_attachment_stubs_merge.json")[11]["response"]
    assert refused["status"] == 412 and refused["body"]["error"] == "missing_stub"
    assert all(
        not stub.get("stub") or stub == parent.get(name) for name, stub in write["_attachments"].items()
    )
