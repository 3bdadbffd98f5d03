"""Redis state: the same tests against fakeredis and a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.errors import LeaseLost
from couchfarm.ledger import Ledger
from couchfarm.state import FarmState
from tests.helpers import FARM


@pytest.fixture
def state(any_redis: Any) -> FarmState:
    return FarmState(any_redis, FARM)


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
    any_redis.delete("couchfarm:test:lease:db")  # the lease expired while "a" was paused
    new = state.acquire("db", "b", ttl=30)
    assert new is not None
    with pytest.raises(LeaseLost):
        state.write_checkpoint(old, "read", "9-old")
    with pytest.raises(LeaseLost):
        Ledger(any_redis, FARM).create(old, ["x"], "9-old", "c")
    state.write_checkpoint(new, "read", "7-new")
    assert state.checkpoint("db").read == "7-new"
    # a holder with the right owner name but an old token is refused too (same id re-acquired)
    any_redis.delete("couchfarm:test:lease:db")
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


def test_overlap_counter(state: FarmState, any_redis: Any) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    assert state.record_read(lease, 0) and state.record_read(lease, "5-x")
    assert state.overlap("db") == 0
    assert not state.record_read(lease, "5-x")
    assert state.overlap("db") == 1
    any_redis.delete("couchfarm:test:lease:db")
    with pytest.raises(LeaseLost):
        state.record_read(lease, "6-y")


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


def test_reset_fences_the_mirror_of_older_holders(state: FarmState) -> None:
    lease = state.acquire("db", "a", ttl=30)
    assert lease is not None
    token = state.reset_checkpoint("db")
    cp = state.checkpoint("db")
    assert not cp.known and cp.reset_token == token > lease.token  # a mirror under `lease` is stale
    state.reset_checkpoint("db", fence_mirror=False)
    assert state.checkpoint("db").reset_token == -1


def test_forgetting_a_deleted_database_drops_its_dirty_mark(state: FarmState) -> None:
    lease = state.acquire("gone", "d1", 30)
    assert lease is not None
    state.write_checkpoint(lease, "read", 5)
    state.mark_dirty(["gone", "kept"])
    state.forget("gone")
    assert state.dirty_among(["gone", "kept"]) == ["kept"] and not state.checkpoint("gone").known
