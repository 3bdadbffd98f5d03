"""The metrics the alert rules stand on, without servers: what the dispatcher reports each round (which
databases it follows, whether its Redis answers), what a paused database reports, and what a poll of
``replication watch`` sets. The same names are checked on a live farm in test_live.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
from prometheus_client import REGISTRY

from couchfarm import metrics
from couchfarm.dispatch import dispatcher as dispatcher_module
from couchfarm.dispatch.dispatcher import Dispatcher
from couchfarm.ledger import Ledger
from couchfarm.settings import Settings
from couchfarm.state import Checkpoint, FarmState, Lease
from tests.replication.fakes import fake_client
from workers.local_servers import free_port

FARM = "unit"


@pytest.fixture(autouse=True)
def _farm() -> Iterator[None]:
    old = metrics.FARM[0]
    metrics.FARM[0] = FARM
    yield
    metrics.FARM[0] = old


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"farm": FARM, **labels})


def gauges(db: str, lag: int, paused: bool = False) -> None:
    metrics.on_event(
        "gauges",
        db=db,
        lag=lag,
        checkpoint=Checkpoint.from_hash({}),
        overlap=0,
        dead_letters=2,
        batches=[],
        paused=paused,
    )


def test_followed_databases_report_1_others_0_and_lose_the_follower_gauges() -> None:
    gauges("m-a", 5)
    gauges("m-b", 7)
    metrics.on_event("followed", dbs=["m-a", "m-b"], held=["m-a"])
    assert value("couchfarm_database_followed", db="m-a") == 1
    assert value("couchfarm_database_followed", db="m-b") == 0
    # only the lease holder reports a database's gauges: a dispatcher that let go of m-b drops its
    # last values, so a dashboard's max() never shows a former holder's stale lag
    assert value("couchfarm_lag", db="m-a") == 5
    assert value("couchfarm_lag", db="m-b") is None
    assert value("couchfarm_dead_letters", db="m-b") is None
    assert value("couchfarm_batches_open", db="m-b", status="queued") is None
    metrics.on_event("followed", dbs=["m-a"], held=[])  # m-b deleted, m-a's lease lost
    assert value("couchfarm_database_followed", db="m-b") is None
    assert value("couchfarm_database_followed", db="m-a") == 0
    assert value("couchfarm_lag", db="m-a") is None
    gauges("m-c", 3)
    metrics.on_event("followed", dbs=["m-a", "m-c"], held=["m-c"])
    metrics.on_event("followed", dbs=["m-a"], held=[])  # m-c deleted while followed
    assert value("couchfarm_database_followed", db="m-c") is None
    assert value("couchfarm_lag", db="m-c") is None
    assert value("couchfarm_checkpoint_age_seconds", db="m-c", checkpoint="done") is None


def test_a_new_lease_holder_starts_its_counters_at_zero() -> None:
    metrics.on_event("lease_acquired", db="m-z")
    assert value("couchfarm_lease_events_total", db="m-z", event="acquired") == 1
    for name in ("couchfarm_batches_sent_total", "couchfarm_publish_failures_total"):
        assert value(name, db="m-z") == 0, name
    assert value("couchfarm_batches_resent_total", db="m-z", status="started") == 0
    assert value("couchfarm_lease_events_total", db="m-z", event="lost") == 0


def test_a_done_checkpoint_never_written_ages_from_when_it_was_first_followed() -> None:
    gauges("m-new", 4)
    first = value("couchfarm_checkpoint_age_seconds", db="m-new", checkpoint="done")
    assert first is not None and first < 5
    metrics._following_since["m-new"] -= 100
    gauges("m-new", 4)
    assert 100 <= (value("couchfarm_checkpoint_age_seconds", db="m-new", checkpoint="done") or 0) < 105
    metrics.on_event(
        "gauges",
        db="m-new",
        lag=0,
        checkpoint=Checkpoint.from_hash(
            {"done": "1", "done_at": "0", "read": "1", "read_at": str(time.time() - 7)}
        ),
        overlap=0,
        batches=[],
    )
    assert 7 <= (value("couchfarm_checkpoint_age_seconds", db="m-new", checkpoint="read") or 0) < 12


def test_a_paused_database_says_so() -> None:
    gauges("m-p", 3, paused=True)
    assert value("couchfarm_paused", db="m-p") == 1
    gauges("m-p", 3)
    assert value("couchfarm_paused", db="m-p") == 0


def test_redis_probe_sets_up_and_memory_and_keeps_memory_when_down() -> None:
    metrics.on_event("redis", up=True, memory=(1000, 4000))
    assert value("couchfarm_redis_up") == 1
    assert value("couchfarm_redis_memory_used_bytes") == 1000
    assert value("couchfarm_redis_memory_max_bytes") == 4000
    metrics.on_event("redis", up=False)
    assert value("couchfarm_redis_up") == 0
    metrics.on_event("redis", up=True, memory=None)  # INFO refused by an ACL: up, memory unknown
    assert value("couchfarm_redis_up") == 1


def test_started_sets_up_by_role_and_a_worker_delivery_counter_at_zero() -> None:
    metrics.started("worker")
    assert value("couchfarm_up", role="worker") == 1
    assert value("couchfarm_deliveries_total") is not None


def test_replication_poll_counts_every_state_per_node_with_zeros() -> None:
    metrics.replication_poll(["n1", "n2"], [("n1", "crashing"), ("n1", "crashing"), ("n1", "running")])
    assert value("couchfarm_replication_jobs", node="n1", state="crashing") == 2
    assert value("couchfarm_replication_jobs", node="n1", state="running") == 1
    assert value("couchfarm_replication_jobs", node="n2", state="failed") == 0
    metrics.replication_poll(["n1", "n2"], [("n1", "weird"), ("n2", "unreachable")])
    assert value("couchfarm_replication_jobs", node="n1", state="crashing") == 0
    assert value("couchfarm_replication_jobs", node="n1", state="weird") == 1
    assert value("couchfarm_replication_jobs", node="n2", state="unreachable") == 1
    metrics.replication_poll(["n1", "n2"], [])
    assert value("couchfarm_replication_jobs", node="n1", state="weird") == 0  # gone: back to 0


def test_farm_state_memory_reads_info_memory(real_redis: Any) -> None:
    real_redis.config_set("maxmemory", "64mb")
    try:
        used, limit = FarmState(real_redis, FARM).memory() or (0, 0)
    finally:
        real_redis.config_set("maxmemory", "0")
    assert 0 < used < limit == 64 * 1024 * 1024


def test_farm_state_memory_when_info_is_refused_and_when_redis_is_gone(redis_url: str) -> None:
    class NoInfo(redis.Redis):
        def info(self, *args: Any, **kwargs: Any) -> Any:
            raise redis.ResponseError("NOPERM this user has no permissions to run the 'info' command")

    assert FarmState(NoInfo.from_url(redis_url), FARM).memory() is None  # answers: up, memory unknown
    assert FarmState(fakeredis.FakeRedis(), FARM).memory() is None  # fakeredis has no INFO either
    with pytest.raises(redis.ConnectionError):
        FarmState(Gone(), FARM).memory()


class Gone(redis.Redis):
    """A Redis client whose server is gone (every command refused at once, without redis-py's retries)."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        raise redis.ConnectionError(f"Error 111 connecting to 127.0.0.1:{free_port()}. Connection refused.")


class _Follower:
    """Stands in for a follower thread: the dispatcher's lease bookkeeping is what is tested."""

    def __init__(self, client: Any, state: Any, ledger: Any, lease: Lease, *args: Any, **kw: Any) -> None:
        self.lease, self.lost, self.thread = lease, False, None
        self.db, self.problem = lease.db, None
        self.stop = threading.Event()
        self.idle = True

    def start(self) -> _Follower:
        return self

    def mirror(self, force: bool = False) -> None:
        return None


def dispatcher(state: FarmState, events: list[tuple[str, dict[str, Any]]]) -> Dispatcher:
    client, _ = fake_client({("GET", "/m-a"): [(200, {"db_name": "m-a"})], ("GET", "/m-b"): [(200, {})]})
    settings = Settings(farm=FARM, lease_ttl=30, feed_deadline=10)
    return Dispatcher(
        client,
        state,
        Ledger(state.redis, FARM),
        settings,
        broker=None,  # type: ignore[arg-type]
        names=["m-a", "m-b"],
        on_event=lambda name, **kw: events.append((name, kw)),
    )


def followed(events: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    [*_, (_, last)] = [e for e in events if e[0] == "followed"]
    return {db: int(db in last["held"]) for db in last["dbs"]}


def test_each_round_reports_what_the_dispatcher_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "Follower", _Follower)
    state = FarmState(fakeredis.FakeRedis(decode_responses=True), FARM)
    first_events: list[tuple[str, dict[str, Any]]] = []
    second_events: list[tuple[str, dict[str, Any]]] = []
    first, second = dispatcher(state, first_events), dispatcher(state, second_events)
    first.round()
    assert followed(first_events) == {"m-a": 1, "m-b": 1}
    [(_, probe)] = [e for e in first_events if e[0] == "redis"]
    assert probe == {"up": True, "memory": None}  # fakeredis answers PING but has no INFO
    second.round()  # share 1 each, but both leases are the first one's
    assert followed(second_events) == {"m-a": 0, "m-b": 0}
    first.round()  # releases its surplus
    second.round()  # and the second takes it
    assert followed(first_events) == {"m-a": 0, "m-b": 1}
    assert followed(second_events) == {"m-a": 1, "m-b": 0}
    assert len([e for e in first_events if e[0] == "redis"]) == 1  # probed at most every few seconds


def test_a_failed_round_reports_redis_down_and_nothing_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "Follower", _Follower)
    events: list[tuple[str, dict[str, Any]]] = []
    state = FarmState(fakeredis.FakeRedis(decode_responses=True), FARM)
    d = dispatcher(state, events)
    d.round()
    assert followed(events) == {"m-a": 1, "m-b": 1}
    d.state = FarmState(Gone(), FARM)
    d._probed_at = float("-inf")
    d.followers.clear()  # the followers hold the old state; nothing to stop at shutdown

    def record(name: str, **kw: Any) -> None:
        events.append((name, kw))
        if name == "followed":
            d.stop.set()

    d.on_event = record
    monkeypatch.setattr(d, "shutdown", lambda: None)  # its Redis is gone; the threads are stopped below
    try:
        d.run()
    finally:
        d.signal.stop.set()
        d._halted.set()
        d.scheduler.stop()
    assert ("redis", {"up": False}) in events
    assert followed(events) == {"m-a": 0, "m-b": 0}
