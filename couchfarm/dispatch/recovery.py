"""When the lease holder sends a batch again: the rules that bound a stall after any process death.

A batch is re-sent (as a new message; the copy that is still around, if any, does nothing when it
starts: couchfarm/ledger.py ``start``) when

* it was started and its runner stopped beating for ``beat_timeout``: the worker (or its pool
  process) died, or a hard time limit killed it and Celery acknowledged the message;
* it was published (or scheduled for a retry) but has not started ``lost_after`` seconds after it
  was due, and its message is not in the farm's queue: the message sat in a worker that died
  (prefetched, or waiting for its countdown), or a retry could not be published. A message still
  in the queue is waiting its turn, however long the queue: re-sending it would only lengthen it;
* where the broker cannot tell what its queue holds, it has not started ``waiting_bound`` seconds
  after it was due.

A batch claimed but never published (the dispatcher died, or the broker refused) is simply
published by the next round of whoever holds the lease.
"""

from __future__ import annotations

from collections.abc import Callable

from couchfarm.ledger import Batch, Timing


def overdue(batch: Batch, now: float, timing: Timing, queued: Callable[[], set[str] | None]) -> str | None:
    """Why ``batch`` must be sent again now, or None. ``queued`` (the ids of the batches waiting in
    the farm's queue, None when unknown) is only asked when it decides."""
    if batch.status == "started":
        silent = now - batch.beat_at
        return f"its delivery has been silent for {silent:.1f}s" if silent > timing.beat_timeout else None
    if batch.status not in ("queued", "retrying") or batch.sent_at is None:
        return None
    late = now - max(batch.due_at, batch.sent_at)
    if late <= timing.lost_after:
        return None
    waiting = queued()
    if waiting is not None:
        return (
            None if batch.id in waiting else f"not started {late:.1f}s after it was due, and not in the queue"
        )
    return f"not started {late:.0f}s after it was due" if late > timing.waiting_bound else None
