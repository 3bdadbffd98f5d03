"""When the lease holder re-sends a batch (couchfarm/dispatch/recovery.py), and what the broker tells
it about its queue (workers/farm.py ``CeleryBroker.queued``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from couchfarm import factory
from couchfarm.dispatch.recovery import overdue
from couchfarm.ledger import Batch, Timing
from couchfarm.settings import Settings

TIMING = Timing(beat_interval=1, beat_timeout=3, lost_after=3, waiting_bound=60)
QUEUED = Batch("db", "b1", 1, ["x"], "queued", "c", sent_at=100.0, due_at=100.0)


def never(*_: Any) -> set[str] | None:
    raise AssertionError("the queue was asked although the rule did not need it")


@pytest.mark.parametrize(
    ("batch", "now", "queued", "says"),
    [
        (replace(QUEUED, status="started", beat_at=100.0), 102.0, never, None),
        (replace(QUEUED, status="started", beat_at=100.0), 104.0, never, "silent for 4.0s"),
        (QUEUED, 102.0, never, None),  # not late yet: the queue is not even asked
        (QUEUED, 104.0, lambda: {"b1", "b2"}, None),  # waits its turn in the queue
        (QUEUED, 104.0, lambda: {"b2"}, "not in the queue"),  # prefetched by a dead worker, or lost
        (replace(QUEUED, status="retrying", due_at=110.0), 112.0, lambda: set(), None),  # countdown
        (replace(QUEUED, status="retrying", due_at=110.0), 114.0, lambda: set(), "not in the queue"),
        (QUEUED, 130.0, lambda: None, None),  # the broker cannot tell: wait for the bound
        (QUEUED, 161.0, lambda: None, "61s after it was due"),
        (replace(QUEUED, sent_at=None), 1000.0, never, None),  # unpublished: published, not re-sent
        (replace(QUEUED, status="waiting"), 1000.0, never, None),
        (replace(QUEUED, status="done"), 1000.0, never, None),
    ],
)
def test_overdue(batch: Batch, now: float, queued: Any, says: str | None) -> None:
    reason = overdue(batch, now, TIMING, queued)
    assert (reason is None) == (says is None) and (says is None or says in str(reason)), reason


def test_the_broker_tells_which_batches_wait_in_the_farm_queue(redis_url: str) -> None:
    from workers.farm import CeleryBroker, celery_app

    settings = Settings.load(env={"COUCHFARM_REDIS_URL": redis_url, "COUCHFARM_FARM": "lonely"})
    broker = CeleryBroker(celery_app(settings), settings)  # no worker consumes couchfarm.lonely
    assert broker.queued() == set()
    for batch_id in ("0a1b2c3d4e5f", "ffeeddccbbaa"):
        broker.send(Batch("db", batch_id, 1, ["x"], "queued", "c", pending=["x"]))
    broker._queued_at = 0.0  # past its one-second cache
    assert broker.queued() == {"0a1b2c3d4e5f", "ffeeddccbbaa"}
    assert factory.farm_id(settings) == "lonely"
