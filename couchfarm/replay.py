"""Replay dead letters: re-resolve each document against its current state.

An entry leaves the store only when its document is resolved (or has no conflict any more); when
the replay fails again, the entry stays with one more attempt and the new reason recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from couchfarm.breaker import RetryPolicy
from couchfarm.deadletters import DeadLetter, DeadLetters, MemoryDeadLetters
from couchfarm.driver import resolve_batch, to_dead_letter
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
    *,
    dry_run: bool = False,
    max_retries: int = 3,
    backoff: RetryPolicy | None = None,
    sleep: Callable[[float], None] | None = None,
) -> list[Replayed]:
    backoff = backoff or RetryPolicy(attempts=max_retries + 1)
    out = []
    for entry in entries:
        failures = MemoryDeadLetters()
        correlation_id = entry.correlation_id or uuid.uuid4().hex[:16]
        (result,) = resolve_batch(
            engine,
            entry.db,
            [entry.doc_id],
            failures,
            max_retries,
            backoff,
            sleep or (lambda s: None),
            dry_run,
            correlation_id,
        )
        removed = False
        if dry_run:
            pass
        elif result.outcome in (Outcome.RESOLVED, Outcome.NOOP):
            removed = store.remove(entry.id, last_failure=entry.last_failure)
        else:
            again = to_dead_letter(result, 1, correlation_id, f"replay-{uuid.uuid4().hex[:12]}")
            store.add(again)
        out.append(Replayed(entry, result, removed))
    return out
