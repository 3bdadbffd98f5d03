"""The rules and the dashboard against a live farm on loopback: two dispatchers, a worker pool and
``replication watch`` (real processes, started like tests/farm/procs.py does, each with its own
``COUCHFARM_METRICS_PORT``) on a real pouchdb-server and redis-server.

1. Every metric name and label that a rule or a dashboard query uses is in the ``/metrics`` output of
   those processes, with the label values the rules match on.
2. With the real Prometheus server scraping them (the rules of deploy/prometheus/alerts.yaml with
   every ``for:`` cut to 1 s): the dead-letter alert of a database is quiet, and once a dead letter is
   written it becomes pending and then firing, read through Prometheus's HTTP API.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from couchfarm import metrics
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.scan import scan
from tests.farm.procs import Farm
from tests.helpers import FARM, make_conflict, wait_for
from tests.prometheus import promql
from tests.prometheus.rules import (
    ALERTS,
    dashboard_queries,
    needs_prometheus,
    records,
    rules,
    variable_queries,
)
from workers.local_servers import PouchServer, RedisServer, free_port

pytestmark = pytest.mark.integration

DB = "obs-main"
DEEP_LEAVES = 5  #: more live leaves than deep_conflict_leaves (3)
#: label values that only a failing farm shows; the healthy farm here cannot (checked statically instead)
FAILURE_ONLY = {("couchfarm_http_errors_total", "kind"): {"connection", "server", "throttled"}}
CONFIG = """
databases:
  - name: "obs*"
    strategy: lww
    options: {field: updated_at}
    types:
      - {id_prefix: "bad-", strategy: custom, options: {function: "tests.dlq.resolvers:explode"}}
"""


def leaves(n: int) -> list[dict[str, Any]]:
    return [{"updated_at": f"2026-01-0{i + 1}T00:00:00Z", "value": i} for i in range(n)]


@dataclass
class LiveFarm:
    farm: Farm
    client: CouchClient
    redis_url: str
    ports: dict[str, int]  #: process name -> metrics port
    tmp: Path

    def scrape(self, name: str) -> str:
        return requests.get(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=10).text


@dataclass
class Exported:
    """What some /metrics pages hold: series name -> label names, (series, label) -> values."""

    labels: dict[str, set[str]] = field(default_factory=dict)
    values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)
                for label, value in sample.labels.items():
                    self.values[(sample.name, label)].add(value)
                self.samples.append((sample.name, sample.labels, sample.value))

    def labels_of(self, name: str) -> set[str] | None:
        if name in self.labels:
            return self.labels[name]
        if name in records():
            return promql.check(records()[name], self.labels_of)
        return None

    def value(self, name: str, **labels: str) -> list[float]:
        return [v for n, have, v in self.samples if n == name and labels.items() <= have.items()]


def exported(live: LiveFarm, *names: str) -> Exported:
    out = Exported()
    for name in names:
        out.add(live.scrape(name))
    return out


@pytest.fixture(scope="module")
def live(
    pouch_server: PouchServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveFarm]:
    pouch_server.ensure()
    redis.Redis.from_url(redis_server.url).flushall()
    client = CouchClient(pouch_server.url)
    for db in (DB, "obs-e2e", "rep-copy"):
        if db in client.all_dbs():
            client.delete_db(db)
    client.create_db(DB)
    for i in range(3):
        make_conflict(client, DB, f"good-{i}", leaves(2))
    make_conflict(client, DB, "deep-0", leaves(DEEP_LEAVES))
    make_conflict(client, DB, "bad-0", leaves(2))
    client.create_db("_replicator")
    source, target = f"{pouch_server.url}/{DB}", f"{pouch_server.url}/rep-copy"
    replication = {"source": source, "target": target, "create_target": True}
    client.put("_replicator", {"_id": f"obs-rep-{uuid.uuid4().hex[:8]}", **replication})
    tmp = tmp_path_factory.mktemp("live")
    (tmp / "farm.yaml").write_text(CONFIG)
    ports = {name: free_port() for name in ("d1", "d2", "w", "watch")}
    farm = Farm(tmp, pouch_server.url, redis_server.url, COUCHFARM_CONFIG=str(tmp / "farm.yaml"))
    try:
        for name in ("d1", "d2"):
            farm.dispatcher(name, "obs*", COUCHFARM_METRICS_PORT=str(ports[name]))
        farm.worker("w", 2, COUCHFARM_METRICS_PORT=str(ports["w"]))
        farm.start(
            "watch", "replication", "watch", "--interval", "1", COUCHFARM_METRICS_PORT=str(ports["watch"])
        )
        yield LiveFarm(farm, client, redis_server.url, ports, tmp)
    finally:
        farm.stop()


def settled(live: LiveFarm) -> Exported | None:
    """The farm's metrics once it has handled the seeded database: a dead letter, a deep conflict,
    the good documents resolved, the watch's first events."""
    store = DeadLetters(redis.Redis.from_url(live.redis_url, decode_responses=True), FARM)
    if store.count(DB) != 1 or len(list(scan(live.client, DB))) != 1:
        return None
    seen = exported(live, "d1", "d2", "w", "watch")
    ready = (
        seen.value("couchfarm_deep_conflicts_total", db=DB)
        and seen.value("couchfarm_replication_events_total")
        and 1.0 in seen.value("couchfarm_dead_letters", db=DB)
        and seen.value("couchfarm_documents_total", outcome="dead_lettered")
    )
    return seen if ready else None


def every_expression() -> list[tuple[str, str]]:
    out = [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]
    out += [(f"panel {title!r}", expr) for title, expr in dashboard_queries()]
    out += [
        (f"variable {name}", f"count by ({label}) ({selector})")
        for name, selector, label in variable_queries()
    ]
    return out


def test_every_metric_and_label_the_rules_and_dashboard_use_is_exported(live: LiveFarm) -> None:
    seen = wait_for(lambda: settled(live), 120, "the farm to settle the seeded database")
    checked = 0
    for where, expr in every_expression():
        try:
            promql.check(expr, seen.labels_of)
        except promql.PromQLError as exc:
            raise AssertionError(f"{where}: {exc}") from None
        for sel in promql.selectors(expr):
            for label, op, value in sel.matchers:
                if op not in ("=", "=~") or "$" in value or sel.name in records():
                    continue
                wanted = promql.values(value)
                assert wanted is not None, f"{where}: {label}{op}{value!r} is not a plain alternation"
                missing = set(wanted) - seen.values[(sel.name, label)]
                missing -= FAILURE_ONLY.get((sel.name, label), set())
                assert not missing, f"{where}: no {sel.name} with {label} in {sorted(missing)}"
                checked += 1
    assert checked >= 10  # checkpoint, status, role, state and outcome values were compared


def test_failure_only_label_values_are_the_ones_couchfarm_gives_failures() -> None:
    assert {metrics.http_kind(None), metrics.http_kind(503), metrics.http_kind(429)} == FAILURE_ONLY[
        ("couchfarm_http_errors_total", "kind")
    ]


def test_one_dispatcher_reports_a_database_and_every_role_is_up(live: LiveFarm) -> None:
    wait_for(lambda: settled(live), 120, "the farm to settle the seeded database")
    by_process = {name: exported(live, name) for name in ("d1", "d2", "w", "watch")}
    followed = sorted(by_process[d].value("couchfarm_database_followed", db=DB)[0] for d in ("d1", "d2"))
    assert followed == [0.0, 1.0]  # both discovered it, one follows it
    holder = next(
        d for d in ("d1", "d2") if by_process[d].value("couchfarm_database_followed", db=DB) == [1.0]
    )
    other = "d2" if holder == "d1" else "d1"
    assert by_process[holder].value("couchfarm_lag", db=DB) and not by_process[other].value(
        "couchfarm_lag", db=DB
    )
    assert by_process[holder].value("couchfarm_paused", db=DB) == [0.0]
    roles = {"d1": "dispatcher", "d2": "dispatcher", "w": "worker", "watch": "replication_watch"}
    for name, role in roles.items():
        assert by_process[name].value("couchfarm_up", farm=FARM, role=role) == [1.0], name
    assert by_process["w"].value("couchfarm_deliveries_total", farm=FARM)[0] >= 1
    for d in ("d1", "d2"):
        assert by_process[d].value("couchfarm_redis_up", farm=FARM) == [1.0]
        assert by_process[d].value("couchfarm_redis_memory_used_bytes", farm=FARM)[0] > 0
    node = next(iter(by_process["watch"].values[("couchfarm_replication_jobs", "node")]))
    assert by_process["watch"].value("couchfarm_replication_jobs", node=node, state="failed") == [0.0]


# -- with a real Prometheus ------------------------------------------------------------------------


def fast_rules(path: Path) -> Path:
    """deploy/prometheus/alerts.yaml with every ``for:`` cut to 1 s: the expressions stay as shipped."""
    data = yaml.safe_load(ALERTS.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Prometheus:
    """The prometheus server on a free loopback port, with its own config and data directory."""

    def __init__(self, tmp: Path, targets: list[str], rule_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
            "scrape_configs": [{"job_name": "couchfarm", "static_configs": [{"targets": targets}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).ok
        except requests.ConnectionError:
            assert self.proc.poll() is None, self.log.read_text()
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return [
            a
            for a in answer["data"]["alerts"]
            if a["labels"]["alertname"] == name and labels.items() <= a["labels"].items()
        ]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@needs_prometheus
def test_the_dead_letter_alert_fires_in_prometheus_after_a_dead_letter(live: LiveFarm) -> None:
    tmp = live.tmp / "prometheus"
    tmp.mkdir()
    targets = [f"127.0.0.1:{port}" for port in live.ports.values()]
    prom = Prometheus(tmp, targets, fast_rules(tmp / "alerts.yaml"))
    try:
        wait_for(prom.ready, 60, "Prometheus ready")
        db = "obs-e2e"
        live.client.create_db(db)
        make_conflict(live.client, db, "good-0", leaves(2))
        # quiet: the holder reports 0 dead letters for a while, and the rule has seen it
        wait_for(
            lambda: (
                prom.query(f'min_over_time(couchfarm_dead_letters{{db="{db}"}}[1m]) == 0')
                and prom.query(f'count_over_time(couchfarm_dead_letters{{db="{db}"}}[1m]) >= 5')
            ),
            90,
            f"Prometheus to scrape {db}'s dead letters at 0",
        )
        up = prom.query('count by (role) (couchfarm_up{farm="test"})')
        assert {r["metric"]["role"]: r["value"][1] for r in up} == {
            "dispatcher": "2",
            "worker": "1",
            "replication_watch": "1",
        }
        time.sleep(3)  # several evaluations of the rule on those samples
        assert prom.alerts("CouchfarmDeadLettersIncreasing", db=db) == []

        make_conflict(live.client, db, "bad-1", leaves(2))
        store = DeadLetters(redis.Redis.from_url(live.redis_url, decode_responses=True), FARM)
        wait_for(lambda: store.count(db) == 1, 60, "bad-1 dead-lettered")
        [pending] = wait_for(
            lambda: prom.alerts("CouchfarmDeadLettersIncreasing", db=db), 60, "the alert to become active"
        )
        assert pending["state"] in ("pending", "firing")
        assert pending["labels"] == {
            "alertname": "CouchfarmDeadLettersIncreasing",
            "farm": FARM,
            "db": db,
            "severity": "warning",
        }
        assert pending["annotations"]["description"].endswith("1 wait in the dead-letter store.")
        assert pending["annotations"]["runbook_url"] == "docs/runbook.md#couchfarmdeadlettersincreasing"
        wait_for(
            lambda: [
                a for a in prom.alerts("CouchfarmDeadLettersIncreasing", db=db) if a["state"] == "firing"
            ],
            30,
            "the alert to fire",
        )
    finally:
        prom.stop()
