"""``status`` from _scheduler/docs and _scheduler/jobs as a real CouchDB 3.4.3 answered them (07a-07e)."""

from __future__ import annotations

import json

from couchfarm.breaker import RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.replication.status import NODE_ROW, collect, collect_all
from tests.replication.fakes import NO_SCHEDULER, all_docs, body, fake_client, listing

DOCS = ("GET", "/_replicator/_all_docs")
SCHED = ("GET", "/_scheduler/docs/_replicator")
JOBS = ("GET", "/_scheduler/jobs")


def crashing_docs() -> dict[str, object]:
    """The four broken documents of 07c as the _replicator holds them (nothing written into them)."""
    return all_docs(*(body("07c", i) for i in (29, 30, 31, 32)))


def test_target_down_and_other_crashes_are_reported_with_their_reason() -> None:
    client, _ = fake_client(
        {DOCS: [(200, crashing_docs())], SCHED: [(200, body("07c", 14))], JOBS: [(200, body("07c", 10))]}
    )
    rows = {r.doc_id: r for r in collect("central", client)}
    assert {r.state for r in rows.values()} == {"crashing"}
    down = rows["rec_bad_unreach"]
    assert "econnrefused" in (down.reason or "") and down.target == "http://127.0.0.1:1/x/"
    assert "db_not_found" in (rows["rec_bad_nodb"].reason or "")
    assert "replication_auth_error" in (rows["rec_bad_auth"].reason or "")
    assert down.error_count == 1 and down.via == "scheduler" and down.last_update == "2026-11-22T00:48:46Z"
    assert "PASS" not in json.dumps([r.as_json() for r in rows.values()])


def test_a_job_running_again_after_a_crash_shows_the_last_crash_from_the_job_history() -> None:
    client, _ = fake_client(
        {DOCS: [(200, crashing_docs())], SCHED: [(200, body("07c", 20))], JOBS: [(200, body("07c", 21))]}
    )
    rows = {r.doc_id: r for r in collect("central", client)}
    retried = rows["rec_bad_unreach"]
    assert retried.state == "running" and retried.error_count == 1
    assert (retried.reason or "").startswith("running again after a crash: {http_request_failed")
    assert rows["rec_bad_nodb"].state == "crashing" and "db_not_found" in (rows["rec_bad_nodb"].reason or "")


def test_running_job_shows_progress_and_checkpoint_against_source() -> None:
    client, _ = fake_client(
        {
            DOCS: [(200, all_docs(body("07b", 4)))],
            SCHED: [(200, body("07b", 6))],
            JOBS: [(200, body("07b", 5))],
        }
    )
    (row,) = collect("central", client)
    assert (row.state, row.docs_read, row.docs_written, row.doc_write_failures) == ("running", 6, 6, 0)
    assert row.checkpointed_seq == "0" and str(row.source_seq).startswith("3-g1AAAA")
    assert row.pending == 3  # CouchDB leaves changes_pending null here: estimated from the sequences
    assert row.continuous is True and row.reason is None


def test_completed_one_shot_and_failed_duplicate() -> None:
    client, _ = fake_client(
        {
            DOCS: [(200, all_docs(body("07a", 4)))],
            SCHED: [(200, body("07a", 6))],
            JOBS: [(200, body("07a", 7))],
        }
    )
    (done,) = collect("a", client)
    assert done.state == "completed" and done.docs_written == 6 and done.pending is None
    client, _ = fake_client(
        {
            DOCS: [(200, all_docs(body("07e", 6)))],
            SCHED: [(200, body("07e", 9))],
            JOBS: [(200, body("07e", 8))],
        }
    )
    rows = {r.doc_id: r for r in collect("a", client)}
    assert rows["rec_dup1"].state == "running"
    assert rows["rec_dup2"].state == "failed" and "already started" in (rows["rec_dup2"].reason or "")


def test_without_a_scheduler_the_documents_own_fields_are_used() -> None:
    """pouchdb-server has no _scheduler: state, reason and stats come from the documents."""
    client, session = fake_client(
        {DOCS: [(200, all_docs(body("07a", 4), body("07e", 6), body("07d", 22)))], SCHED: [NO_SCHEDULER]}
    )
    rows = {r.doc_id: r for r in collect("a", client)}
    assert rows["rec_one"].state == "completed" and rows["rec_one"].docs_read == 6
    assert rows["rec_one"].checkpointed_seq.startswith("3-") and rows["rec_one"].via == "document"
    assert rows["rec_dup2"].state == "failed" and "already started" in (rows["rec_dup2"].reason or "")
    assert ("GET", "/_scheduler/jobs") not in session.calls


def test_documents_the_scheduler_has_not_seen_yet_are_listed_as_initializing() -> None:
    fresh = {
        "_id": "new",
        "_rev": "1-a",
        "source": "http://h:1/a",
        "target": "http://h:1/b",
        "continuous": True,
        "couchfarm": {"topology": "fleet"},
    }
    client, _ = fake_client(
        {DOCS: [(200, all_docs(fresh))], SCHED: [(200, listing())], JOBS: [(200, listing(key="jobs"))]}
    )
    (row,) = collect("a", client)
    assert (row.state, row.topology, row.via) == ("initializing", "fleet", "document")


def test_an_unreachable_node_is_one_row_not_an_abort() -> None:
    dead = CouchClient("http://u:never-shown@127.0.0.1:1", retry=RetryPolicy(1), timeout=(0.5, 0.5))
    client, _ = fake_client(
        {
            DOCS: [(200, all_docs(body("07b", 4)))],
            SCHED: [(200, body("07b", 6))],
            JOBS: [(200, body("07b", 5))],
        }
    )
    rows = collect_all({"gone": dead, "central": client})
    assert [(r.node, r.doc_id, r.state) for r in rows] == [
        ("gone", NODE_ROW, "unreachable"),
        ("central", "rec_cont", "running"),
    ]
    assert "never-shown" not in json.dumps([r.as_json() for r in rows])
