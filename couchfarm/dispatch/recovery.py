"""When the lease holder sends a batch again: the rules that bound a stall after any process death.

A batch is re-sent (as a new message; the copy that is still around, if any, does nothing when it
starts: couchfarm/ledger.py ``start``) when

* it was started and its runner stopped beating for ``beat_timeout``: the worker (or its pool
  process) died, or a hard time limit killed it and Celery acknowledged the message;
* it was published (or scheduled for a retry) but has not started ``lost_after`` seconds after it
  was due while the farm's queue holds nothing: the message sat in a worker that died, or a retry
  could not be published;
* it has not started ``waiting_bound`` seconds after it was due, whatever the queue holds (a queue
  that never empties must not hide a lost message for ever).

A batch claimed but never published (the dispatcher died, or the broker refused) is simply
published by the next round of whoever holds the lease.
"""

from __future__ import annotations

from collections.abc import Callable

from couchfarm.ledger import Batch, Timing


def overdue(batch: Batch, now: float, timing: Timing, backlog: Callable[[], int | None]) -> str | None:
    """Why ``batch`` must be sent again now, or None. ``backlog`` (messages waiting in the farm's
    queue, None when unknown) is only asked when it decides."""
    if batch.status == "started":
        silent = now - batch.beat_at
        return f"its delivery has been silent for {silent:.1f}s" if silent > timing.beat_timeout else None
    if batch.status not in ("queued", "retrying") or batch.sent_at is None:
        return None
    late = now - max(batch.due_at, batch.sent_at)
    if late > timing.waiting_bound:
        return f"not started {late:.0f}s after it was due"
    if late > timing.lost_after and backlog() == 0:
        return f"not started {late:.1f}s after it was due, and the queue is empty"
    return None
