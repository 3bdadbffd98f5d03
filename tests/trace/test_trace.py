"""One resolution's trace id, followed across processes: dispatcher log, task log, CouchDB request
headers (seen by a recording proxy) and the dead-letter entry."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from couchfarm import trace
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.ledger import Ledger
from tests.farm.procs import Farm
from tests.helpers import FARM, make_conflict, wait_for
from tests.trace.proxy import RecordingProxy
from workers.local_servers import PouchServer

LEAVES = [{"updated_at": "2026-01-01T00:00:00Z", "v": 1}, {"updated_at": "2026-02-01T00:00:00Z", "v": 2}]


def test_traceparent_helpers() -> None:
    tp = trace.new_traceparent()
    assert trace.trace_id(trace.child(tp)) == trace.trace_id(tp) and trace.child(tp) != tp
    assert trace.trace_id(trace.child("garbage")) and trace.trace_id("garbage") == ""
    with trace.activated(tp) as inner:
        assert trace.headers() == {"traceparent": inner} and trace.trace_id(inner) == trace.trace_id(tp)
    assert trace.headers() == {}


def test_one_trace_across_dispatcher_task_couchdb_and_dead_letter(
    tmp_path: Path, pouch_server: PouchServer, redis_url: str, client: CouchClient, db: str
) -> None:
    config = tmp_path / "farm.yaml"
    config.write_text(f"""databases:
  - name: {db}
    strategy: custom
    options: {{function: 'tests.dlq.resolvers:explode'}}
""")
    make_conflict(client, db, "traced", LEAVES)
    with RecordingProxy(pouch_server.plain_url) as proxy:
        url = f"http://{pouch_server.user}:{pouch_server.password}@127.0.0.1:{proxy.port}"
        farm = Farm(tmp_path, url, redis_url, COUCHFARM_CONFIG=str(config))
        try:
            farm.worker("w", 1)
            farm.dispatcher("d", db)
            store = DeadLetters(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
            wait_for(lambda: store.count(db) == 1, 60, "the dead letter")
            wait_for(lambda: not Ledger(store.redis, FARM).batches(db), 30, "the batch completed")
        finally:
            farm.stop()
        (entry,) = store.list(db)
        trace_id = trace.trace_id(entry.traceparent)
        assert trace_id
        dispatcher_lines = [json.loads(line) for line in farm.log("d").splitlines() if line.startswith("{")]
        assert any(r.get("trace_id") == trace_id and "sent" in r["msg"] for r in dispatcher_lines)
        worker_lines = [json.loads(line) for line in farm.log("w").splitlines() if line.startswith("{")]
        assert any(r.get("trace_id") == trace_id and r.get("doc_id") == "traced" for r in worker_lines)
        traced_requests = [(m, p) for m, p, h in proxy.seen if trace_id in h.get("traceparent", "")]
        # the leaf read of the traced document (in bulk, its id in the body, where the server allows)
        assert any("traced" in p or "_bulk_get" in p or "_all_docs" in p for _, p in traced_requests)


def test_opentelemetry_spans_continue_the_dispatchers_trace() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    assert trace.enable_opentelemetry("couchfarm-test", exporter=exporter)
    try:
        parent = trace.new_traceparent()
        with trace.activated(parent, "couchfarm.resolve_batch"):
            pass
        (span,) = exporter.get_finished_spans()
        assert span.name == "couchfarm.resolve_batch"
        assert format(span.context.trace_id, "032x") == trace.trace_id(parent)
        assert format(span.parent.span_id, "016x") == parent.split("-")[2]
    finally:
        trace._tracer = None
