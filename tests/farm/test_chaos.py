"""Chaos: random SIGKILLs of dispatchers, workers and pool processes while a backlog of 3,000
conflicts drains. Nothing may be left, wrong or dead-lettered, and once the killing stops the farm
must settle within 2 x lease_ttl plus the time the remaining backlog takes to drain.

The test prints what it did and measured (run with ``-s`` to see it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.ledger import Ledger
from tests.farm.procs import Farm, children
from tests.farm.test_farm import PREFIX
from tests.farm.test_recovery import farm_config, ready
from tests.helpers import FARM, seed_conflicts, wait_for

DOCS = 3000
TTL = 2.0
CHAOS_SECONDS = 24.0


def left(client: CouchClient, db: str) -> int:
    """Documents that still have more than one live leaf (one request: ``_conflicts`` lists the
    live losing leaves only)."""
    return sum(
        1 for row in client.all_docs(db, include_docs=True, conflicts=True) if row["doc"].get("_conflicts")
    )


def diagnose(client: CouchClient, db: str, ledger: Ledger, redis: Any) -> str:
    """What is left when the farm did not settle: the conflicted documents, the open batches and
    the checkpoint, for the person reading the failure."""
    conflicted = [
        (row["id"], row["doc"]["_rev"], row["doc"]["_conflicts"])
        for row in client.all_docs(db, include_docs=True, conflicts=True)
        if row["doc"].get("_conflicts")
    ]
    lines = [f"{len(conflicted)} conflicted, e.g. {conflicted[:5]}"]
    lines += [f"open batch {b}" for b in ledger.batches(db)]
    lines.append(f"snapshot {ledger.snapshot(db)}")
    lines.append(f"update_seq {client.db_info(db).get('update_seq')}")
    for key in sorted(redis.scan_iter(f"couchfarm:{FARM}:*")):
        kind = redis.type(key)
        if kind == "string":
            lines.append(f"{key} = {str(redis.get(key))[:200]}")
        elif kind == "hash" and redis.hlen(key) < 20:
            lines.append(f"{key} = {redis.hgetall(key)}")
        else:
            lines.append(f"{key}: {kind}")
    return "\n".join(lines)


class Chaos:
    """Two dispatchers and two workers (2 pool processes each), restarted like a supervisor would."""

    def __init__(self, farm: Farm, db: str, rng: random.Random) -> None:
        self.farm, self.db, self.rng = farm, db, rng
        self.live: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: list[str] = []
        self.serial = 0

    def start(self, role: str) -> None:
        self.serial += 1
        name = f"{role}{self.serial}"
        if role == "d":
            self.live[name] = self.farm.dispatcher(name, self.db)
        else:
            self.live[name] = self.farm.worker(name, 2)

    def kill_one(self) -> None:
        name = self.rng.choice(sorted(self.live))
        proc = self.live[name]
        how = self.rng.choice(["main", "group", "child"] if name.startswith("w") else ["main"])
        pool = children(proc.pid)
        if how == "child" and pool:
            os.kill(self.rng.choice(pool), signal.SIGKILL)  # Celery re-queues its message at once
            self.kills.append(f"{name}:pool-process")
            return
        if how == "group":
            os.killpg(proc.pid, signal.SIGKILL)  # the whole worker, pool processes included
        else:
            proc.send_signal(signal.SIGKILL)  # the main process only (its pool may live on a while)
        proc.wait()
        self.kills.append(f"{name}:{'whole' if how == 'group' else 'main'}")
        del self.live[name]
        self.start(name[0])


@pytest.mark.timeout(600)
def test_random_sigkills_while_a_backlog_drains(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient, real_redis: Any
) -> None:
    db = f"{PREFIX}chaos{os.urandom(2).hex()}"
    ids = seed_conflicts(client, db, DOCS)
    farm = Farm(
        tmp_path,
        couch_url,
        redis_url,
        COUCHFARM_CONFIG=farm_config(tmp_path, "slow"),
        COUCHFARM_TEST_SLOW="0.04",
    )
    seed = os.environ.get("CHAOS_SEED", str(time.time_ns()))
    rng = random.Random(seed)
    chaos = Chaos(farm, db, rng)
    try:
        for role in ("w", "w", "d", "d"):
            chaos.start(role)
        ready(farm, "w1")
        ready(farm, "w2")
        # an undisturbed stretch first: the rate the backlog drains at
        wait_for(lambda: left(client, db) <= DOCS - 300, 120, "the first 300 resolved")
        t0, n0 = time.monotonic(), left(client, db)
        wait_for(lambda: left(client, db) <= n0 - 300, 120, "300 more resolved")
        rate = (n0 - left(client, db)) / (time.monotonic() - t0)
        stop = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < stop:
            time.sleep(rng.uniform(1.0, 3.0))
            chaos.kill_one()
        last_kill, remaining = time.monotonic(), left(client, db)
        ledger = Ledger(real_redis, FARM)
        drain = remaining / rate
        bound = 2 * TTL + 2 * drain + 10  # restarted workers start cold: drain at half the rate
        try:
            wait_for(
                lambda: left(client, db) == 0 and not ledger.batches(db), bound + 60, "everything settled"
            )
        except AssertionError:
            print(
                f"\nchaos seed {seed}; kills: {', '.join(chaos.kills)}",
                diagnose(client, db, ledger, real_redis),
                sep="\n",
            )
            raise
        settled = time.monotonic() - last_kill
        print(
            f"\nchaos: {len(chaos.kills)} kills ({', '.join(chaos.kills)});"
            f" undisturbed rate {rate:.0f} docs/s;"
            f" {remaining} conflicts left at the last kill (drain {drain:.1f}s);"
            f" settled {settled:.1f}s after it (bound 2 x lease_ttl + 2 x drain + 10s = {bound:.1f}s)"
        )
        assert len(chaos.kills) >= 8
        assert settled <= bound
        wrong = [
            row["id"]
            for row in client.all_docs(db, include_docs=True, conflicts=True)
            if row["doc"].get("_conflicts") or row["doc"].get("v") != 2
        ]
        assert wrong == [], wrong[:10]
        assert len(client.all_docs(db)) == len(ids)
        assert DeadLetters(real_redis, FARM).count(db) == 0
    finally:
        farm.stop()
