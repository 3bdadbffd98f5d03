"""Thousands of databases: a database per tenant, most of them idle. Two dispatchers share 1,000
databases with a few conflicts each through a bounded pool of feed readers woken by the change
signal; every conflict is resolved, the circuit breaker never opens, the leases are shared about
evenly, and a database created afterwards is picked up within the discovery interval."""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from couchfarm import keys
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from tests.farm.procs import FAST, Farm
from tests.farm.test_farm import PREFIX
from tests.farm.test_farms import lww_config, winners_ok
from tests.farm.test_recovery import ready
from tests.helpers import FARM, seed_conflicts, wait_for

DATABASES = 1000
PER_DB = 2


def still_conflicted(client: CouchClient, dbs: set[str]) -> set[str]:
    with ThreadPoolExecutor(4) as pool:
        return {
            db for db, ok in zip(dbs, pool.map(lambda d: winners_ok(client, d), dbs), strict=True) if not ok
        }


@pytest.mark.timeout(900)
def test_a_thousand_databases_two_dispatchers_one_worker(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient, real_redis: Any
) -> None:
    stem = f"{PREFIX}t{os.urandom(2).hex()}x"
    names = [f"{stem}{i:04d}" for i in range(DATABASES)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda db: seed_conflicts(client, db, PER_DB), names))
    farm = Farm(tmp_path, couch_url, redis_url, COUCHFARM_CONFIG=lww_config(tmp_path, "f"))
    try:
        farm.worker("w", 2)
        ready(farm, "w")
        started = time.monotonic()
        farm.dispatcher("d1", f"{stem}*")
        farm.dispatcher("d2", f"{stem}*")
        left = set(names)

        def drained() -> bool:
            left.intersection_update(still_conflicted(client, left))
            return not left

        wait_for(drained, 600, f"{DATABASES * PER_DB} conflicts in {DATABASES} databases resolved")
        seconds = time.monotonic() - started
        holders = Counter(
            str(real_redis.get(keys.LEASE.format(farm=FARM, db=db)) or "").split("#")[0] for db in names
        )
        print(
            f"\n{DATABASES} databases x {PER_DB} conflicts resolved in {seconds:.1f}s"
            f" ({DATABASES * PER_DB / seconds:.0f} docs/s); leases per dispatcher: {sorted(holders.values())}"
        )
        assert "" not in holders and len(holders) == 2
        assert all(abs(n - DATABASES / 2) <= DATABASES * 0.1 for n in holders.values()), holders
        for name in ("d1", "d2"):
            assert "circuit open" not in farm.log(name)
        assert DeadLetters(real_redis, FARM).count() == 0
        # a database created now is picked up within the discovery interval plus its drain
        late = f"{stem}late"
        created = time.monotonic()
        seed_conflicts(client, late, PER_DB)
        wait_for(lambda: winners_ok(client, late), 60, "the new database resolved")
        picked = time.monotonic() - created
        print(f"a database created afterwards was resolved {picked:.1f}s later")
        assert picked < float(FAST["COUCHFARM_DISCOVERY_INTERVAL"]) + 10
    finally:
        farm.stop()
