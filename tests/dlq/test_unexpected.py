"""The Celery task end to end (eager): an error the engine does not turn into an outcome is retried
through ``self.retry``, then dead-lettered, and the batch is completed."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from couchfarm.deadletters import DeadLetters
from couchfarm.ledger import Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from tasks import context as tasks_context
from tasks.resolve import resolve_batch
from tests.helpers import FARM


@pytest.fixture
def configured(couch_url: str, redis_url: str) -> Any:
    settings = Settings.load(
        env={
            "COUCHFARM_COUCH_URL": couch_url,
            "COUCHFARM_REDIS_URL": redis_url,
            "COUCHFARM_MAX_RETRIES": "2",
            "COUCHFARM_FARM": FARM,
        }
    )
    from workers.celery_app import app, configure

    configure(app, settings)  # the broker the retry and the Flower task are sent to
    yield tasks_context.context()


def test_unexpected_error_retries_then_dead_letters_and_completes(
    configured: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("redis went away")

    monkeypatch.setattr(configured.engine, "resolve", broken)
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
    lease = state.acquire("db1", "t", ttl=30)
    assert lease is not None
    ledger = Ledger(state.redis, FARM)
    batch, claimed = ledger.create(lease, ["a", "b"], 3, "corr")
    assert claimed
    result = resolve_batch.apply(args=["db1", ["a", "b"], "corr"], kwargs={"batch_id": batch})
    assert result.state == "SUCCESS"  # eager mode runs the retries in place: 1 attempt + 2 retries
    assert caplog.text.count("failed: redis went away") == 3
    entries = DeadLetters(state.redis, FARM).list("db1")
    assert {e.doc_id for e in entries} == {"a", "b"}
    assert all("RuntimeError: redis went away" in e.reason for e in entries)
    assert ledger.batch("db1", batch).status == "done" and not ledger.inflight("db1")  # type: ignore[union-attr]
