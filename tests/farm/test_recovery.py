"""Crash recovery in seconds, with real processes: every gap that once stalled a batch for the broker's
visibility timeout (20 minutes) is closed within 2 x ``lease_ttl``.

The visibility timeout in these tests is over a minute (derived from ``task_time_limit``), so a
recovery within seconds cannot come from the broker re-queuing the message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.dispatch.dispatcher import Dispatcher
from couchfarm.ledger import Ledger
from tests.farm.procs import Farm
from tests.farm.test_farm import conflicted, dbs, seed
from tests.helpers import FARM, wait_for

TTL = 2.0  #: lease_ttl of tests/farm/procs.py FAST
SLACK = 3.0  #: resolving the batch itself and starting processes on a busy 2-core machine


def farm_config(tmp: Path, function: str) -> str:
    path = tmp / "farm.yaml"
    path.write_text(
        "databases:\n  - name: 'farm*'\n    strategy: custom\n"
        f"    options: {{function: 'tests.farm.resolvers:{function}'}}\n"
    )
    return str(path)


@pytest.fixture
def make_farm(tmp_path: Path, couch_url: str, redis_url: str) -> Iterator[Any]:
    farms: list[Farm] = []

    def make(function: str = "newest", **env: str) -> Farm:
        farm = Farm(tmp_path, couch_url, redis_url, COUCHFARM_CONFIG=farm_config(tmp_path, function), **env)
        farms.append(farm)
        return farm

    yield make
    for farm in farms:
        farm.stop()


def ready(farm: Farm, name: str) -> None:
    wait_for(lambda: "ready" in farm.log(name), 60, f"{name} ready")


def holder(state_redis: Any, db: str) -> str:
    return str(state_redis.get(f"couchfarm:test:lease:{db}") or "")


def fast_settings(couch_url: str, redis_url: str) -> Any:
    from couchfarm.settings import Settings
    from tests.farm.procs import FAST

    return Settings.load(env={**FAST, "COUCHFARM_COUCH_URL": couch_url, "COUCHFARM_REDIS_URL": redis_url})


def in_process(settings: Any, broker: Any, db: str, until_idle: bool = False) -> Dispatcher:
    """A dispatcher in this process (its broker and its discovery can be replaced), following ``db``."""
    from couchfarm import factory
    from couchfarm.state import FarmState

    state = FarmState(redis.Redis.from_url(str(settings.redis_url), decode_responses=True), FARM)
    ledger = Ledger(state.redis, FARM)
    client = factory.couch_client(settings)
    return Dispatcher(client, state, ledger, settings, broker, [db], until_idle=until_idle)


def marked_at(path: Path) -> float:
    return float(path.read_text() or "0") if path.exists() and path.read_text() else os.path.getmtime(path)


def settled(client: CouchClient, ledger: Ledger, db: str) -> bool:
    return conflicted(client, db) == 0 and not ledger.batches(db)


def recovered(what: str, since: float, client: CouchClient, r: Any, db: str, timeout: float) -> None:
    """Every conflict of ``db`` resolved and every batch completed within 2 x lease_ttl of ``since``
    (plus the slack for the work itself), with no dead letter."""
    ledger = Ledger(r, FARM)
    wait_for(lambda: settled(client, ledger, db), timeout, f"{what}: everything settled")
    seconds = time.time() - since
    print(f"\n{what}: recovered {seconds:.1f}s after the failure (bound 2 x lease_ttl + {SLACK:.0f}s)")
    assert seconds < 2 * TTL + SLACK
    assert DeadLetters(r, FARM).count(db) == 0


def test_a_dispatcher_killed_between_claim_and_publish(
    make_farm: Any, client: CouchClient, real_redis: Any, tmp_path: Path
) -> None:
    (db,) = dbs(client, 1)
    marker = tmp_path / "killed"
    farm = make_farm()
    farm.worker("w", 2)
    ready(farm, "w")
    farm.dispatcher("d1", db, COUCHFARM_FAILPOINT=f"before_publish:{marker}")
    wait_for(lambda: holder(real_redis, db), 30, "d1 holds the lease")
    farm.dispatcher("d2", db)
    time.sleep(1.0)  # d2 is up and waiting for the lease
    seed(client, db, 20)
    wait_for(marker.exists, 30, "d1 SIGKILLed itself after claiming, before publishing")
    killed = os.path.getmtime(marker)
    recovered("dispatcher killed between claim and publish", killed, client, real_redis, db, 4 * TTL + 10)
    assert "could not publish" not in farm.log("d2")


def test_the_broker_refusing_publishes_for_a_while(
    make_farm: Any, client: CouchClient, real_redis: Any, redis_url: str
) -> None:
    (db,) = dbs(client, 1)
    real_redis.acl_setuser(
        "broker", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    broker_url = redis_url.replace("redis://", "redis://broker:pw@")
    farm = make_farm(COUCHFARM_BROKER_URL=broker_url)
    farm.worker("w", 2)
    ready(farm, "w")
    farm.dispatcher("d", db)
    wait_for(lambda: holder(real_redis, db), 30, "d holds the lease")
    refuse = {"enabled": True, "passwords": ["+pw"]}
    real_redis.acl_setuser("broker", commands=["-lpush", "-rpush"], **refuse)  # publishes refused now
    try:
        seed(client, db, 20)
        wait_for(lambda: "could not publish" in farm.log("d"), 30, "a refused publish")
        time.sleep(3 * TTL)  # the follower keeps its claim and keeps trying
        assert conflicted(client, db) == 20
    finally:
        real_redis.acl_setuser("broker", commands=["+lpush", "+rpush"], **refuse)
    recovered("broker refusing publishes", time.time(), client, real_redis, db, 4 * TTL + 30)
    assert "OperationalError: this user has no permissions" in farm.log("d")


def test_a_batch_that_reaches_the_hard_time_limit(
    make_farm: Any, client: CouchClient, real_redis: Any, tmp_path: Path
) -> None:
    (db,) = dbs(client, 1)
    marker = tmp_path / "stuck"
    limit = 3.0
    farm = make_farm("stuck", COUCHFARM_TEST_MARKER=str(marker), COUCHFARM_TASK_TIME_LIMIT=str(limit))
    farm.worker("w", 2)
    ready(farm, "w")
    farm.dispatcher("d", db)
    seed(client, db, 5)
    wait_for(marker.exists, 30, "a document stuck in its strategy")
    killed = marked_at(marker) + limit  # the hard time limit kills the pool process then
    recovered("hard time limit", killed, client, real_redis, db, limit + 4 * TTL + 20)
    assert "re-sending batch" in farm.log("d")


def test_a_soft_time_limit_retries_instead_of_dead_lettering(
    make_farm: Any, client: CouchClient, real_redis: Any, tmp_path: Path
) -> None:
    (db,) = dbs(client, 1)
    marker = tmp_path / "slow"
    farm = make_farm("sleepy", COUCHFARM_TEST_MARKER=str(marker), COUCHFARM_TASK_TIME_LIMIT="3")
    farm.worker("w", 1)
    ready(farm, "w")
    farm.dispatcher("d", db)
    seed(client, db, 5)
    ledger = Ledger(real_redis, FARM)
    wait_for(lambda: marker.exists() and settled(client, ledger, db), 60, "resolved after the soft limit")
    assert DeadLetters(real_redis, FARM).count(db) == 0
    assert "SoftTimeLimitExceeded" in farm.log("w") or "soft time limit" in farm.log("w").lower()


def test_the_follower_survives_publish_errors(
    couch_url: str, redis_url: str, client: CouchClient, make_farm: Any
) -> None:
    """In-process dispatcher whose broker raises kombu's OperationalError (the broker unreachable)
    for its first publishes: the follower logs, backs off, keeps its claims and publishes later."""
    from kombu.exceptions import OperationalError

    from workers.farm import CeleryBroker, celery_app

    (db,) = dbs(client, 1)
    seed(client, db, 30)
    farm = make_farm()
    farm.worker("w", 2)
    settings = fast_settings(couch_url, redis_url)

    class Flaky(CeleryBroker):
        refusals = 4

        def send(self, batch: Any) -> None:
            if self.refusals:
                self.refusals -= 1
                raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            super().send(batch)

    broker = Flaky(celery_app(settings), settings)
    dispatcher = in_process(settings, broker, db, until_idle=True)
    assert dispatcher.run(max_seconds=90)
    assert broker.refusals == 0 and conflicted(client, db) == 0
    assert DeadLetters(dispatcher.state.redis, FARM).count(db) == 0


def test_slow_rounds_keep_their_leases_and_failing_rounds_let_them_go(
    couch_url: str, redis_url: str, client: CouchClient
) -> None:
    """A round slowed by a busy CouchDB (discovery taking 3 x lease_ttl) must not lose the leases its
    keeper renews in between; a round that fails stops the keeper, and the lease runs out."""
    import threading

    from workers.farm import CeleryBroker, celery_app

    (db,) = dbs(client, 1)
    settings = fast_settings(couch_url, redis_url)
    dispatcher = in_process(settings, CeleryBroker(celery_app(settings), settings), db)
    state = dispatcher.state
    listed = dispatcher.discovery.databases
    mode = {"now": "fast"}

    def databases() -> list[str]:
        if mode["now"] == "slow":
            time.sleep(3 * TTL)
        if mode["now"] == "failing":
            raise ConnectionError("CouchDB does not answer")
        return listed()

    dispatcher.discovery.databases = databases  # type: ignore[method-assign]
    runner = threading.Thread(target=dispatcher.run, daemon=True)
    runner.start()
    try:
        first = wait_for(lambda: holder(state.redis, db), 30, "the lease taken")
        mode["now"] = "slow"
        end = time.monotonic() + 4 * TTL
        while time.monotonic() < end:  # two slow rounds: the lease never lapses, never changes hands
            assert holder(state.redis, db) == first
            time.sleep(0.1)
        mode["now"] = "failing"
        wait_for(lambda: dispatcher._failures > 0, 4 * TTL, "a failed round")
        wait_for(lambda: not holder(state.redis, db), TTL + SLACK, "the lease run out")
    finally:
        dispatcher.stop.set()
        runner.join(timeout=30)
