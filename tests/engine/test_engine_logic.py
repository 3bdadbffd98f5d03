"""The engine's own decisions, against the protocol-level fake of tests/engine/fakecouch.py (unit tier).

What CouchDB answers is not under test here (tests/engine/test_engine.py runs the same paths on
pouchdb-server): only what the engine writes, in which order, and what it makes of each answer.
"""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.couchapi import EngineCouch
from couchfarm.errors import CouchError, Forbidden, Unavailable
from couchfarm.failures import Failure
from couchfarm.models import Outcome
from couchfarm.plan import Plan
from couchfarm.resolution import DocResult, Engine
from couchfarm.resolvers import Router, parse_strategy
from tests.engine.fakecouch import FakeCouch, leaf_doc

DB = "orders"


def conflicted(*doc_ids: str) -> FakeCouch:
    """Each document with two leaves: CouchDB's winner (2-bbb, the higher hash) is the older edit,
    so last-write-wins writes 2-aaa's body on top of it, then tombstones 2-aaa."""
    return FakeCouch(
        leaves={
            d: [leaf_doc(d, "2-bbb", {"t": 1, "v": "old"}), leaf_doc(d, "2-aaa", {"t": 2, "v": "new"})]
            for d in doc_ids
        }
    )


def engine(couch: EngineCouch, archive: Any = None) -> Engine:
    return Engine(couch, Router([], default=parse_strategy("lww:field=t")), archive=archive)


def resolve(couch: EngineCouch, *doc_ids: str, archive: Any = None) -> dict[str, DocResult]:
    return {r.doc_id: r for r in engine(couch, archive).resolve(DB, list(doc_ids))}


def test_the_winner_is_written_first_and_only_then_the_losers_are_tombstoned() -> None:
    couch = conflicted("a")
    result = resolve(couch, "a")["a"]
    assert result.outcome is Outcome.RESOLVED and len(result.written) == 2
    winner, tombstone = couch.written("a")
    assert winner["_rev"] == "2-bbb" and winner["v"] == "new" and not winner.get("_deleted")
    assert tombstone["_rev"] == "2-aaa" and tombstone["_deleted"] is True
    assert [len(r) for r in couch.requests] == [1, 1]  # one request of winners, then one of tombstones


@pytest.mark.parametrize(
    ("answer", "outcome", "failure"),
    [("forbidden", Outcome.DEAD_LETTERED, Failure.REJECTED), ("conflict", Outcome.RETRY, Failure.CONFLICT)],
)
def test_a_refused_winner_keeps_every_leaf_of_that_document_only(
    answer: str, outcome: Outcome, failure: Failure
) -> None:
    couch = conflicted("a", "b")
    couch.refuse["b"] = answer
    out = resolve(couch, "a", "b")
    assert out["a"].outcome is Outcome.RESOLVED
    assert out["b"].outcome is outcome and out["b"].error is failure
    assert "winner write" in (out["b"].reason or "")
    assert [d.get("_deleted") for d in couch.written("b")] == [None]  # its winner only: no tombstone


def test_a_whole_request_refused_is_split_until_the_document_at_fault_is_found() -> None:
    couch = conflicted("a", "b", "c", "d")
    couch.reject_whole.add("c")
    out = resolve(couch, "a", "b", "c", "d")
    assert out["c"].outcome is Outcome.DEAD_LETTERED and out["c"].error is Failure.REJECTED
    assert all(out[d].outcome is Outcome.RESOLVED for d in "abd")
    assert [d.get("_deleted") for d in couch.written("c")][-1] is None  # never tombstoned


class Archive:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.kept = fail, []

    def record(self, db: str, plans: list[Plan], winner_revs: dict[str, str | None]) -> None:
        if self.fail:
            raise CouchError("the audit database refused")
        self.kept += [p.doc_id for p in plans]


def test_the_losers_are_archived_before_they_are_tombstoned_and_kept_when_that_fails() -> None:
    kept = Archive()
    assert resolve(conflicted("a"), "a", archive=kept)["a"].outcome is Outcome.RESOLVED
    assert kept.kept == ["a"]
    couch = conflicted("a")
    result = resolve(couch, "a", archive=Archive(fail=True))["a"]
    assert result.outcome is Outcome.RETRY and result.error is Failure.COUCH_ERROR
    assert "archive write failed, losers kept" in (result.reason or "")
    assert not [d for d in couch.written("a") if d.get("_deleted")]


@pytest.mark.parametrize(
    ("error", "failure"),
    [(Unavailable("down"), Failure.UNAVAILABLE), (Forbidden("locked out"), Failure.COUCH_ERROR)],
)
def test_a_failed_winner_request_is_a_retry_of_every_document(error: CouchError, failure: Failure) -> None:
    class Failing(FakeCouch):
        def bulk_docs(self, db: str, docs: list[dict[str, Any]], *, new_edits: bool = True) -> Any:
            raise error

    out = resolve(Failing(leaves=conflicted("a", "b").leaves), "a", "b")
    assert {r.outcome for r in out.values()} == {Outcome.RETRY}
    assert {r.error for r in out.values()} == {failure}


def test_an_unreachable_server_at_the_read_is_a_retry_and_writes_nothing() -> None:
    couch = conflicted("a")
    couch.read_error = Unavailable("connection refused")
    result = resolve(couch, "a")["a"]
    assert result.outcome is Outcome.RETRY and result.error is Failure.UNAVAILABLE and not couch.requests


def test_one_leaf_is_no_conflict_and_a_missing_document_is_nothing_to_do() -> None:
    couch = conflicted("a")
    couch.leaves["single"] = [leaf_doc("single", "2-ccc", {"t": 1})]
    out = resolve(couch, "single", "gone")
    assert out["single"].outcome is Outcome.NOOP and out["gone"].outcome is Outcome.NOOP
    assert not couch.requests


def test_a_dry_run_writes_nothing_and_describes_the_plan() -> None:
    couch = conflicted("a")
    (result,) = engine(couch).resolve(DB, ["a"], dry_run=True)
    assert result.outcome is Outcome.NOOP and result.plan is not None and not couch.requests
