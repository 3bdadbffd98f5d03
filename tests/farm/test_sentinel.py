"""Redis high availability: state, broker and results through Redis Sentinel; the master fails over in
the middle of a run, losing its last writes, and nothing is lost and no fencing token is reused."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from couchfarm.couch import CouchClient
from tests.farm.procs import Farm
from tests.farm.sentinels import MASTER, SentinelGroup
from tests.farm.test_farm import PREFIX
from tests.farm.test_farms import lww_config, winners_ok
from tests.farm.test_recovery import ready
from tests.helpers import seed_conflicts, wait_for


def tokens(log: str) -> list[int]:
    """Every fencing token a dispatcher worked under, in order: acquisitions and raises."""
    out = []
    for line in log.splitlines():
        try:
            msg = json.loads(line).get("msg", "")
        except ValueError:
            continue
        if m := re.search(r"following \S+ \(token (\d+)\)", msg):
            out.append(int(m[1]))
        elif m := re.search(r"fencing token of \S+ raised from \d+ to (\d+)", msg):
            out[-1] = int(m[1])
    return out


def test_a_sentinel_failover_mid_run_loses_nothing_and_reuses_no_token(
    tmp_path: Path, couch_url: str, client: CouchClient
) -> None:
    group = SentinelGroup(tmp_path / "redis").start()
    db = f"{PREFIX}sentinel{os.urandom(2).hex()}"
    seed_conflicts(client, db, 150)
    farm = Farm(
        tmp_path,
        couch_url,
        group.url,
        COUCHFARM_CONFIG=lww_config(tmp_path, "f"),
        COUCHFARM_REDIS_SENTINEL_MASTER=MASTER,
    )
    try:
        farm.worker("w", 2)
        ready(farm, "w")
        d1 = farm.dispatcher("d", db)
        wait_for(lambda: winners_ok(client, db), 120, "the first conflicts resolved through the sentinels")
        group.cut_replica()  # what happens from here on is lost in the failover
        d1.send_signal(signal.SIGKILL)
        farm.dispatcher("d2", db)  # takes the lease once d1's expires: a token the replica never sees
        wait_for(lambda: len(tokens(farm.log("d2"))) == 1 and "fencing token" not in farm.log("d2"), 30)
        time.sleep(1.0)  # d2 recorded its token in the database's _local mirror
        group.fail_over()
        seed_conflicts(client, db, 150, prefix="after")
        wait_for(lambda: winners_ok(client, db), 180, "resolved after the failover")
        promoted: Any = group.client("replica")
        assert promoted.info("replication")["role"] == "master"
        seen = tokens(farm.log("d")) + tokens(farm.log("d2"))
        print(f"\nfencing tokens the dispatchers worked under: {seen}")
        assert seen == sorted(set(seen)), seen  # strictly increasing: none handed out twice
        assert "raised from" in farm.log("d2")  # the counter went back in the failover and was raised
        assert not [k for k in promoted.scan_iter("couchfarm:*:dlq:entry:*")]
    finally:
        farm.stop()
        group.stop()
