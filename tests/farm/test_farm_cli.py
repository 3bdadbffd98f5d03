"""``couchfarm status`` and ``couchfarm checkpoint`` on real Redis and pouchdb-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import redis

from couchfarm.couch import CouchClient
from couchfarm.dispatch.follower import MIRROR
from couchfarm.ledger import Ledger
from couchfarm.state import FarmState
from tests.helpers import FARM
from tests.trace.proxy import RecordingProxy
from workers.local_servers import PouchServer


def couchfarm(couch_url: str, redis_url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COUCHFARM_COUCH_URL": couch_url, "COUCHFARM_REDIS_URL": redis_url, **extra}
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_status_and_checkpoint_commands(couch_url: str, redis_url: str, client: CouchClient, db: str) -> None:
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
    lease = state.acquire(db, "host:1:abc", ttl=30)
    assert lease is not None
    Ledger(state.redis, FARM).create(lease, ["a", "b"], 7, "corr")
    state.write_checkpoint(lease, "read", 7)
    client.put_local(db, MIRROR, {"done": 3})
    out = couchfarm(couch_url, redis_url, "status", "--json")
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["db"] == db and row["lease"]["holder"].startswith("host:1:abc#") and row["lease"]["token"] == 1
    assert row["checkpoint"]["read"] == 7 and row["batches"]["queued"] == 1
    assert row["inflight_docs"] == 2 and row["dead_letters"] == 0
    table = couchfarm(couch_url, redis_url, "status")
    assert db in table.stdout and "host:1:abc" in table.stdout
    shown = json.loads(couchfarm(couch_url, redis_url, "checkpoint", "show", db).stdout)
    assert shown["read"] == 7 and shown["mirror"] == 3
    assert couchfarm(couch_url, redis_url, "checkpoint", "reset", db, "--yes").returncode == 0
    assert (
        not state.checkpoint(db).known
        and client.get_local(db, MIRROR) is None
        and not Ledger(state.redis, FARM).inflight(db)
    )


def test_commands_that_need_redis_say_so(couch_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    env["COUCHFARM_COUCH_URL"] = couch_url
    out = subprocess.run([sys.executable, "-m", "workers", "status"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "COUCHFARM_REDIS_URL" in out.stderr


def test_checkpoint_of_a_database_never_followed_is_refused(
    couch_url: str, redis_url: str, client: CouchClient, db: str
) -> None:
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
    for verb in (["show", db], ["reset", db, "--yes"]):
        out = couchfarm(couch_url, redis_url, "checkpoint", *verb)
        assert out.returncode == 1 and f"the farm never followed {db}" in out.stderr, out.stderr
    assert not state.checkpoint(db).known and client.get_local(db, MIRROR) is None
    client.put_local(db, MIRROR, {"done": 4})  # Redis lost its data, the mirror says it was followed
    shown = couchfarm(couch_url, redis_url, "checkpoint", "show", db)
    assert shown.returncode == 0 and json.loads(shown.stdout)["mirror"] == 4


def test_checkpoint_reset_removes_the_mirror_before_redis(
    pouch_server: PouchServer, redis_url: str, client: CouchClient, db: str
) -> None:
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
    lease = state.acquire(db, "host:1:abc", ttl=30)
    assert lease is not None
    state.write_checkpoint(lease, "read", 7)
    client.put_local(db, MIRROR, {"done": 3})

    def refuse_mirror_delete(method: str, path: str) -> Any:
        return (503, {"error": "unavailable"}) if method == "DELETE" and MIRROR in path else None

    with RecordingProxy(pouch_server.plain_url, refuse_mirror_delete) as proxy:
        url = f"http://{pouch_server.user}:{pouch_server.password}@127.0.0.1:{proxy.port}"
        out = couchfarm(url, redis_url, "checkpoint", "reset", db, "--yes", COUCHFARM_COUCH_RETRIES="1")
    assert out.returncode == 4 and "Unavailable" in out.stderr  # README "Exit codes": unreachable
    # the mirror could not go, so Redis was not touched: no holder can resume from a stale mirror
    assert state.checkpoint(db).read == 7 and client.get_local(db, MIRROR) is not None
    assert couchfarm(pouch_server.url, redis_url, "checkpoint", "reset", db, "--yes").returncode == 0
    assert not state.checkpoint(db).known and client.get_local(db, MIRROR) is None
