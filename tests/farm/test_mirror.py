"""The ``_local`` mirror of ``done`` (what a follower resumes from when Redis lost its data): written
with the lease's token when the lease is taken, carrying the freshest ``done`` known, and then only
once enough of the feed was read to make a replay worth a write (a quiet database costs no write per
change)."""

from __future__ import annotations

import pytest
import redis

from couchfarm.couch import CouchClient
from couchfarm.dispatch import follower as follower_module
from couchfarm.dispatch.follower import MIRROR, Follower
from couchfarm.ledger import Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from tests.farm.test_discovery import _NoBroker
from tests.helpers import FARM


def add(client: CouchClient, db: str, start: int, n: int) -> None:
    client.bulk_docs(db, [{"_id": f"d{i:04d}", "v": i} for i in range(start, start + n)])


def test_the_mirror_is_written_with_the_lease_and_then_per_rows_read(
    client: CouchClient, db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module, "MIRROR_ROWS", 5)
    monkeypatch.setattr(follower_module, "MIRROR_EVERY", 0.0)
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
    add(client, db, 0, 3)
    lease = state.acquire(db, "test", 30)
    assert lease is not None
    state.write_checkpoint(lease, "read", 2)  # Redis knows more than the (absent) mirror
    state.write_checkpoint(lease, "done", 2)
    f = Follower(client, state, Ledger(state.redis, FARM), lease, Settings(farm=FARM), _NoBroker())
    f.round()
    mirror = client.get_local(db, MIRROR)
    assert mirror is not None and mirror["done"] == 2 and mirror["token"] == lease.token
    assert state.checkpoint(db).done == 3  # the round read on to the end
    add(client, db, 3, 3)
    f.round()
    assert state.checkpoint(db).done == 6 and client.get_local(db, MIRROR)["done"] == 2  # type: ignore[index]
    add(client, db, 6, 3)  # 1 + 3 + 3 rows read since the last mirror: one is due
    f.round()
    assert state.checkpoint(db).done == 9 and client.get_local(db, MIRROR)["done"] == 9  # type: ignore[index]
    add(client, db, 9, 1)
    f.round()
    assert client.get_local(db, MIRROR)["done"] == 9  # type: ignore[index]
    f.mirror(force=True)  # the lease is released: the mirror catches up, whatever was read
    assert client.get_local(db, MIRROR)["done"] == 10  # type: ignore[index]


def test_a_mirror_written_while_batches_were_open_is_written_again_once_done_catches_up(
    client: CouchClient, db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows read are not the only reason: a mirror that recorded a done behind read (batches open)
    is brought up to date once done moves, however few rows were read since."""
    monkeypatch.setattr(follower_module, "MIRROR_EVERY", 0.0)
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
    add(client, db, 0, 6)
    lease = state.acquire(db, "test", 30)
    assert lease is not None
    state.write_checkpoint(lease, "read", 6)  # read on to 6, done still at 2: a batch was open
    state.write_checkpoint(lease, "done", 2)
    f = Follower(client, state, Ledger(state.redis, FARM), lease, Settings(farm=FARM), _NoBroker())
    f.continue_from_checkpoint()
    assert client.get_local(db, MIRROR)["done"] == 2  # type: ignore[index]
    f.round()  # nothing open any more: done follows read, and the mirror follows done
    assert state.checkpoint(db).done == 6 and client.get_local(db, MIRROR)["done"] == 6  # type: ignore[index]
    add(client, db, 6, 1)
    f.round()  # caught up when last mirrored: a row or two costs no write
    assert state.checkpoint(db).done == 7 and client.get_local(db, MIRROR)["done"] == 6  # type: ignore[index]
