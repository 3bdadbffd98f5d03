"""Bounded Redis: resolving 10,000 documents leaves only bounded keys behind, under a documented figure.

docs/architecture.md ("What Redis holds") states the figure; every key is one couchfarm/keys.py
declares (with its bound) or one of Celery's own.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from couchfarm import keys
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.ledger import Ledger
from tests.farm.procs import Farm
from tests.farm.test_farm import PREFIX
from tests.farm.test_recovery import farm_config, ready
from tests.helpers import FARM, seed_conflicts, wait_for

DOCS = int(os.environ.get("TEST_MEMORY_DOCS", 10_000))
LIMIT_MB = 8.0  #: docs/architecture.md: Redis grows by less than this for 10,000 resolved documents
#: kombu's routing tables and its unacknowledged-message bookkeeping (bounded by messages in flight)
CELERY_KEYS = re.compile(r"^(_kombu\.binding.*|unacked(_index|_mutex)?|celery)$")


def declared(key: str) -> bool:
    for template in (v for k, v in vars(keys).items() if k.isupper() and k != "PREFIX"):
        pattern = re.escape(template.replace("{farm}", FARM))
        pattern = re.sub(r"\\\{[a-z]+\\\}", ".+", pattern)
        if re.fullmatch(pattern, key):
            return True
    return bool(CELERY_KEYS.match(key))


def used_mb(r: Any) -> float:
    return float(r.info("memory")["used_memory"]) / 2**20


def test_ten_thousand_documents_leave_bounded_keys(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient, real_redis: Any
) -> None:
    db = f"{PREFIX}mem{int(time.time()) % 10_000}"
    seed_conflicts(client, db, DOCS)
    before = used_mb(real_redis)
    farm = Farm(
        tmp_path,
        couch_url,
        redis_url,
        COUCHFARM_CONFIG=farm_config(tmp_path, "newest"),
        COUCHFARM_BATCH_SIZE="100",
    )
    try:
        farm.worker("w", 2)
        ready(farm, "w")
        farm.dispatcher("d", db)
        ledger = Ledger(real_redis, FARM)

        def settled() -> bool:
            cp = real_redis.hgetall(keys.CHECKPOINT.format(farm=FARM, db=db))
            return bool(cp) and cp.get("done") == cp.get("read") and not ledger.batches(db)

        wait_for(
            lambda: ledger.batches(db) or real_redis.hget(keys.CHECKPOINT.format(farm=FARM, db=db), "read"),
            60,
        )
        wait_for(settled, 300, "10,000 documents resolved")
        grown = used_mb(real_redis) - before
        found = sorted(real_redis.scan_iter(count=1000))
        undeclared = [k for k in found if not declared(k)]
        written = [k for k in found if k.startswith(keys.WRITTEN.format(farm=FARM, db=db, doc=""))]
        print(
            f"\nRedis grew by {grown:.2f} MB for {DOCS} documents"
            f" ({len(found)} keys, {len(written)} written:*)"
        )
        assert undeclared == [], undeclared
        assert grown < LIMIT_MB
        assert all(0 < real_redis.ttl(k) <= 3600 for k in written[:200])  # they expire
        assert not [k for k in found if k.startswith("celery-task-meta-")]  # no results stored
        assert len(ledger.inflight(db)) == 0 and DeadLetters(real_redis, FARM).count(db) == 0
    finally:
        farm.stop()
