"""The one list of dead-letter reasons (couchfarm/failures.py): what each error becomes, what stored
strings of older farms read back as, and the places that show or count them."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from couchfarm import errors, keys, metrics
from couchfarm.batch import BatchLife, LocalRecord, Policy, poison
from couchfarm.deadletters import DeadLetter, DeadLetters, MemoryDeadLetters
from couchfarm.failures import Failure
from couchfarm.keys import Keyspace
from couchfarm.models import Outcome
from couchfarm.resolution import DocResult
from tests.helpers import FARM


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (errors.Unavailable("down"), Failure.UNAVAILABLE),
        (errors.CircuitOpen("open"), Failure.UNAVAILABLE),
        (errors.Conflict("409"), Failure.CONFLICT),
        (errors.Forbidden("403"), Failure.COUCH_ERROR),
        (errors.NotFound("404"), Failure.COUCH_ERROR),
        (errors.AncestorMissing("gone"), Failure.ANCESTOR_MISSING),
        (errors.ResolverError("bad"), Failure.RESOLVER_ERROR),
        (KeyError("bug"), Failure.UNEXPECTED),
    ],
)
def test_an_error_stands_for_one_failure(exc: BaseException, failure: Failure) -> None:
    assert Failure.of(exc) is failure


@pytest.mark.parametrize(
    ("stored", "failure"),
    [
        *((f.value, f) for f in Failure),
        ("CircuitOpen", Failure.UNAVAILABLE),  # exception class names older farms stored
        ("Forbidden", Failure.COUCH_ERROR),
        ("NotFound", Failure.COUCH_ERROR),
        ("RuntimeError", Failure.UNEXPECTED),
        ("Error", Failure.UNEXPECTED),
        ("", Failure.UNEXPECTED),
    ],
)
def test_every_stored_string_reads_back(stored: str, failure: Failure) -> None:
    assert Failure.parse(stored) is failure
    assert DeadLetter("d", "x", [], "lww", stored, "r").error is failure  # type: ignore[arg-type]


def test_the_store_keeps_the_value_and_reads_older_entries() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    store = DeadLetters(redis, FARM)
    store.add(DeadLetter("d", "new", ["2-a"], "lww", Failure.REJECTED, "refused"), now=100.0)
    old = DeadLetter("d", "old", ["2-a"], "lww", Failure.UNEXPECTED, "RuntimeError: boom")
    store.put_back(old)
    redis.hset(Keyspace(FARM)(keys.DLQ_ENTRY, id=old.id), "error", "RuntimeError")  # as an old farm wrote
    assert redis.hget(Keyspace(FARM)(keys.DLQ_ENTRY, id=store.list()[-1].id), "error") == "Rejected"
    by_doc = {e.doc_id: e for e in store.list()}
    assert by_doc["new"].error is Failure.REJECTED and by_doc["old"].error is Failure.UNEXPECTED
    assert json.loads(json.dumps(by_doc["new"].as_json()))["error"] == "Rejected"


class Failing:
    """An engine that fails every document in the given way."""

    def __init__(self, outcome: Outcome, error: Failure) -> None:
        self.outcome, self.error = outcome, error

    def resolve(self, db: str, doc_ids: list[str], **kw: Any) -> list[DocResult]:
        return [DocResult(db, d, self.outcome, "lww", ["2-a"], "why", self.error) for d in doc_ids]


def counted(db: str, failure: Failure) -> float:
    labels = {"farm": metrics.FARM[0], "db": db, "error": failure.value}
    return REGISTRY.get_sample_value("couchfarm_dead_lettered_total", labels) or 0.0


@pytest.mark.parametrize(
    ("outcome", "failure", "stored"),
    [
        (Outcome.DEAD_LETTERED, Failure.INVALID_DOCUMENT, Failure.INVALID_DOCUMENT),
        (Outcome.RETRY, Failure.CONFLICT, Failure.CONFLICT),  # out of retries: dead-lettered as it was
    ],
)
def test_the_batch_loop_stores_and_counts_the_failure(
    outcome: Outcome, failure: Failure, stored: Failure
) -> None:
    sink = MemoryDeadLetters()
    shown: list[DeadLetter] = []
    life = BatchLife(
        Failing(outcome, failure),  # type: ignore[arg-type]
        LocalRecord(),
        sink,
        Policy(max_retries=0),
        on_dead_letter=shown.append,
    )
    before = counted("fdb", stored)
    summary = life.run("fdb", ["a", "b"], sleep=lambda s: None)
    assert [r.error for r in summary.dead] == [stored, stored]
    assert {e.error for e in sink.entries.values()} == {stored} and len(shown) == 2
    assert counted("fdb", stored) == before + 2


def test_poison_is_its_own_failure() -> None:
    assert poison("d", "x", 3).error is Failure.POISON_DOCUMENT


def test_dlq_list_filters_by_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import cli_common, cli_dlq

    store = DeadLetters(fakeredis.FakeRedis(decode_responses=True), FARM)
    store.add(DeadLetter("d", "schema", [], "lww", Failure.INVALID_DOCUMENT, "leaf 2-a is invalid"))
    store.add(DeadLetter("d", "vdu", [], "lww", Failure.REJECTED, "forbidden"))
    monkeypatch.setattr(cli_dlq, "_store", lambda settings: (store, settings))
    monkeypatch.setattr(cli_common, "setup_logging", lambda *a: None)  # the root logger stays pytest's
    runner = CliRunner()
    shown = runner.invoke(cli_dlq.dlq, ["list", "--error", "Rejected", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [e["doc_id"] for e in json.loads(shown.stdout)] == ["vdu"]
    both = runner.invoke(cli_dlq.dlq, ["list", "--error", "Rejected", "--error", "InvalidDocument"])
    assert both.exit_code == 0 and "schema" in both.stdout and "vdu" in both.stdout
    wrong = runner.invoke(cli_dlq.dlq, ["list", "--error", "Bogus"])
    assert wrong.exit_code == 2 and "'Bogus' is not one of" in wrong.output
