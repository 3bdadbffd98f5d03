"""Replay dead letters: re-resolve each document against its current state.

An entry leaves the store only when its document is resolved (or has no conflict any more); when
the replay fails again, the entry stays with one more attempt and the new reason recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from couchfarm.batch import BatchLife, LocalRecord, Policy, to_dead_letter
from couchfarm.deadletters import DeadLetter, DeadLetters, MemoryDeadLetters
from couchfarm.models import Outcome
from couchfarm.resolution import DocResult, Engine


@dataclass
class Replayed:
    entry: DeadLetter
    result: DocResult
    removed: bool


def replay(
    engine: Engine,
    store: DeadLetters,
    entries: list[DeadLetter],
    policy: Policy,
    *,
    sleep: Callable[[float], None] | None = None,
) -> list[Replayed]:
    """Each entry resolved in this process with the farm's retries (``policy.dry_run``: nothing written)."""
    out = []
    for entry in entries:
        correlation_id = entry.correlation_id or uuid.uuid4().hex[:16]
        life = BatchLife(engine, LocalRecord(), MemoryDeadLetters(), policy)
        summary = life.run(
            entry.db, [entry.doc_id], sleep=sleep or (lambda s: None), correlation_id=correlation_id
        )
        (result,) = summary.results
        removed = False
        if policy.dry_run:
            pass
        elif result.outcome in (Outcome.RESOLVED, Outcome.NOOP):
            removed = store.remove(entry.id, last_failure=entry.last_failure)
        else:
            again = to_dead_letter(result, 1, correlation_id, f"replay-{uuid.uuid4().hex[:12]}")
            store.add(again)
        out.append(Replayed(entry, result, removed))
    return out
