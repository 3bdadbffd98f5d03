"""Redis state: the same tests against fakeredis and a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.errors import LeaseLost
from couchfarm.state import FarmState


@pytest.fixture
def state(any_redis: Any) -> FarmState:
    return FarmState(any_redis)


def test_lease_is_exclusive_and_tokens_grow(state: FarmState, any_redis: Any) -> None:
    first = state.acquire("db", "a", ttl=30)
    assert first is not None and first.token == 1
    assert state.acquire("db", "b", ttl=30) is None
    assert state.renew(first, 30)
    assert state.release(first)
    second = state.acquire("db", "b", ttl=30)
    assert second is not None and second.token == 2
    assert not state.renew(first, 30) and not state.release(first)
    assert state.holder("db")[0].startswith("b#") and state.holder("db")[2] == 2  # type: ignore[union-attr]


def test_stale_holder_cannot_move_checkpoints(state: FarmState, any_redis: Any) -> None:
    old = state.acquire("db", "a", ttl=30)
    assert old is not None
    state.write_checkpoint(old, "read", "5-abc")
    any_redis.delete("couchfarm:lease:db")  # the lease expired while "a" was paused
    new = state.acquire("db", "b", ttl=30)
    assert new is not None
    with pytest.raises(LeaseLost):
        state.write_checkpoint(old, "read", "9-old")
    with pytest.raises(LeaseLost):
        state.create_batch(old, ["x"], "9-old", "c")
    state.write_checkpoint(new, "read", "7-new")
    assert state.checkpoint("db").read == "7-new"
    # a holder with the right owner name but an old token is refused too (same id re-acquired)
    any_redis.delete("couchfarm:lease:db")
    again = state.acquire("db", "a", ttl=30)
    assert again is not None and again.token == 3
    with pytest.raises(LeaseLost):
        state.write_checkpoint(old, "done", "1")


def test_after_redis_loses_its_data_an_old_lease_of_the_same_process_is_refused(
    state: FarmState, any_redis: Any
) -> None:
    old = state.acquire("db", "host:1:abc", ttl=30)
    assert old is not None and old.token == 1
    any_redis.flushall()  # the fence counter starts again at 1
    new = state.acquire("db", "host:1:abc", ttl=30)
    assert new is not None and new.token == 1 and new.owner != old.owner
    with pytest.raises(LeaseLost):
        state.write_checkpoint(old, "read", "far-ahead")
    state.write_checkpoint(new, "read", "resumed")
    assert state.checkpoint("db").read == "resumed"


def test_a_missing_batch_record_stops_done(state: FarmState, any_redis: Any) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    lost = state.create_batch(lease, ["x"], 5, "c")
    state.write_checkpoint(lease, "read", 5)
    any_redis.delete(f"couchfarm:batch:db:{lost}")  # evicted
    state.advance_done(lease)
    assert state.checkpoint("db").done is None


def test_done_moves_only_over_completed_batches_in_order(state: FarmState) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    b1 = state.create_batch(lease, ["d1"], None, "c1")
    b2 = state.create_batch(lease, ["d2"], 10, "c2")
    b3 = state.create_batch(lease, ["d3"], 20, "c3")
    state.write_checkpoint(lease, "read", 20)
    for b in (b1, b2, b3):
        assert state.claim(lease, b)
    state.complete("db", b2)
    state.complete("db", b3)
    state.advance_done(lease)
    assert state.checkpoint("db").done is None  # b1 still open: done may not pass it
    state.complete("db", b1)
    state.advance_done(lease)
    assert state.checkpoint("db").done == 20 and state.batches("db") == []


def test_done_catches_up_with_read_when_nothing_is_open(state: FarmState) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    state.write_checkpoint(lease, "read", [3, "opaque"])
    state.advance_done(lease)
    assert state.checkpoint("db").done == [3, "opaque"]


def test_a_document_is_never_in_two_queued_batches(state: FarmState) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    first = state.create_batch(lease, ["x", "y"], None, "c")
    second = state.create_batch(lease, ["y", "z"], 5, "c")
    assert state.claim(lease, first)
    assert not state.claim(lease, second)  # y is in flight: the batch waits
    assert state.batch("db", second).status == "waiting"  # type: ignore[union-attr]
    state.complete("db", first)
    assert state.claim(lease, second)
    assert state.inflight("db") == {"y": second, "z": second}
    assert not state.claim(lease, second)  # already queued


def test_overlap_and_delivery_counters(state: FarmState, any_redis: Any) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    assert state.record_read(lease, 0) and state.record_read(lease, "5-x")
    assert state.overlap("db") == 0
    assert not state.record_read(lease, "5-x")
    assert state.overlap("db") == 1
    any_redis.delete("couchfarm:lease:db")
    with pytest.raises(LeaseLost):
        state.record_read(lease, "6-y")
    assert [state.delivery("b1", 0) for _ in range(3)] == [1, 2, 3]
    assert state.delivery("b1", 1) == 1


def test_a_waiting_batch_narrows_to_what_is_still_needed(state: FarmState) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    first = state.create_batch(lease, ["x", "y"], None, "c", revs={"x": ["1-a", "2-b"], "y": ["1-a", "2-c"]})
    assert state.batch("db", first).revs == {"x": ["1-a", "2-b"], "y": ["1-a", "2-c"]}  # type: ignore[union-attr]
    state.remember_leaves("db", {"x": ["2-b", "1-a"]})
    assert state.known_leaves("db", ["x", "y"]) == {"x": ["1-a", "2-b"]}
    assert state.claim(lease, first, ["y"])
    assert state.inflight("db") == {"y": first}
    empty = state.create_batch(lease, ["x"], 9, "c")
    assert not state.claim(lease, empty, [])  # nothing left: completed, not sent
    assert state.batch("db", empty).status == "done"  # type: ignore[union-attr]


def test_reset_makes_the_current_holder_step_down(state: FarmState) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    state.write_checkpoint(lease, "read", 10)
    state.reset_checkpoint("db")
    with pytest.raises(LeaseLost):
        state.write_checkpoint(lease, "read", 11)
    assert not state.checkpoint("db").known
    again = state.acquire("db", "a", ttl=30)
    assert again is not None and again.token > lease.token
