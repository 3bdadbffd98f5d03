"""The batch ledger: every move of a batch's life, against fakeredis and a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.errors import LeaseLost
from couchfarm.ledger import Ledger
from couchfarm.state import FarmState, Lease
from tests.helpers import FARM


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(any_redis: Any, clock: Clock) -> FarmState:
    return FarmState(any_redis, FARM, clock=clock)


@pytest.fixture
def ledger(any_redis: Any, clock: Clock) -> Ledger:
    return Ledger(any_redis, FARM, clock=clock)


@pytest.fixture
def lease(state: FarmState) -> Lease:
    taken = state.acquire("db", "a", ttl=30)
    assert taken is not None
    return taken


def finish(ledger: Ledger, batch_id: str, runner: str = "r1") -> None:
    assert ledger.start("db", batch_id, runner, 0, 30).verdict == "run"
    assert ledger.complete("db", batch_id, runner)


def test_a_batch_is_claimed_when_created_unless_a_document_is_in_flight(ledger: Ledger, lease: Lease) -> None:
    first, claimed = ledger.create(lease, ["x", "y"], None, "c")
    assert claimed
    second, claimed = ledger.create(lease, ["y", "z"], 5, "c")
    assert not claimed  # y is in flight: the batch waits
    assert ledger.batch("db", second).status == "waiting"  # type: ignore[union-attr]
    assert not ledger.claim(lease, second)
    finish(ledger, first)
    assert ledger.claim(lease, second)
    assert ledger.inflight("db") == {"y": second, "z": second}
    assert not ledger.claim(lease, second)  # already queued


def test_claimed_means_not_yet_published_until_sent(ledger: Ledger, lease: Lease, clock: Clock) -> None:
    batch_id, _ = ledger.create(lease, ["x"], 1, "c")
    (batch,) = ledger.batches("db")
    assert batch.status == "queued" and batch.sent_at is None and batch.pending == ["x"]
    clock.now += 1
    ledger.sent(lease, batch_id)
    (batch,) = ledger.batches("db")
    assert batch.sent_at == clock.now and batch.sends == 1


def test_a_waiting_batch_narrows_to_what_is_still_needed(ledger: Ledger, lease: Lease) -> None:
    ledger.create(lease, ["x", "y"], None, "c")  # holds x and y
    revs = {"x": ["1-a", "2-b"], "y": ["1-a", "2-c"]}
    waiting, claimed = ledger.create(lease, ["x", "y"], None, "c", revs=revs)
    assert not claimed and ledger.batch("db", waiting).revs == revs  # type: ignore[union-attr]
    ledger.remember_leaves("db", {"x": ["2-b", "1-a"]})
    assert ledger.known_leaves("db", ["x", "y"]) == {"x": ["1-a", "2-b"]}
    ledger.redis.delete("couchfarm:test:inflight:db")
    assert ledger.claim(lease, waiting, ["y"])
    assert ledger.batch("db", waiting).pending == ["y"]  # type: ignore[union-attr]
    ledger.redis.hset("couchfarm:test:inflight:db", "z", "other")
    empty, claimed = ledger.create(lease, ["z"], 9, "c")
    assert not claimed
    assert not ledger.claim(lease, empty, [])  # nothing left: completed, not sent
    assert ledger.batch("db", empty).status == "done"  # type: ignore[union-attr]


def test_a_stale_holder_cannot_create_claim_send_or_resend(
    ledger: Ledger, state: FarmState, lease: Lease, any_redis: Any
) -> None:
    batch_id, _ = ledger.create(lease, ["x"], 1, "c")
    any_redis.delete("couchfarm:test:lease:db")
    assert state.acquire("db", "b", ttl=30) is not None
    (batch,) = ledger.batches("db")
    for move in (
        lambda: ledger.create(lease, ["y"], 2, "c"),
        lambda: ledger.claim(lease, batch_id),
        lambda: ledger.sent(lease, batch_id),
        lambda: ledger.resend(lease, batch),
        lambda: ledger.advance_done(lease),
    ):
        with pytest.raises(LeaseLost):
            move()


def test_one_runner_at_a_time_late_and_stale_copies_do_nothing(
    ledger: Ledger, lease: Lease, clock: Clock
) -> None:
    batch_id, _ = ledger.create(lease, ["x", "y"], 1, "c")
    ledger.sent(lease, batch_id)
    first = ledger.start("db", batch_id, "task-1", 0, beat_timeout=5)
    assert first.verdict == "run" and first.pending == ["x", "y"] and not first.careful
    assert ledger.start("db", batch_id, "task-2", 0, beat_timeout=5).verdict == "busy"  # a duplicate
    clock.now += 4
    assert ledger.beat("db", batch_id, "task-1")
    clock.now += 4
    assert ledger.start("db", batch_id, "task-2", 0, beat_timeout=5).verdict == "busy"  # beat kept it
    assert not ledger.beat("db", batch_id, "task-2")
    assert ledger.retry_later("db", batch_id, "task-1", ["y"], 1, 2.0, careful=False)
    batch = ledger.batch("db", batch_id)
    assert batch is not None and batch.status == "retrying" and batch.pending == ["y"] and batch.attempt == 1
    assert batch.due_at == clock.now + 2.0
    assert ledger.start("db", batch_id, "task-2", 0, beat_timeout=5).verdict == "stale"  # attempt 0 is over
    again = ledger.start("db", batch_id, "task-1", 1, beat_timeout=5)
    assert again.verdict == "run" and again.pending == ["y"] and again.attempt == 1
    assert not ledger.complete("db", batch_id, "task-2")  # only the runner completes
    assert ledger.complete("db", batch_id, "task-1")
    assert ledger.inflight("db") == {}
    assert ledger.start("db", batch_id, "task-3", 1, beat_timeout=5).verdict == "gone"
    assert ledger.start("db", "nope", "task-3", 0, beat_timeout=5).verdict == "gone"


def test_a_silent_runner_is_replaced_and_can_no_longer_finish(
    ledger: Ledger, lease: Lease, clock: Clock
) -> None:
    batch_id, _ = ledger.create(lease, ["x"], 1, "c")
    ledger.sent(lease, batch_id)
    assert ledger.start("db", batch_id, "task-1", 0, beat_timeout=5).verdict == "run"
    clock.now += 6  # task-1 stopped beating (its process died, or it is paused)
    (batch,) = ledger.batches("db")
    assert ledger.resend(lease, batch)
    (batch,) = ledger.batches("db")
    assert batch.status == "queued" and batch.sent_at is None and batch.careful
    took = ledger.start("db", batch_id, "task-2", 0, beat_timeout=5)
    assert took.verdict == "run" and took.careful  # one document at a time after a death
    assert not ledger.beat("db", batch_id, "task-1")
    assert not ledger.complete("db", batch_id, "task-1")
    assert not ledger.retry_later("db", batch_id, "task-1", ["x"], 1, 0, careful=False)
    assert ledger.complete("db", batch_id, "task-2")


def test_a_resend_loses_to_a_beat_or_start_in_between(ledger: Ledger, lease: Lease, clock: Clock) -> None:
    batch_id, _ = ledger.create(lease, ["x"], 1, "c")
    ledger.sent(lease, batch_id)
    ledger.start("db", batch_id, "task-1", 0, beat_timeout=5)
    clock.now += 6
    (seen,) = ledger.batches("db")
    ledger.beat("db", batch_id, "task-1")  # it was only slow
    assert not ledger.resend(lease, seen)
    assert ledger.batch("db", batch_id).runner == "task-1"  # type: ignore[union-attr]


def test_the_same_message_redelivered_after_its_process_died_takes_over(ledger: Ledger, lease: Lease) -> None:
    batch_id, _ = ledger.create(lease, ["x"], 1, "c")
    assert ledger.start("db", batch_id, "task-1", 0, beat_timeout=5).verdict == "run"
    again = ledger.start("db", batch_id, "task-1", 0, beat_timeout=5)  # task_reject_on_worker_lost
    assert again.verdict == "run" and again.careful
    assert ledger.batch("db", batch_id).deliveries == 2  # type: ignore[union-attr]


def test_strikes_count_deaths_per_document(ledger: Ledger, lease: Lease) -> None:
    batch_id, _ = ledger.create(lease, ["x", "y"], 1, "c")
    assert [ledger.strike("db", batch_id, ["x"])["x"] for _ in range(3)] == [1, 2, 3]
    assert ledger.strike("db", batch_id, ["x", "y"]) == {"x": 4, "y": 1}
    assert ledger.strikes("db", batch_id, ["x", "y", "z"]) == {"x": 4, "y": 1, "z": 0}
    ledger.spare("db", batch_id, ["x", "y"])
    assert ledger.strike("db", batch_id, ["x"]) == {"x": 1}
    assert ledger.strike("db", "gone", ["x"]) == {"x": 0}


def test_done_moves_only_over_completed_batches_in_order(
    ledger: Ledger, state: FarmState, lease: Lease
) -> None:
    b1, _ = ledger.create(lease, ["d1"], None, "c1")
    b2, _ = ledger.create(lease, ["d2"], 10, "c2")
    b3, _ = ledger.create(lease, ["d3"], 20, "c3")
    state.write_checkpoint(lease, "read", 20)
    finish(ledger, b2)
    finish(ledger, b3)
    ledger.advance_done(lease)
    assert state.checkpoint("db").done is None  # b1 still open: done may not pass it
    finish(ledger, b1)
    ledger.advance_done(lease)
    assert state.checkpoint("db").done == 20 and ledger.batches("db") == []


def test_a_missing_batch_record_stops_done(
    ledger: Ledger, state: FarmState, lease: Lease, any_redis: Any
) -> None:
    lost, _ = ledger.create(lease, ["x"], 5, "c")
    state.write_checkpoint(lease, "read", 5)
    any_redis.delete(f"couchfarm:test:batch:db:{lost}")  # evicted
    ledger.advance_done(lease)
    assert state.checkpoint("db").done is None


def test_done_catches_up_with_read_when_nothing_is_open(
    ledger: Ledger, state: FarmState, lease: Lease
) -> None:
    state.write_checkpoint(lease, "read", [3, "opaque"])
    ledger.advance_done(lease)
    assert state.checkpoint("db").done == [3, "opaque"]


def test_one_snapshot_holds_the_whole_round(
    ledger: Ledger, state: FarmState, lease: Lease, any_redis: Any
) -> None:
    b1, _ = ledger.create(lease, ["x"], 1, "c")
    b2, _ = ledger.create(lease, ["x", "z"], 2, "c")
    state.write_checkpoint(lease, "read", 2)
    state.pause("db")
    any_redis.zadd("couchfarm:test:dlq:db:db", {"e1": 1.0})
    any_redis.incr("couchfarm:test:overlap:db")
    snap = ledger.snapshot("db")
    assert [b.id for b in snap.batches] == [b1, b2] and [b.status for b in snap.batches] == [
        "queued",
        "waiting",
    ]
    assert snap.checkpoint.read == 2 and snap.paused and snap.dead_letters == 1 and snap.overlap == 1
    assert not ledger.snapshot("other").batches and not ledger.snapshot("other").checkpoint.known


def test_reset_removes_every_batch(ledger: Ledger, state: FarmState, lease: Lease, any_redis: Any) -> None:
    ledger.create(lease, ["x"], 1, "c")
    ledger.create(lease, ["x"], 2, "c")
    state.reset_checkpoint("db")
    assert ledger.batches("db") == [] and ledger.inflight("db") == {}
    assert not any_redis.keys("couchfarm:test:batch:*")
