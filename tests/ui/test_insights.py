"""Why conflicts happen: the pure observation, the bounded Redis store (fake and real), the engine hook."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from couchfarm import keys
from couchfarm.ages import ConflictAges
from couchfarm.couch import CouchClient
from couchfarm.insights import MAX_LABELS, InsightRecorder, InsightStore, observe
from couchfarm.models import ConflictSet, Leaf, Outcome
from couchfarm.resolution import DocResult, Engine
from couchfarm.resolvers import Router
from couchfarm.settings import DatabaseRule, TypeRule
from tests.helpers import FARM, make_conflict
from workers.local_servers import free_port

HOUR = 3600.0


def conflict(doc_id: str, *bodies: dict[str, Any], db: str = "orders") -> ConflictSet:
    leaves = tuple(Leaf(f"2-{'abcdef'[i] * 32}", body) for i, body in enumerate(bodies))
    return ConflictSet(db, doc_id, leaves)


def test_type_comes_from_the_routing_rule_then_the_type_field_then_the_id_prefix() -> None:
    rule = DatabaseRule(
        name="orders",
        types=[TypeRule(id_prefix="cart:", strategy="counter"), TypeRule(value="sensor", strategy="lww")],
    )
    assert observe(conflict("cart:7", {"a": 1}, {"a": 2}), rule).doc_type == "cart:"
    assert observe(conflict("x", {"type": "sensor"}, {"type": "sensor", "v": 1}), rule).doc_type == "sensor"
    assert observe(conflict("x", {"kind": "bill"}, {"kind": "bill"}), type_field="kind").doc_type == "bill"
    assert observe(conflict("order-0042", {"a": 1}, {"a": 2})).doc_type == "order-"
    assert observe(conflict("_design/app", {"a": 1}, {"a": 2})).doc_type == "_design/"
    assert observe(conflict("plain", {"a": 1}, {"a": 2})).doc_type == "(none)"


def test_fields_that_differ_and_writers() -> None:
    c = conflict(
        "d",
        {"qty": 1, "tags": ["a"], "same": {"x": 1}, "by": "gw-1"},
        {"qty": 2, "tags": ["a"], "same": {"x": 1}, "by": "gw-2", "note": None},
        {"qty": 1, "tags": ["a"], "same": {"x": 1}, "by": "gw-1"},
    )
    obs = observe(c, writer_field="by")
    assert obs.fields == ("by", "note", "qty")  # absent against null differs; equal values do not
    assert obs.writers == ("gw-1", "gw-2")
    assert observe(c).writers == ()  # no writer field configured
    shuffled = ConflictSet(c.db, c.doc_id, tuple(reversed(c.leaves)))
    assert observe(shuffled).digest == obs.digest  # the same leaves: the same conflict
    assert observe(conflict("d", {"qty": 1}, {"qty": 3})).digest != obs.digest


def test_store_counts_once_per_conflict_in_time_buckets(any_redis: Any) -> None:
    store = InsightStore(any_redis, "test", window=6 * HOUR, bucket=HOUR)
    t0 = 1_700_000_000.0
    c = conflict("order-1", {"status": "new", "by": "a"}, {"status": "paid", "by": "b"})
    obs = observe(c, writer_field="by")
    assert store.record(obs, now=t0)
    assert not store.record(obs, now=t0 + 5)  # a retry of the same conflict is not counted again
    store.record(observe(conflict("order-2", {"q": 1}, {"q": 2})), now=t0 + HOUR)
    store.resolved("orders", 2, now=t0 + HOUR)
    series = store.series("orders", now=t0 + HOUR)
    assert len(series) == 6 and series[-1].start <= t0 + HOUR < series[-1].start + HOUR
    assert [b.counts.get("n", 0) for b in series[-2:]] == [1, 1]
    assert series[-2].of("f") == {"by": 1, "status": 1} and series[-2].of("w") == {"a": 1, "b": 1}
    assert series[-1].of("t") == {"order-": 1} and series[-1].counts["resolved"] == 2
    assert store.total("orders", "n", 2 * HOUR, now=t0 + HOUR) == 2
    assert store.total("orders", "resolved", HOUR, now=t0 + HOUR) == 2
    key = keys.INSIGHTS.format(farm=FARM, db="orders", bucket=int(series[-1].start))
    assert 6 * HOUR < any_redis.ttl(key) <= 7 * HOUR  # the window bounds every bucket
    assert 0 < any_redis.ttl(keys.INSIGHTS_SEEN.format(farm=FARM, db="orders")) <= HOUR


def test_store_bounds_labels_per_bucket(any_redis: Any) -> None:
    store = InsightStore(any_redis, "test", window=HOUR, bucket=HOUR)
    for i in range(MAX_LABELS + 30):
        store.record(observe(conflict(f"k{i}", {"type": f"t{i}"}, {"type": f"t{i}", "v": 1})), now=100.0)
    (bucket,) = store.series("orders", now=100.0)
    assert bucket.counts["n"] == MAX_LABELS + 30
    assert len(bucket.counts) <= MAX_LABELS + 5
    assert sum(bucket.of("t").values()) == MAX_LABELS + 30 and bucket.of("t")["(other)"] > 0


def test_a_batch_counts_its_conflicts_at_its_end_in_one_round_trip(any_redis: Any) -> None:
    store = InsightStore(any_redis, "test", window=HOUR, bucket=HOUR)
    recorder = InsightRecorder(store, lambda db: None, writer_field="by")
    first = conflict("o-1", {"s": 1, "by": "a"}, {"s": 2, "by": "b"})
    with recorder.batched():
        recorder(first)
        recorder(conflict("o-2", {"q": 1}, {"q": 2}))
        recorder(first)  # the same conflict twice in one batch is counted once, as record would
        assert store.series("orders", HOUR) == [] or store.total("orders", "n", HOUR) == 0
    (bucket,) = store.series("orders", HOUR)
    assert bucket.counts["n"] == 2 and bucket.of("w") == {"a": 1, "b": 1}
    recorder(first)  # outside a batch: counted at once (and, seen already, not again)
    assert store.total("orders", "n", HOUR) == 2


def test_resolved_results_are_counted_per_database(fake_redis: Any) -> None:
    store = InsightStore(fake_redis, "test", window=HOUR, bucket=HOUR)
    results = [
        DocResult("a", "1", Outcome.RESOLVED),
        DocResult("a", "2", Outcome.DEAD_LETTERED),
        DocResult("b", "3", Outcome.RESOLVED),
        DocResult("b", "4", Outcome.NOOP),
    ]
    store.record_results(results, now=10.0)
    assert store.total("a", "resolved", HOUR, now=10.0) == 1
    assert store.total("b", "resolved", HOUR, now=10.0) == 1


def test_a_broken_redis_never_fails_the_resolution(caplog: pytest.LogCaptureFixture) -> None:
    gone = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}", decode_responses=True)
    recorder = InsightRecorder(InsightStore(gone, "test", window=HOUR, bucket=HOUR), lambda db: None)
    recorder(conflict("d", {"a": 1}, {"a": 2}))
    recorder.results([DocResult("a", "1", Outcome.RESOLVED)])
    assert "orders/d not counted" in caplog.text and "resolutions not counted" in caplog.text
    with recorder.batched():
        recorder(conflict("e", {"a": 1}, {"a": 2}))
    assert "1 conflicts not counted" in caplog.text


def test_engine_tells_the_hook_of_each_conflict_only(client: CouchClient, db: str, fake_redis: Any) -> None:
    make_conflict(client, db, "c1", [{"v": 1, "by": "x"}, {"v": 2, "by": "y"}])
    client.put(db, {"_id": "plain", "v": 1})
    seen: list[ConflictSet] = []
    engine = Engine(client, Router([]), on_conflict=seen.append)
    engine.resolve(db, ["c1", "plain"], dry_run=True)
    assert [c.doc_id for c in seen] == ["c1"] and len(seen[0].live) == 2

    store = InsightStore(fake_redis, "test", window=HOUR, bucket=HOUR)
    counting = Engine(
        client, Router([]), on_conflict=InsightRecorder(store, lambda d: None, writer_field="by")
    )
    counting.resolve(db, ["c1", "plain"])
    (bucket,) = store.series(db, HOUR)
    assert (
        bucket.counts["n"] == 1 and bucket.of("w") == {"x": 1, "y": 1} and bucket.of("f") == {"by": 1, "v": 1}
    )


def test_conflict_ages_keep_the_first_time_and_forget_resolved(any_redis: Any) -> None:
    ages = ConflictAges(any_redis, "test")
    assert ages.seen("db", ["a", "b"], complete=True, now=100.0) == {"a": 100.0, "b": 100.0}
    assert ages.seen("db", ["b", "c"], complete=True, now=200.0) == {"b": 100.0, "c": 200.0}
    assert sorted(any_redis.zrange(keys.CONFLICT_SEEN.format(farm=FARM, db="db"), 0, -1)) == [
        "b",
        "c",
    ]  # a resolved
    assert ages.seen("db", ["d"], complete=False, now=300.0) == {"d": 300.0}  # a partial listing
    assert any_redis.zcard(keys.CONFLICT_SEEN.format(farm=FARM, db="db")) == 3
