"""The farm with real processes: pouchdb-server, redis-server, dispatcher and worker subprocesses."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.dispatch.follower import MIRROR
from couchfarm.ledger import Ledger
from couchfarm.scan import scan
from couchfarm.state import FarmState
from tests.farm.procs import Farm, children
from tests.helpers import FARM, make_conflict, wait_for


def config(tmp: Path, function: str = "newest", **extra: Any) -> str:
    path = tmp / "farm.yaml"
    lines = [f"{k}: {v}" for k, v in extra.items()]
    lines += [
        "databases:",
        "  - name: 'farm*'",
        "    strategy: custom",
        f"    options: {{function: 'tests.farm.resolvers:{function}'}}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def seed(client: CouchClient, db: str, n: int, prefix: str = "doc", start: int = 0) -> None:
    client.create_db(db)
    for i in range(start, start + n):
        make_conflict(
            client,
            db,
            f"{prefix}-{i:04d}",
            [{"updated_at": "2026-01-01T00:00:00Z", "v": 1}, {"updated_at": "2026-02-01T00:00:00Z", "v": 2}],
        )


def conflicted(client: CouchClient, db: str) -> int:
    return len(list(scan(client, db)))


@pytest.fixture
def farm(tmp_path: Path, couch_url: str, redis_url: str) -> Iterator[Farm]:
    f = Farm(tmp_path, couch_url, redis_url, COUCHFARM_CONFIG=config(tmp_path))
    yield f
    f.stop()


@pytest.fixture
def state(redis_url: str) -> FarmState:
    return FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)


PREFIX = f"farm{os.urandom(2).hex()}"


def dbs(client: CouchClient, n: int) -> list[str]:
    """Fresh databases named PREFIX + tag + suffix; ``glob(names)`` matches exactly this test's."""
    tag = os.urandom(2).hex()
    names = [f"{PREFIX}{tag}x{os.urandom(2).hex()}" for _ in range(n)]
    for name in names:
        client.create_db(name)
    return names


def glob(names: list[str]) -> str:
    return names[0].split("x")[0] + "x*"


def test_steady_state_three_databases_with_a_writer(
    farm: Farm, client: CouchClient, state: FarmState
) -> None:
    names = dbs(client, 3)
    farm.start("run", "run", "--db", glob(names), "-c", "2")
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 60:
            seed(client, names[i % 3], 1, start=i)
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=writer)
    t.start()
    t.join(60)
    stop.set()
    wait_for(lambda: all(conflicted(client, db) == 0 for db in names), 90, "every conflict resolved")
    wait_for(lambda: all(state.lag(db) == 0 for db in names), 30, "lag back to 0")

    def caught_up(db: str) -> bool:
        cp = state.checkpoint(db)
        return bool(cp.done == cp.read)

    wait_for(lambda: all(caught_up(db) for db in names), 10, "done caught up with read")
    for db in names:
        assert state.overlap(db) == 0


def holders(state: FarmState, names: list[str]) -> dict[str, str | None]:
    return {db: state.holder(db)[0] for db in names}


def test_failover_fencing_and_pause(farm: Farm, client: CouchClient, state: FarmState) -> None:
    names = dbs(client, 2)
    farm.worker("w1")
    farm.worker("w2")
    d1 = farm.dispatcher("d1", glob(names))
    wait_for(lambda: all(holders(state, names).values()), 30, "d1 holds both")
    d2 = farm.dispatcher("d2", glob(names))
    # fair share: d2 joins, d1 hands one database over
    wait_for(lambda: len(set(holders(state, names).values())) == 2, 30, "leases spread over two dispatchers")
    for db in names:
        seed(client, db, 10)
    wait_for(lambda: all(conflicted(client, db) == 0 for db in names), 60, "resolved by both")
    # SIGKILL one dispatcher: the other takes its database within the lease TTL
    victim_db = names[0]
    victim_owner = state.holder(victim_db)[0]
    victim, survivor = (d1, d2) if victim_owner and f":{d1.pid}:" in victim_owner else (d2, d1)
    os.killpg(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: all(o and f":{survivor.pid}:" in o for o in holders(state, names).values()), 20, "takeover"
    )
    assert time.monotonic() - killed_at < 2 * 2 + 3  # TTL 2 s, rounds of TTL/3
    seed(client, victim_db, 10, start=100)
    wait_for(lambda: conflicted(client, victim_db) == 0, 60, "no conflict missed after takeover")
    assert all(state.overlap(db) == 0 for db in names)
    # SIGSTOP the holder past its TTL; a new dispatcher takes over; SIGCONT: the old one steps down
    d3 = farm.dispatcher("d3", glob(names))
    os.killpg(survivor.pid, signal.SIGSTOP)
    wait_for(
        lambda: all(o and f":{d3.pid}:" in o for o in holders(state, names).values()), 20, "d3 takes over"
    )
    tokens = {db: state.holder(db)[2] for db in names}
    at_takeover = {db: state.checkpoint(db) for db in names}
    os.killpg(survivor.pid, signal.SIGCONT)
    seed(client, names[1], 5, start=200)
    wait_for(lambda: conflicted(client, names[1]) == 0, 60, "resolved by the new holder")
    time.sleep(2)
    for db in names:  # untouched since the takeover, or written with a newer token: never the old one
        now = state.checkpoint(db)
        assert now == at_takeover[db] or now.token >= tokens[db], (now, at_takeover[db], tokens[db])
    paused_log = farm.log(survivor_name(farm, survivor))
    assert "stepping down" in paused_log or "lost the lease" in paused_log


def survivor_name(farm: Farm, proc: Any) -> str:
    return next(name for name, p in farm.procs if p is proc)


def test_worker_killed_mid_batch_is_redelivered(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient, state: FarmState
) -> None:
    farm = Farm(
        tmp_path, couch_url, redis_url, COUCHFARM_CONFIG=config(tmp_path, "slow"), COUCHFARM_TEST_SLOW="0.3"
    )
    try:
        (db,) = dbs(client, 1)
        seed(client, db, 20)
        worker = farm.worker("w", 1)
        farm.dispatcher("d", db)
        wait_for(lambda: Ledger(state.redis, FARM).inflight(db), 30, "a batch in flight")
        time.sleep(1.0)
        for child in children(worker.pid):
            os.kill(child, signal.SIGKILL)  # the pool process dies mid-batch
        wait_for(lambda: conflicted(client, db) == 0, 90, "every conflict resolved after redelivery")
        assert DeadLetters(state.redis, FARM).count(db) == 0
        wait_for(lambda: not Ledger(state.redis, FARM).batches(db), 30, "every batch completed")
    finally:
        farm.stop()


def test_restart_resumes_from_checkpoint_and_from_the_mirror(
    farm: Farm, client: CouchClient, state: FarmState
) -> None:
    (db,) = dbs(client, 1)
    seed(client, db, 15)
    farm.worker("w", 2)
    d = farm.dispatcher("d1", db)
    wait_for(lambda: conflicted(client, db) == 0, 60, "first pass")
    wait_for(
        lambda: state.checkpoint(db).done == state.checkpoint(db).read and client.get_local(db, MIRROR), 30
    )
    d.send_signal(signal.SIGTERM)
    d.wait(20)
    resume_from = state.checkpoint(db).read  # everything before it was batched (or was the farm's own)
    reads_before = set(state.redis.zrange(f"couchfarm:test:reads:{db}", 0, -1))
    seed(client, db, 5, start=100)
    farm.dispatcher("d2", db)
    wait_for(lambda: conflicted(client, db) == 0, 60, "second pass")
    reads_after = set(state.redis.zrange(f"couchfarm:test:reads:{db}", 0, -1)) - reads_before
    assert json.dumps(resume_from) in reads_after  # the restart read from the checkpoint ...
    assert state.overlap(db) == 0  # ... and read no range twice
    # Redis loses everything: the farm resumes from the _local mirror, not from 0
    mirror = client.get_local(db, MIRROR)["done"]  # type: ignore[index]
    state.redis.flushall()
    seed(client, db, 5, start=200)
    wait_for(lambda: conflicted(client, db) == 0, 60, "third pass after FLUSHALL")
    first_read = min(
        state.redis.zrange(f"couchfarm:test:reads:{db}", 0, -1, withscores=True), key=lambda x: x[1]
    )[0]
    assert json.loads(first_read) == mirror


def test_poison_batch_is_dead_lettered_while_the_rest_flows(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient, state: FarmState
) -> None:
    farm = Farm(
        tmp_path,
        couch_url,
        redis_url,
        COUCHFARM_CONFIG=config(tmp_path, "poison"),
        COUCHFARM_MAX_DELIVERIES="3",
    )
    try:
        (db,) = dbs(client, 1)
        seed(client, db, 1, prefix="poison")
        seed(client, db, 12)
        farm.worker("w", 2)
        farm.dispatcher("d", db)
        dlq = DeadLetters(state.redis, FARM)
        wait_for(lambda: dlq.count(db) == 1, 90, "the poison document dead-lettered")
        wait_for(lambda: conflicted(client, db) == 1, 60, "every other document resolved")
        (entry,) = dlq.list(db)
        assert entry.doc_id == "poison-0000" and entry.error == "PoisonDocument" and "died" in entry.reason
        wait_for(lambda: not Ledger(state.redis, FARM).batches(db), 30, "the poison batch completed")
    finally:
        farm.stop()


def test_database_created_while_running_is_picked_up(
    farm: Farm, client: CouchClient, state: FarmState
) -> None:
    (first,) = dbs(client, 1)
    farm.start("run", "run", "--db", glob([first]), "-c", "1")
    wait_for(lambda: state.holder(first)[0], 30, "the first database followed")
    late = glob([first])[:-1] + "late"
    seed(client, late, 8)
    wait_for(lambda: conflicted(client, late) == 0, 60, "the new database's conflicts resolved")


def test_a_paused_database_is_left_for_people_and_resumes(
    farm: Farm, client: CouchClient, state: FarmState
) -> None:
    (db,) = dbs(client, 1)
    state.pause(db)
    farm.worker("w", 1)
    farm.dispatcher("d", db)
    wait_for(lambda: state.holder(db)[0], 30, "the database followed")
    seed(client, db, 6)
    time.sleep(3)
    assert conflicted(client, db) == 6 and not Ledger(state.redis, FARM).batches(
        db
    )  # nothing read, nothing sent
    state.unpause(db)
    wait_for(lambda: conflicted(client, db) == 0, 60, "resolved after resume, from the same checkpoint")
    assert state.overlap(db) == 0
