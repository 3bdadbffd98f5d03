"""Farm identity and durable state: farms of two clusters on one Redis and one broker, a Redis that
loses its data, and processes that refuse to run without their state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from couchfarm import factory
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from tests.farm.procs import Farm
from tests.farm.test_farm import PREFIX, conflicted
from tests.farm.test_recovery import ready
from tests.helpers import FARM, seed_conflicts, wait_for
from workers.local_servers import PouchServer

DOCS = 300


@pytest.fixture
def second_server() -> Iterator[PouchServer]:
    with PouchServer().start() as server:
        yield server


def lww_config(tmp: Path, name: str, extra: str = "") -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(
        "databases:\n  - name: 'farm*'\n    strategy: lww\n    options: {field: updated_at}\n" + extra
    )
    return str(path)


def winners_ok(client: CouchClient, db: str) -> bool:
    rows = client.all_docs(db, include_docs=True, conflicts=True)
    return bool(rows) and all(not r["doc"].get("_conflicts") and r["doc"].get("v") == 2 for r in rows)


def couchfarm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_two_farms_of_two_clusters_share_one_redis(
    tmp_path: Path, couch_url: str, second_server: PouchServer, redis_url: str, real_redis: Any
) -> None:
    """Same database name on two servers, one Redis and one broker: each farm (named from its
    server's uuid) resolves exactly its own server's conflicts, at the same time."""
    db = f"{PREFIX}orders{os.urandom(2).hex()}"
    clients = {"a": CouchClient(couch_url), "b": CouchClient(second_server.url)}
    for client in clients.values():
        seed_conflicts(client, db, DOCS)
    names = {k: factory.farm_id(Settings.load(env={}), c) for k, c in clients.items()}
    assert names["a"] != names["b"] and all(n.startswith("cf-") for n in names.values())
    farms = []
    try:
        for key, url in (("a", couch_url), ("b", second_server.url)):
            farm = Farm(tmp_path / key, url, redis_url, COUCHFARM_CONFIG=lww_config(tmp_path, key))
            (tmp_path / key).mkdir()
            del farm.env["COUCHFARM_FARM"]  # derived from the server's uuid
            farms.append(farm)
            farm.worker("w", 2)
            farm.dispatcher("d", db)
        wait_for(lambda: all(winners_ok(c, db) for c in clients.values()), 180, "both servers resolved")
        for key, farm in zip("ab", farms, strict=True):
            assert f"couchfarm.{names[key]}" in farm.log("w")  # the worker consumed its farm's queue
            state = FarmState(real_redis, names[key])
            assert state.checkpoint(db).known and db in state.databases()
            assert DeadLetters(real_redis, names[key]).count() == 0
        prefixes = {k.split(":")[1] for k in real_redis.scan_iter("couchfarm:*")}
        assert prefixes == set(names.values())  # nothing shared, nothing unnamed
    finally:
        for farm in farms:
            farm.stop()


def test_redis_losing_its_data_keeps_dead_letters_and_pauses(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient, real_redis: Any
) -> None:
    stem = f"{PREFIX}dur{os.urandom(2).hex()}x"
    good, bad, held = f"{stem}good", f"{stem}bad", f"{stem}held"
    extra = (
        f"  - name: '{bad}'\n    strategy: custom\n    options: {{function: 'tests.dlq.resolvers:explode'}}\n"
    )
    path = tmp_path / "farm.yaml"
    path.write_text(
        f"databases:\n{extra}  - name: '{stem}*'\n    strategy: lww\n    options: {{field: updated_at}}\n"
    )
    farm = Farm(tmp_path, couch_url, redis_url, COUCHFARM_CONFIG=str(path), COUCHFARM_MAX_RETRIES="0")
    try:
        seed_conflicts(client, good, 20)
        seed_conflicts(client, bad, 3)
        seed_conflicts(client, held, 5)
        paused = couchfarm(farm.env, "conflicts", "pause", held)
        assert paused.returncode == 0, paused.stderr
        farm.worker("w", 2)
        ready(farm, "w")
        farm.dispatcher("d", f"{stem}*")
        dead = DeadLetters(real_redis, FARM)
        wait_for(lambda: dead.count(bad) == 3 and winners_ok(client, good), 90, "resolved and dead-lettered")
        farm.stop()

        real_redis.flushall()  # a lost volume: no checkpoint, no dead letter, no pause left in Redis
        listed = couchfarm(farm.env, "dlq", "list", "--json")  # the command puts them back itself
        assert listed.returncode == 0, listed.stderr
        assert sorted(e["doc_id"] for e in json.loads(listed.stdout)) == sorted(
            r["id"] for r in client.all_docs(bad)
        )
        real_redis.flushall()
        seed_conflicts(client, good, 10, prefix="after")
        farm.worker("w2", 2)
        farm.dispatcher("d2", f"{stem}*")
        wait_for(lambda: winners_ok(client, good), 90, "new conflicts resolved after the data loss")
        assert dead.count(bad) == 3  # restored by the dispatcher, before it followed anything
        assert FarmState(real_redis, FARM).is_paused(held)
        time.sleep(2)
        assert conflicted(client, held) == 5  # still left to people
        status = json.loads(couchfarm(farm.env, "status", "--json", "--db", held).stdout)
        assert status[0]["paused"] and status[0]["farm"] == FARM
    finally:
        farm.stop()


@pytest.mark.parametrize("command", ["worker", "dispatch"])
def test_no_state_redis_no_process(command: str, couch_url: str, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    env.update(COUCHFARM_COUCH_URL=couch_url, COUCHFARM_BROKER_URL=redis_url, COUCHFARM_FARM=FARM)
    out = couchfarm(env, command, *(["--db", "x"] if command == "dispatch" else []))
    assert out.returncode == 2
    assert "state Redis" in out.stderr and "COUCHFARM_REDIS_URL" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_batch_for_another_farm_is_refused_loudly(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient
) -> None:
    db = f"{PREFIX}stray{os.urandom(2).hex()}"
    seed_conflicts(client, db, 2)
    farm = Farm(tmp_path, couch_url, redis_url, COUCHFARM_CONFIG=lww_config(tmp_path, "f"))
    try:
        farm.worker("w", 1)
        ready(farm, "w")
        from workers.farm import celery_app

        settings = factory.with_farm(Settings(couch_url=couch_url, redis_url=redis_url, farm=FARM))
        celery_app(settings).send_task(
            "couchfarm.resolve_batch",
            args=[db, ["doc-00000", "doc-00001"], "corr"],
            kwargs={"batch_id": "b1", "farm": "elsewhere"},
            queue=f"couchfarm.{FARM}",
        )
        wait_for(lambda: "belongs to farm elsewhere" in farm.log("w"), 30, "the refusal")
        assert f"not to this worker's farm {FARM}" in farm.log("w")
        assert conflicted(client, db) == 2  # nothing written for another farm
    finally:
        farm.stop()
