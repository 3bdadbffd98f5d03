"""``replication sync`` against recorded CouchDB 3.4.3 answers: the checks before writing (08, 08c),
the document CouchDB gets, and the progress and final state read from ``_scheduler/docs`` (07a
initializing -> running -> completed; 07c crashing with db_not_found or an auth error)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from couchfarm.couch import CouchClient
from couchfarm.http import quote_id
from couchfarm.redact import register_secret
from couchfarm.replication.errors import SyncFailed
from couchfarm.replication.render import Credential
from couchfarm.replication.status import ReplicationStatus
from couchfarm.replication.sync import SyncEnd, SyncJob, start_all, sync_jobs
from couchfarm.replication.sync_follow import follow
from tests.replication.fakes import Answer, Routes, StubServer, body, fake_client

WELCOME = ("GET", "/")
CRED = Credential("basic", "admin", "s3cret-sync")
MISSING = (404, {"error": "not_found", "reason": "missing"})


def end(label: str, routes: Routes) -> tuple[SyncEnd, Any]:
    client, session = fake_client(routes, f"http://{label}")
    return SyncEnd(label, client, f"http://{label}", CRED), session


def couchdb(doc_path: str, sched: list[dict[str, Any]]) -> Routes:
    """A CouchDB runner: welcome (08), db info, the document absent then present, scheduler answers."""
    return {
        WELCOME: [(200, body("08", 0))],
        ("GET", "/s1"): [(200, body("08", 12))],
        ("GET", doc_path): [MISSING, (200, {"_id": "x", "_rev": "1-a", "couchfarm": {"sync": True}})],
        ("PUT", doc_path): [(201, body("07a", 0))],
        ("DELETE", doc_path): [(200, body("07a", 28))],
        ("GET", "/_scheduler/docs" + doc_path): [(200, entry) for entry in sched],
    }


def job_on(sched: list[dict[str, Any]], target_db: Answer | None = None) -> tuple[SyncJob, Any]:
    doc_id = "couchfarm-sync:s1:127.0.0.1:25984->127.0.0.1:25985"
    path = "/_replicator/" + quote_id(doc_id)
    source, session = end("127.0.0.1:25984", couchdb(path, [dict(e, doc_id=doc_id) for e in sched]))
    target, _ = end("127.0.0.1:25985", {("GET", "/s1"): [target_db or (200, body("08", 12))]})
    (job,) = sync_jobs(source, target, ["s1"], "push")
    assert job.doc_id == doc_id and job.runner is source
    return job, session


def test_progress_and_completion_from_the_scheduler() -> None:
    job, session = job_on([body("07a", 1), body("07a", 2), body("07a", 3)])
    assert start_all([job], warn=pytest.fail) == {job.doc_id: "started"}
    seen: list[ReplicationStatus] = []
    (result,) = follow([job], timeout=30, on_progress=lambda j, s: seen.append(s), sleep=lambda s: None)
    assert [s.state for s in seen] == ["initializing", "running", "completed"]
    assert result.ok and result.state == "completed" and not result.timed_out
    assert (result.status and (result.status.docs_read, result.status.docs_written)) == (6, 6)
    assert result.line().endswith("on 127.0.0.1:25984: 6 read, 6 written")
    assert ("DELETE", "/_replicator/" + quote_id(job.doc_id)) not in session.calls


@pytest.mark.parametrize(("index", "words"), [(11, "db_not_found"), (8, "replication_auth_error")])
def test_a_crashing_job_fails_with_the_reason_and_is_cancelled(index: int, words: str) -> None:
    job, session = job_on([body("07c", 5), body("07c", index)])
    start_all([job], warn=pytest.fail)
    (result,) = follow([job], timeout=30, sleep=lambda s: None)
    assert not result.ok and result.state == "crashing"
    reason = result.reason or ""
    assert words in reason and "cancelled, so CouchDB does not retry it" in reason
    assert session.calls.count(("DELETE", "/_replicator/" + quote_id(job.doc_id))) == 1
    assert result.as_json()["ok"] is False


def test_still_running_at_the_timeout() -> None:
    job, _ = job_on([body("07c", 5)])
    start_all([job], warn=pytest.fail)
    ticks = itertools.count(0, 10)
    (result,) = follow([job], timeout=25, sleep=lambda s: None, clock=lambda: float(next(ticks)))
    assert result.timed_out and result.state == "running"
    assert "still running after 25s" in (result.reason or "")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ((401, body("08", 38)), "refused the credentials for s1 (401 Name or password is incorrect.)"),
        ((403, body("08c", 3)), "(403 Account is temporarily locked"),
        ((404, body("08", 19)), "does not exist on 127.0.0.1:25985; pass --create-target"),
    ],
)
def test_nothing_is_written_when_the_target_cannot_work(answer: Answer, words: str) -> None:
    job, session = job_on([body("07a", 1)], answer)
    with pytest.raises(SyncFailed) as info:
        start_all([job], warn=pytest.fail)
    assert words in str(info.value)
    assert not [c for c in session.calls if c[0] == "PUT"]


@pytest.mark.integration  # an HTTP stub on a loopback port
def test_couchdb_gets_auth_objects_and_a_marked_one_shot_document() -> None:
    register_secret(CRED.secret)
    sched = StubServer({})
    with sched.running():
        label = sched.url.removeprefix("http://")
        doc_id = f"couchfarm-sync:s1:{label}->127.0.0.1:25985"
        path = "/_replicator/" + quote_id(doc_id)
        sched.routes.update(couchdb(path, [dict(body("07a", 3), doc_id=doc_id)]))
        source = SyncEnd(label, CouchClient(sched.url), sched.url, CRED)
        target, _ = end("127.0.0.1:25985", {("GET", "/s1"): [(200, body("08", 12))]})
        (job,) = sync_jobs(source, target, ["s1"], "push", create_target=True)
        start_all([job], warn=pytest.fail)
        (result,) = follow([job], timeout=30, sleep=lambda s: None)
    (put,) = [b for method, _, b in sched.received if method == "PUT"]
    basic = {"username": "admin", "password": CRED.secret}
    assert put["source"] == {"url": f"{sched.url}/s1", "auth": {"basic": basic}}
    assert put["target"]["url"] == "http://127.0.0.1:25985/s1" and put["continuous"] is False
    assert put["create_target"] is True and put["couchfarm"] == {"sync": True}
    assert result.ok and CRED.secret not in str(result.as_json())
