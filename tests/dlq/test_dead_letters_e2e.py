"""Dead letters end to end: four reasons, Flower's API, metrics, replay, and no secret anywhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.ledger import Ledger
from couchfarm.scan import scan
from tests.farm.procs import Farm
from tests.helpers import FARM, make_conflict, wait_for
from workers.local_servers import PouchServer, RedisServer, free_port

COUCH_PW = "Pw-s3cret-XYZ"
REDIS_PW = "Rd-s3cret-XYZ"
FLOWER_PW = "Fl-s3cret-XYZ"
DB = "dlqe2e"
UI_URL = "http://ops.example:5556/"
LEAVES = [
    {"updated_at": "2026-01-01T00:00:00Z", "value": 1},
    {"updated_at": "2026-02-01T00:00:00Z", "value": 2},
]


def write_config(path: Path, schema: Path, fixed: bool) -> None:
    raising = "newest" if fixed else "explode"
    storming = "newest" if fixed else "storm"
    path.write_text(f"""
databases:
  - name: {DB}
    strategy: custom
    options: {{function: 'tests.dlq.resolvers:newest'}}
    types:
      - {{id_prefix: 'schema-', schema: '{schema}'}}
      - {{id_prefix: 'custom-', strategy: custom, options: {{function: 'tests.dlq.resolvers:{raising}'}}}}
      - {{id_prefix: 'storm-', strategy: custom, options: {{function: 'tests.dlq.resolvers:{storming}'}}}}
""")


def write_schema(path: Path, maximum: int) -> None:
    path.write_text(
        json.dumps({"type": "object", "properties": {"value": {"type": "integer", "maximum": maximum}}})
    )


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PouchServer, RedisServer]]:
    pouch = PouchServer(password=COUCH_PW).start()
    redis_server = RedisServer(password=REDIS_PW).start()
    yield pouch, redis_server
    pouch.stop()
    redis_server.stop()


def seed(client: CouchClient) -> None:
    client.create_db(DB)
    for name in ("schema-0", "custom-0", "vdu-0", "storm-0", *(f"good-{i}" for i in range(5))):
        leaves = [dict(leaf) for leaf in LEAVES]
        if name == "schema-0":
            leaves[1]["value"] = 500
        if name == "vdu-0":
            leaves[1]["reject"] = True  # the newest leaf: the merge carries it, the VDU refuses it
        make_conflict(client, DB, name, leaves, hashes=["f" * 32, "0" * 32])  # winner: the older leaf
    guard = "function(n,o,u){ if (n.reject) { throw({forbidden: 'rejected by guard'}); } }"
    client.put(DB, {"_id": "_design/guard", "validate_doc_update": guard})


def flower_get(port: int, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", auth=("ops", FLOWER_PW), timeout=10)


def metric(port: int, name: str, **labels: str) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_four_reasons_flower_metrics_replay_and_no_secrets(
    servers: tuple[PouchServer, RedisServer], tmp_path: Path
) -> None:
    pouch, redis_server = servers
    client = CouchClient(pouch.url)
    seed(client)
    schema, config, fixed = tmp_path / "schema.json", tmp_path / "farm.yaml", tmp_path / "fixed.yaml"
    write_schema(schema, 100)
    write_config(config, schema, fixed=False)
    write_config(fixed, schema, fixed=True)
    flower_port, worker_metrics, dispatcher_metrics = free_port(), free_port(), free_port()
    farm = Farm(
        tmp_path,
        pouch.url,
        redis_server.url,
        COUCHFARM_CONFIG=str(config),
        COUCHFARM_FLOWER_USER="ops",
        COUCHFARM_FLOWER_PASSWORD=FLOWER_PW,
        COUCHFARM_MAX_RETRIES="3",
        COUCHFARM_UI_URL=UI_URL,
        HOME=str(tmp_path),
    )
    try:
        farm.start("flower", "flower", "--port", str(flower_port))
        wait_for(lambda: _ok(lambda: flower_get(flower_port, "/healthcheck")), 60, "Flower up")
        farm.worker("w", 2, COUCHFARM_METRICS_PORT=str(worker_metrics))
        farm.dispatcher("d", DB, COUCHFARM_METRICS_PORT=str(dispatcher_metrics))
        store = DeadLetters(_redis(redis_server.url), FARM)
        wait_for(lambda: store.count(DB) == 4, 90, "four dead letters")
        entries = {e.doc_id: e for e in store.list(DB)}
        assert entries["schema-0"].error == "InvalidDocument" and "value" in entries["schema-0"].reason
        assert (
            entries["custom-0"].error == "ResolverError"
            and "explode cannot merge" in entries["custom-0"].reason
        )
        assert "rejected by guard" in entries["vdu-0"].reason
        assert (
            "still failing after 3 retries" in entries["storm-0"].reason and entries["storm-0"].attempts == 4
        )
        assert all(e.correlation_id for e in entries.values())
        wait_for(lambda: len(list(scan(client, DB))) == 4, 60, "the five good documents resolved")

        listed = json.loads(run_cli(farm.env, "dlq", "list", "--json").stdout)
        assert {e["doc_id"] for e in listed} == set(entries)

        def flower_dead() -> dict[str, Any]:
            tasks = flower_get(flower_port, "/api/tasks?state=DEAD_LETTERED").json()
            shown = " ".join(str(t.get("args")) for t in tasks.values())
            return tasks if all(doc_id in shown for doc_id in entries) else {}

        dead_tasks = wait_for(flower_dead, 30, "four DEAD_LETTERED tasks in Flower")
        shown = " ".join(str(t.get("args")) for t in dead_tasks.values())
        for doc_id, entry in entries.items():
            assert doc_id in shown and entry.reason[:40] in shown
        assert all(t["state"] == "DEAD_LETTERED" for t in dead_tasks.values())
        links = " ".join(str(t.get("kwargs")) for t in dead_tasks.values())
        for entry in entries.values():  # each task links to its entry's page in `couchfarm ui`
            assert f"{UI_URL}dead-letters/{entry.id}" in links
        found = flower_get(flower_port, "/api/tasks?search=storm-0").json()
        assert any("storm-0" in str(t.get("args")) for t in found.values())

        dead_count = int(store.redis.get("couchfarm:test:dlq:count"))  # every dead-letter write ever made
        assert metric(worker_metrics, "couchfarm_documents_total", outcome="dead_lettered") == dead_count
        assert metric(worker_metrics, "couchfarm_documents_total", outcome="resolved") == 5
        assert metric(worker_metrics, "couchfarm_documents_total", outcome="retry") >= 3
        assert metric(dispatcher_metrics, "couchfarm_conflicts_detected_total", db=DB) >= 9
        wait_for(lambda: metric(dispatcher_metrics, "couchfarm_dead_letters", db=DB) == 4, 20, "dlq gauge")

        # fix the schema and the validation function; replay one entry from Flower (a task)
        write_schema(schema, 1000)
        guard = client.get(DB, "_design/guard")
        client.http.request("DELETE", f"{DB}/_design/guard", params={"rev": guard["_rev"]})
        started = requests.post(
            f"http://127.0.0.1:{flower_port}/api/task/async-apply/couchfarm.replay_dead_letters",
            json={"kwargs": {"entry_id": entries["vdu-0"].id}},
            auth=("ops", FLOWER_PW),
            timeout=10,
        )
        assert started.ok, started.text
        wait_for(lambda: store.get(entries["vdu-0"].id) is None, 30, "vdu-0 replayed from Flower")
        # stop the farm, fix the strategies, replay the rest from the command line
        # the dispatcher first (no new batches), then the worker, which may hold a retry's countdown:
        # Celery's soft shutdown keeps it up to 30 s for that (workers/celery_app.py)
        for stopping in ("d", "w"):
            for name, proc in farm.procs:
                if name == stopping:
                    proc.terminate()
                    proc.wait(45)
        replayed = run_cli(farm.env, "dlq", "replay", "--all", "--config", str(fixed))
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert store.count() == 0
        assert list(scan(client, DB)) == []

        pages = [
            flower_get(flower_port, p).text for p in ("/", "/tasks", "/broker", "/workers", "/api/tasks")
        ]
        workers = flower_get(flower_port, "/api/workers").json()
        pages += [flower_get(flower_port, f"/worker/{name}").text for name in workers] + [json.dumps(workers)]
        everything = "\n".join(
            [
                *(farm.log(n) for n, _ in farm.procs),
                json.dumps(listed),
                *pages,
                json.dumps([e.as_json() for e in entries.values()]),
            ]
        )
        for secret in (COUCH_PW, REDIS_PW, FLOWER_PW):
            assert secret not in everything, f"{secret} leaked"
        assert re.search(r'"correlation_id": "[0-9a-f]{16}"', farm.log("w"))  # carried into the task logs
    finally:
        farm.stop()


def _ok(call: Any) -> bool:
    try:
        return bool(call().ok)
    except requests.RequestException:
        return False


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True)


def test_kill_between_dead_letter_and_ack_leaves_one_entry(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient, db: str
) -> None:
    config = tmp_path / "farm.yaml"
    config.write_text(
        f"databases:\n  - name: {db}\n    strategy: custom\n"
        "    options: {function: 'tests.dlq.resolvers:explode'}\n"
    )
    make_conflict(client, db, "boom", LEAVES)
    marker = tmp_path / "fired"
    farm = Farm(
        tmp_path,
        couch_url,
        redis_url,
        COUCHFARM_CONFIG=str(config),
        COUCHFARM_FAILPOINT=f"after_dead_letter:{marker}",
    )
    try:
        farm.worker("w", 1)
        farm.dispatcher("d", db)
        wait_for(marker.exists, 60, "the worker killed right after writing the dead letter")
        store = DeadLetters(_redis(redis_url), FARM)
        wait_for(lambda: not Ledger(store.redis, FARM).batches(db), 60, "the redelivered batch completed")
        (entry,) = store.list(db)
        assert entry.doc_id == "boom" and entry.attempts == 1
        assert int(store.redis.get("couchfarm:test:dlq:count")) == 1  # the redelivery wrote nothing
    finally:
        farm.stop()
        shutil.rmtree(tmp_path / "unused", ignore_errors=True)
