"""The dead-letter store, against fakeredis and a real redis-server."""

from __future__ import annotations

from typing import Any

from couchfarm.deadletters import DeadLetter, DeadLetters
from tests.helpers import FARM


def entry(reason: str = "bad", delivery: str = "b1/0", db: str = "d", doc: str = "x") -> DeadLetter:
    return DeadLetter(
        db=db,
        doc_id=doc,
        revs=["2-a", "2-b"],
        strategy="lww",
        error="Rejected",
        reason=reason,
        task_id="task-1",
        delivery=delivery,
        correlation_id="c1",
    )


def test_one_entry_per_document_and_redelivery_changes_nothing(any_redis: Any) -> None:
    store = DeadLetters(any_redis, FARM)
    assert store.add(entry(), now=100.0)
    assert not store.add(entry(), now=101.0)  # the same batch attempt run again after a crash
    assert store.add(entry("worse", delivery="b1/1"), now=102.0)  # a later failure of the same document
    (e,) = store.list()
    assert e.attempts == 2 and e.reason == "worse" and e.first_failure == 100.0 and e.last_failure == 102.0
    assert e.revs == ["2-a", "2-b"] and e.correlation_id == "c1"


def test_indexes_by_database_and_time_and_purge(any_redis: Any) -> None:
    store = DeadLetters(any_redis, FARM)
    store.add(entry(db="a", doc="1"), now=100.0)
    store.add(entry(db="b", doc="2"), now=200.0)
    assert [e.doc_id for e in store.list("a")] == ["1"] and store.count("b") == 1
    assert [e.doc_id for e in store.list(since=150.0)] == ["2"]
    assert store.purge_older_than(100, now=250.0) == 1 and store.count() == 1


def test_replay_removal_keeps_a_newer_failure(any_redis: Any) -> None:
    store = DeadLetters(any_redis, FARM)
    store.add(entry(), now=100.5)
    (seen,) = store.list()
    store.add(entry("again", delivery="b2/0"), now=200.25)  # failed again while the replay ran
    assert not store.remove(seen.id, last_failure=seen.last_failure)
    (now,) = store.list()
    assert store.remove(now.id, last_failure=now.last_failure) and store.count() == 0


def test_reasons_are_redacted(any_redis: Any) -> None:
    store = DeadLetters(any_redis, FARM)
    store.add(entry("GET http://admin:hunter22@127.0.0.1:5984/x -> 500"), now=1.0)
    assert "hunter22" not in store.list()[0].reason
