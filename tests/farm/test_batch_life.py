"""The batch's life on the worker side (couchfarm/batch.py) against its real record in Redis.

The engine is a scripted stand-in here (its CouchDB behaviour is tested on pouchdb-server in
tests/engine); what is under test is the loop: start, heartbeat, careful mode and strikes, retries,
dead letters, interrupts, completion and take-over.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from couchfarm.batch import BatchLife, Job, LedgerRecord, LocalRecord, Policy, careful_chunks
from couchfarm.breaker import RetryPolicy
from couchfarm.deadletters import DeadLetter, DeadLetters
from couchfarm.ledger import Ledger
from couchfarm.models import Outcome
from couchfarm.resolution import DocResult
from couchfarm.state import FarmState, Lease
from tests.helpers import FARM


class TimeUp(Exception):
    """Stands for Celery's SoftTimeLimitExceeded."""


class Scripted:
    """An engine whose per-document outcomes follow a script; a callable entry raises or acts."""

    def __init__(self, script: dict[str, list[Any]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[list[str]] = []

    def resolve(
        self, db: str, doc_ids: list[str], *, dry_run: bool = False, known: Any = None
    ) -> list[DocResult]:
        self.calls.append(list(doc_ids))
        out = []
        for doc_id in doc_ids:
            steps = self.script.get(doc_id) or [Outcome.RESOLVED]
            step = steps.pop(0) if len(steps) > 1 else steps[0]
            if callable(step) and not isinstance(step, Outcome):
                step()
                step = Outcome.RESOLVED
            result = DocResult(db, doc_id, step, "lww", ["2-a", "2-b"], reason=f"{step.value} reason")
            if step in (Outcome.RESOLVED, Outcome.NOOP):
                result.leaves_after = ["3-c"]
            out.append(result)
        return out


@pytest.fixture
def ledger(any_redis: Any) -> Ledger:
    return Ledger(any_redis, FARM)


@pytest.fixture
def lease(any_redis: Any) -> Lease:
    taken = FarmState(any_redis, FARM).acquire("db", "d", ttl=30)
    assert taken is not None
    return taken


POLICY = Policy(
    max_retries=2, max_deliveries=3, backoff=RetryPolicy(4, 1.0, 8.0), beat_interval=0.05, beat_timeout=5
)


def life(engine: Scripted, ledger: Ledger, shown: list[DeadLetter] | None = None, **kw: Any) -> BatchLife:
    policy = Policy(**{**POLICY.__dict__, **kw})
    record = LedgerRecord(ledger, policy.beat_timeout)
    on_dead = shown.append if shown is not None else None
    return BatchLife(
        engine, record, DeadLetters(ledger.redis, FARM), policy, on_dead_letter=on_dead, interrupts=(TimeUp,)
    )


def batch(ledger: Ledger, lease: Lease, docs: list[str]) -> str:
    batch_id, claimed = ledger.create(lease, docs, 1, "corr")
    assert claimed
    ledger.sent(lease, batch_id)
    return batch_id


def test_a_clean_delivery_completes_and_remembers_the_leaves(ledger: Ledger, lease: Lease) -> None:
    engine = Scripted({"b": [Outcome.NOOP]})
    bid = batch(ledger, lease, ["a", "b"])
    delivery = life(engine, ledger).deliver(Job("db", ("a", "b"), bid, 0, "corr", "task-1"))
    assert not delivery.retry and {r.doc_id: r.outcome for r in delivery.results} == {
        "a": Outcome.RESOLVED,
        "b": Outcome.NOOP,
    }
    assert ledger.batch("db", bid).status == "done" and not ledger.inflight("db")  # type: ignore[union-attr]
    assert ledger.known_leaves("db", ["a", "b"]) == {"a": ["3-c"], "b": ["3-c"]}
    assert engine.calls == [["a", "b"]]  # one bulk call


def test_only_the_documents_to_retry_come_back_then_dead_letter(ledger: Ledger, lease: Lease) -> None:
    engine = Scripted({"b": [Outcome.RETRY]})
    shown: list[DeadLetter] = []
    bid = batch(ledger, lease, ["a", "b"])
    job = Job("db", ("a", "b"), bid, 0, "corr", "task-1")
    first = life(engine, ledger, shown).deliver(job)
    assert first.retry == ["b"] and first.attempt == 1 and 0 <= first.countdown <= 1.0
    record = ledger.batch("db", bid)
    assert record is not None and record.status == "retrying" and record.pending == ["b"]
    second = life(engine, ledger, shown).deliver(Job("db", ("b",), bid, 1, "corr", "task-1"))
    assert second.retry == ["b"] and second.attempt == 2 and second.countdown <= 2.0
    third = life(engine, ledger, shown).deliver(Job("db", ("b",), bid, 2, "corr", "task-1"))
    assert not third.retry and third.results[0].outcome is Outcome.DEAD_LETTERED
    (entry,) = DeadLetters(ledger.redis, FARM).list("db")
    assert "still failing after 2 retries" in entry.reason and [e.doc_id for e in shown] == ["b"]
    assert ledger.batch("db", bid).status == "done"  # type: ignore[union-attr]


def test_an_unexpected_error_is_retried_then_dead_lettered_with_its_reason(
    ledger: Ledger, lease: Lease
) -> None:
    class Broken(Scripted):
        def resolve(
            self, db: str, doc_ids: list[str], *, dry_run: bool = False, known: Any = None
        ) -> list[DocResult]:
            raise RuntimeError("redis went away")

    bid = batch(ledger, lease, ["a", "b"])
    worker = life(Broken(), ledger)
    job = Job("db", ("a", "b"), bid, 0, "corr", "task-1")
    for attempt in range(3):
        delivery = worker.deliver(job)
        job = Job("db", tuple(delivery.retry), bid, delivery.attempt, "corr", "task-1")
        assert bool(delivery.retry) == (attempt < 2)
    entries = DeadLetters(ledger.redis, FARM).list("db")
    assert {e.doc_id for e in entries} == {"a", "b"}
    assert all("RuntimeError: redis went away" in e.reason for e in entries)
    assert ledger.batch("db", bid).status == "done" and not ledger.inflight("db")  # type: ignore[union-attr]


def test_after_a_death_one_document_at_a_time_and_poison_is_dead_lettered(
    ledger: Ledger, lease: Lease
) -> None:
    engine = Scripted()
    bid = batch(ledger, lease, ["a", "poison", "c"])
    for _ in range(2):  # two deliveries died while resolving "poison" (the strike stayed)
        assert ledger.start("db", bid, "task-1", 0, 5).verdict == "run"
        ledger.strike("db", bid, ["poison"])
    ledger.strike("db", bid, ["a"])  # and one died on "a" earlier
    delivery = life(engine, ledger).deliver(Job("db", ("a", "poison", "c"), bid, 0, "corr", "task-1"))
    assert engine.calls == [["a"], ["c"]]  # careful: suspects one at a time, poison never run again
    outcomes = {r.doc_id: (r.outcome, r.error) for r in delivery.results}
    assert outcomes["poison"] == (Outcome.DEAD_LETTERED, "PoisonDocument")
    assert outcomes["a"][0] is Outcome.RESOLVED and outcomes["c"][0] is Outcome.RESOLVED
    assert "died 3 times" in DeadLetters(ledger.redis, FARM).list("db")[0].reason
    assert ledger.batch("db", bid).status == "done"  # type: ignore[union-attr]


def test_a_soft_time_limit_retries_carefully_and_never_dead_letters(ledger: Ledger, lease: Lease) -> None:
    def time_up() -> None:
        raise TimeUp()

    engine = Scripted({"slow": [time_up, Outcome.RESOLVED]})
    bid = batch(ledger, lease, ["a", "slow", "c"])
    worker = life(engine, ledger)
    first = worker.deliver(Job("db", ("a", "slow", "c"), bid, 0, "corr", "task-1"))
    assert first.retry == ["a", "slow", "c"] and first.attempt == 0 and first.countdown == 0  # no retry used
    record = ledger.batch("db", bid)
    assert record is not None and record.careful and record.status == "retrying"
    engine.script["slow"] = [time_up, Outcome.RESOLVED]
    second = worker.deliver(Job("db", tuple(first.retry), bid, 0, "corr", "task-1"))
    assert second.results == [] and second.retry == ["a", "slow", "c"]  # one chunk, interrupted
    assert ledger.strikes("db", bid, ["a", "slow", "c"]) == {"a": 1, "slow": 1, "c": 1}
    third = worker.deliver(Job("db", tuple(second.retry), bid, 0, "corr", "task-1"))  # one by one now
    assert {r.doc_id for r in third.results} == {"a", "slow", "c"} and not third.retry
    assert ledger.strikes("db", bid, ["a", "slow", "c"]) == {"a": 0, "slow": 0, "c": 0}
    assert DeadLetters(ledger.redis, FARM).count("db") == 0


def test_late_stale_and_duplicate_copies_do_nothing(ledger: Ledger, lease: Lease) -> None:
    engine = Scripted()
    bid = batch(ledger, lease, ["a"])
    assert ledger.start("db", bid, "task-1", 0, 5).verdict == "run"  # a live delivery holds it
    assert life(engine, ledger).deliver(Job("db", ("a",), bid, 0, "c", "task-2")).skipped == "busy"
    assert ledger.complete("db", bid, "task-1")
    assert life(engine, ledger).deliver(Job("db", ("a",), bid, 0, "c", "task-3")).skipped == "gone"
    assert life(engine, ledger).deliver(Job("db", ("a",), "unknown", 0, "c", "task-3")).skipped == "gone"
    assert engine.calls == []


def test_a_delivery_that_was_replaced_cannot_complete(ledger: Ledger, lease: Lease) -> None:
    bid = batch(ledger, lease, ["a"])

    def replaced() -> None:  # task-1 looked dead: the holder re-sent the batch and task-2 took it
        ledger.redis.hset(f"couchfarm:test:batch:db:{bid}", "beat_at", "0.0")
        assert ledger.resend(lease, ledger.batches("db")[0])
        assert ledger.start("db", bid, "task-2", 0, 5).verdict == "run"

    delivery = life(Scripted({"a": [replaced]}), ledger, beat_interval=60).deliver(
        Job("db", ("a",), bid, 0, "c", "task-1")
    )
    assert delivery.skipped == "taken over"
    assert ledger.batch("db", bid).runner == "task-2"  # type: ignore[union-attr]


def test_the_heartbeat_keeps_a_long_delivery_alive(ledger: Ledger, lease: Lease) -> None:
    bid = batch(ledger, lease, ["a"])
    beats: list[float] = []

    def slow() -> None:
        for _ in range(6):
            time.sleep(0.05)
            beats.append(ledger.batch("db", bid).beat_at)  # type: ignore[union-attr]

    life(Scripted({"a": [slow]}), ledger, beat_interval=0.05).deliver(
        Job("db", ("a",), bid, 0, "c", "task-1")
    )
    assert len(set(beats)) >= 3  # beat_at moved while the document was being resolved


def test_flower_failing_never_loses_the_dead_letter(ledger: Ledger, lease: Lease) -> None:
    def broken_flower(entry: DeadLetter) -> None:
        raise ConnectionError("broker down")

    bid = batch(ledger, lease, ["a"])
    worker = life(Scripted({"a": [Outcome.DEAD_LETTERED]}), ledger)
    worker.on_dead_letter = broken_flower
    worker.deliver(Job("db", ("a",), bid, 0, "c", "task-1"))
    assert DeadLetters(ledger.redis, FARM).count("db") == 1
    assert ledger.batch("db", bid).status == "done"  # type: ignore[union-attr]


def test_in_process_runs_retry_until_settled(ledger: Ledger) -> None:
    engine = Scripted({"b": [Outcome.RETRY, Outcome.RETRY, Outcome.RESOLVED]})
    slept: list[float] = []
    runner = BatchLife(engine, LocalRecord(), DeadLetters(ledger.redis, FARM), POLICY)
    summary = runner.run("db", ["a", "b", "a"], batch_size=1, sleep=slept.append)
    assert [r.doc_id for r in summary.results] == ["a", "b"] and summary.counts == {"resolved": 2}
    assert len(slept) == 2 and engine.calls == [["a"], ["b"], ["b"], ["b"]]


def test_careful_chunks_put_suspects_alone_and_the_rest_in_small_chunks() -> None:
    docs = [f"d{i:02d}" for i in range(25)]
    chunks = careful_chunks(docs, {"d07": 1, "d20": 2})
    assert chunks[:2] == [["d07"], ["d20"]]
    assert [len(c) for c in chunks[2:]] == [10, 10, 3]
    assert sorted(d for c in chunks for d in c) == docs


def test_a_death_in_a_chunk_finds_the_poison_without_condemning_its_neighbours(
    ledger: Ledger, lease: Lease
) -> None:
    docs = [f"d{i}" for i in range(5)]
    bid = batch(ledger, lease, docs)

    def dies() -> None:
        raise SystemExit("the process died here")  # stands for a SIGKILL: the delivery never returns

    engine = Scripted({"d3": [dies]})
    worker = life(engine, ledger)
    for _ in range(4):  # each delivery that dies leaves the batch started; the next is careful
        ledger.redis.hset(f"couchfarm:{FARM}:batch:db:{bid}", mapping={"status": "started", "careful": "1"})
        try:
            delivery = worker.deliver(Job("db", tuple(docs), bid, 0, "corr", "task-1"))
        except SystemExit:
            continue
        break
    outcomes = {r.doc_id: r.outcome for r in delivery.results}
    assert outcomes.pop("d3") is Outcome.DEAD_LETTERED
    assert set(outcomes.values()) == {Outcome.RESOLVED}  # every neighbour resolved, none condemned
