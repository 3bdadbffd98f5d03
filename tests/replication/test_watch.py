"""``watch``: events and alerts from successive polls of recorded CouchDB 3.4.3 scheduler answers.

Each poll reads ``_replicator/_all_docs``, ``_scheduler/docs/_replicator`` and ``_scheduler/jobs``;
the scripted session hands out one recorded answer per poll. Where a real timeline for one document
was not recorded (a crashing job that later fails, a checkpoint that goes back), recorded entries
are composed, and the test says so.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from couchfarm.breaker import RetryPolicy
from couchfarm.replication.status import collect
from couchfarm.replication.watch import Event, Severity, Watcher, WebhookSink
from tests.replication.fakes import StubServer, all_docs, body, fake_client, listing
from tests.replication.helpers import run_cli

DOCS = ("GET", "/_replicator/_all_docs")
SCHED = ("GET", "/_scheduler/docs/_replicator")
JOBS = ("GET", "/_scheduler/jobs")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher(
    polls: list[list[dict[str, Any]]], clock: Clock | None = None, **kw: Any
) -> tuple[Watcher, list[Event]]:
    """A watcher over ``polls`` (one list of scheduler entries per poll) with a recording sink."""
    client, _ = fake_client(
        {
            DOCS: [(200, all_docs())],
            SCHED: [(200, listing(*p)) for p in polls],
            JOBS: [(200, listing(key="jobs"))],
        }
    )
    seen: list[Event] = []
    return Watcher(lambda: collect("central", client), [seen.append], clock=clock or Clock(), **kw), seen


def kinds(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.state) for e in events]


def test_running_then_crashing_then_crashing_again_then_failed() -> None:
    running = body("07c", 4)  # rec_bad_unreach right after the PUT
    crashing = body("07c", 13)  # the same job ~12 s later: econnrefused
    again = next(d for d in body("07c", 25)["docs"] if d["doc_id"] == "rec_bad_unreach")  # error_count 2
    failed = body("07e", 4, doc_id="rec_bad_unreach")  # composed: a failed entry (07e) for the same doc
    w, seen = watcher([[running], [crashing], [again], [failed]])
    assert kinds(w.poll()) == [("state", "running")]
    assert kinds(w.poll()) == [("state", "crashing"), ("crashing", "crashing")]
    assert kinds(w.poll()) == [("crashing", "crashing")]
    assert kinds(w.poll()) == [("state", "failed"), ("failed", "failed")]
    alerts = [e for e in seen if e.alert]
    assert [e.severity for e in alerts] == [Severity.CRITICAL] * 3
    assert "econnrefused" in alerts[0].message and "crashed again (error_count 2)" in alerts[1].message
    assert "already started" in alerts[2].message and alerts[2].previous == "crashing"


def test_real_duplicate_goes_from_initializing_to_failed() -> None:
    w, _ = watcher([[body("07e", 3)], [body("07e", 4)]])
    w.poll()
    assert kinds(w.poll()) == [("state", "failed"), ("failed", "failed")]


def test_stalled_checkpoint_while_the_source_moves() -> None:
    """07b: the checkpoint stays at "0" while the source goes from 3-... to 5-... (two live writes)."""
    clock = Clock()
    w, _ = watcher([[body("07b", 2)], [body("07b", 14)], [body("07b", 14)]], clock, stall_after=300)
    assert kinds(w.poll()) == [("state", "running")]
    clock.now += 400
    (stalled,) = w.poll()
    assert stalled.kind == "checkpoint_stalled" and stalled.severity is Severity.WARNING
    assert "moved from 3 to 5" in stalled.message
    clock.now += 400
    assert w.poll() == []  # reported once per stall, not on every poll


def test_no_stall_alert_before_the_grace_period_or_while_the_source_is_still() -> None:
    clock = Clock()
    w, _ = watcher([[body("07b", 2)], [body("07b", 14)]], clock, stall_after=300)
    w.poll()
    clock.now += 10
    assert w.poll() == []
    clock2 = Clock()
    still, _ = watcher([[body("07b", 2)], [body("07b", 3)]], clock2, stall_after=300)
    still.poll()
    clock2.now += 1000
    assert still.poll() == []  # behind, but the source did not move: nothing is stuck


def test_sequence_regression() -> None:
    """Composed: rec_one completed at checkpoint 3-... (07a), then the 07b running entry for it with
    checkpoint "0", which is what a recreated source or reset checkpoints look like."""
    done = body("07a", 3)
    restarted = body("07b", 2, doc_id="rec_one")
    w, _ = watcher([[done], [restarted]])
    w.poll()
    events = w.poll()
    regress = [e for e in events if e.kind == "seq_regressed"]
    assert len(regress) == 1 and regress[0].data["field"] == "checkpointed_seq"
    assert "went backwards from 3 to 0" in regress[0].message


def test_growing_doc_write_failures() -> None:
    before = body("07b", 2)
    after = body("07b", 14)
    after["info"]["doc_write_failures"] = 2  # composed: the target's validate function refused two docs
    w, _ = watcher([[before], [after]])
    w.poll()
    (event,) = [e for e in w.poll() if e.kind == "write_failures"]
    assert event.data == {"before": 0, "after": 2} and event.alert


def test_a_deleted_document_is_reported_gone() -> None:
    w, _ = watcher([[body("07b", 2)], []])
    w.poll()
    assert kinds(w.poll()) == [("gone", None)]


def test_bounded_runs() -> None:
    w, _ = watcher([[body("07b", 2)], [body("07b", 14)]])
    assert w.run(iterations=3, sleep=lambda s: None).polls == 3
    idle, _ = watcher([[body("07c", 4)], [body("07c", 13)], [body("07c", 13)]])
    summary = idle.run(until_idle=True, sleep=lambda s: None)
    assert (summary.polls, summary.alerts) == (3, 1)


def test_a_failing_sink_never_stops_the_watch() -> None:
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    client, _ = fake_client(
        {
            DOCS: [(200, all_docs())],
            SCHED: [(200, listing(body("07b", 2)))],
            JOBS: [(200, listing(key="jobs"))],
        }
    )
    w = Watcher(lambda: collect("c", client), [broken, seen.append])
    assert len(w.poll()) == 1 and len(seen) == 1


@pytest.mark.integration  # an HTTP stub on a loopback port
def test_webhook_retries_transient_failures_then_delivers() -> None:
    hook = StubServer({("POST", "/hook"): [(503, {}), (503, {}), (200, {"ok": True})]})
    event = Event("crashing", Severity.CRITICAL, "central", "r1", "r1 is crashing", "crashing")
    with hook.running():
        WebhookSink(hook.url + "/hook", retry=RetryPolicy(4, 0.0, 0.0), sleep=lambda s: None)(event)
    assert len(hook.received) == 3 and hook.received[-1][2]["kind"] == "crashing"


@pytest.mark.integration  # an HTTP stub on a loopback port
def test_webhook_does_not_retry_a_refusal_and_never_raises() -> None:
    hook = StubServer({("POST", "/hook"): [(400, {})]})
    event = Event("state", Severity.INFO, "central", "r1", "seen running", "running")
    with hook.running():
        WebhookSink(hook.url + "/hook", retry=RetryPolicy(4, 0.0, 0.0), sleep=lambda s: None)(event)
        WebhookSink(hook.url + "/hook", alerts_only=True)(event)  # not an alert: not sent
    assert len(hook.received) == 1
    WebhookSink("http://127.0.0.1:1/hook", retry=RetryPolicy(2, 0.0, 0.0), sleep=lambda s: None)(event)


@pytest.mark.integration  # an HTTP stub on a loopback port
def test_cli_status_and_watch_against_a_stub_couchdb(monkeypatch: Any) -> None:
    """The commands end to end over HTTP, the server answering with the 07c recordings."""
    docs = all_docs(*(body("07c", i) for i in (29, 30, 31, 32)))
    snapshots = [
        (200, body("07c", 14)),
        (200, body("07c", 9)),
        (200, body("07c", 14)),
    ]  # t=30 s, t=2 s, t=30 s
    stub = StubServer({DOCS: [(200, docs)], SCHED: snapshots, JOBS: [(200, body("07c", 10))]})
    hook = StubServer({("POST", "/hook"): [(200, {})]})
    with stub.running(), hook.running():
        env = {"COUCHFARM_COUCH_URL": f"http://admin:s3cret-pw@{stub.url.split('://')[1]}"}
        status = run_cli(["status", "--json"], env)
        args = ["watch", "--iterations", "2", "--interval", "0", "--json", "--webhook", hook.url + "/hook"]
        watch = run_cli([*args, "--alerts-only"], env)
    assert status.exit_code == 0, status.output
    rows = json.loads(status.output)
    assert {r["doc_id"]: r["state"] for r in rows}["rec_bad_auth"] == "crashing"
    assert watch.exit_code == 2, watch.output  # alerts fired
    events = [json.loads(line) for line in watch.stdout.splitlines() if line.startswith("{")]
    assert [e["kind"] for e in events if e["doc_id"] == "rec_bad_unreach"] == ["state", "state", "crashing"]
    assert {r[2]["kind"] for r in hook.received} == {"crashing"}
    assert "s3cret-pw" not in status.output + watch.output
