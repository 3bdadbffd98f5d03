"""Dead letters as Flower sees them, and replay as a task an operator can start from Flower.

Flower shows worker events, never the result backend. ``couchfarm.dead_letter`` is one small task
per dead-lettered document: it sends a ``task-dead_lettered`` event (Flower then shows the state
``DEAD_LETTERED``, with db, doc id and reason in its arguments, searchable) and ends with ``Ignore``
so that no later ``task-succeeded`` overwrites that state. The store in Redis stays the record;
Flower is only a view of it. With ``ui_url`` configured, the task also carries ``ui_link``, the
entry's page in ``couchfarm ui``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from celery import shared_task
from celery.exceptions import Ignore

from couchfarm import factory
from couchfarm.replay import replay
from tasks.context import context

UI_PATH = "/dead-letters/{id}"  #: an entry's page in ``couchfarm ui`` (workers/ui/views_dlq.py)


def ui_link(base: str, entry_id: str) -> str:
    """The address of a dead letter's page in ``couchfarm ui`` served at ``base`` (``ui_url``)."""
    return base.rstrip("/") + UI_PATH.format(id=quote(entry_id, safe=""))


@shared_task(bind=True, name="couchfarm.dead_letter", ignore_result=True)
def dead_letter(
    self: Any,
    db: str,
    doc_id: str,
    error: str,  #: a couchfarm.failures.Failure value
    reason: str,
    entry_id: str,
    correlation_id: str = "",
    farm: str = "",
    ui_link: str = "",
) -> None:
    self.send_event(
        "task-dead_lettered",
        farm=farm,
        db=db,
        doc_id=doc_id,
        error=error,
        reason=reason,
        entry_id=entry_id,
        correlation_id=correlation_id,
        **({"ui_link": ui_link} if ui_link else {}),
    )
    raise Ignore()


@shared_task(bind=True, name="couchfarm.replay_dead_letters")
def replay_dead_letters(
    self: Any, entry_id: str = "", db: str = "", all: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Replay one entry (``entry_id``), a database's entries (``db``) or every entry (``all``)."""
    ctx = context()
    store = ctx.dead_letters
    if entry_id:
        entry = store.get(entry_id)
        entries = [entry] if entry is not None else []
    elif db or all:
        entries = store.list(db or None)
    else:
        raise ValueError("give entry_id, db or all=True")
    done = replay(ctx.engine, store, entries, factory.policy(ctx.settings, dry_run=dry_run))
    if not dry_run:
        ctx.insights.results(r.result for r in done)
    return {
        "replayed": len(done),
        "removed": sum(r.removed for r in done),
        "outcomes": {r.entry.doc_id: r.result.outcome.value for r in done},
    }
