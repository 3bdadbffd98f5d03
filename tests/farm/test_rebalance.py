"""Sharing leases between dispatchers (unit tier: fakeredis, followers stood in for): a database created
when every dispatcher is at its share is taken in the next round, however many databases the other
dispatchers hold."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from couchfarm.dispatch import dispatcher as dispatcher_module
from couchfarm.dispatch.dispatcher import Dispatcher
from couchfarm.ledger import Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from tests.helpers import FARM
from tests.prometheus.test_metrics import _Follower
from tests.replication.fakes import fake_client

DATABASES = 1000


def dispatcher(state: FarmState, listed: list[str]) -> Dispatcher:
    client, _ = fake_client({})
    d = Dispatcher(
        client,
        state,
        Ledger(state.redis, FARM),
        Settings(farm=FARM, lease_ttl=30, feed_deadline=10),
        broker=None,  # type: ignore[arg-type]
        names=["t*"],
    )

    def databases() -> list[str]:
        d.discovery.patterned = set(listed)  # what a glob matched: followed without asking the server
        return list(listed)

    d.discovery.databases = databases  # type: ignore[method-assign]
    return d


def test_a_new_database_is_taken_in_the_next_round(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "Follower", _Follower)
    state = FarmState(fakeredis.FakeRedis(decode_responses=True), FARM)
    listed = [f"t{i:04d}" for i in range(DATABASES)]
    first, second = dispatcher(state, listed), dispatcher(state, listed)
    for _ in range(8):  # both join, the first gives up its surplus, the second takes it
        first.round()
        second.round()
    assert sorted([len(first.followers), len(second.followers)]) == [DATABASES // 2, DATABASES // 2]
    listed.append("tnew")  # share 501: both want one more, and the only free lease is the new one
    first.round()
    second.round()
    holders: list[Any] = [d for d in (first, second) if "tnew" in d.followers]
    assert len(holders) == 1, "the new database was not taken by either dispatcher"
