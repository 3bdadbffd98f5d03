"""``couchfarm resolve`` (in-process, no Redis or Celery) and ``couchfarm undo``."""

from __future__ import annotations

import sys
import uuid

import click

from couchfarm import factory
from couchfarm.archive import Archive
from couchfarm.archive import undo as undo_resolution
from couchfarm.batch import BatchLife, LocalRecord, Summary
from couchfarm.console import printable
from couchfarm.deadletters import MemoryDeadLetters
from couchfarm.errors import ConfigError
from couchfarm.scan import candidate_pages
from couchfarm.settings import Settings
from workers.cli_common import couch_client, echo_json, pass_settings, progress_bar


@click.command()
@click.argument("db")
@pass_settings
@click.option("--doc", "doc_ids", multiple=True, help="Only these document ids (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print leaves, merge and planned writes; write nothing.")
@click.option("--strategy", default=None, help="One strategy for every document, e.g. lww:field=updated_at.")
@click.option("--json", "as_json", is_flag=True, help="Print per-document results and the summary as JSON.")
def resolve(
    db: str,
    settings: Settings,
    doc_ids: tuple[str, ...],
    dry_run: bool,
    strategy: str | None,
    as_json: bool,
) -> None:
    """Resolve the current conflicts of DB in this process.

    It needs no Redis and keeps no state: its dead letters are printed here (and in --json), not
    stored in the farm's dead-letter queue, and the exit status is 1 when there are any.
    """
    client = couch_client(settings)
    counts = None  # with a state Redis, a real run counts its conflicts for `couchfarm ui`'s "why" page
    if settings.redis_url and not dry_run:
        farmed = factory.with_farm(settings, client)
        counts = factory.insight_recorder(farmed, factory.insight_store(farmed, factory.state_redis(farmed)))
    engine = factory.engine(settings, client, strategy, on_conflict=counts)
    ids = list(doc_ids) or [i for page, _ in candidate_pages(client, db) for i in page]
    life = BatchLife(engine, LocalRecord(), MemoryDeadLetters(), factory.policy(settings, dry_run=dry_run))
    with progress_bar(len(ids), f"resolving {db}") as advance:
        summary = life.run(
            db, ids, batch_size=settings.batch_size, correlation_id=uuid.uuid4().hex[:16], progress=advance
        )
    if counts is not None:
        counts.results(summary.results)
    report(summary, db, dry_run, as_json)
    if summary.dead:
        sys.exit(1)


def report(summary: Summary, db: str, dry_run: bool, as_json: bool) -> None:
    counts = dict(summary.counts)
    if as_json:
        echo_json(
            {
                "db": db,
                "dry_run": dry_run,
                "counts": counts,
                "seconds": round(summary.seconds, 3),
                "results": [r.as_json() for r in summary.results],
            }
        )
        return
    for r in summary.results:
        if dry_run and r.plan:
            echo_json(r.plan)
    for r in summary.dead:
        click.echo(printable(f"dead letter: {r.doc_id}: {r.error}: {r.reason}"), err=True)
    if summary.dead:
        click.echo(
            f"{len(summary.dead)} dead letters listed above only: `couchfarm resolve` keeps no state"
            " (the farm's dead-letter queue is `couchfarm dlq`)",
            err=True,
        )
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no conflicts"
    click.echo(
        f"{db}: {parts} in {summary.seconds:.1f}s" + (" (dry run: nothing written)" if dry_run else "")
    )


@click.command()
@click.argument("db")
@click.argument("doc_id")
@pass_settings
@click.option("--pick", default=None, help="Make this archived leaf's body the winner instead.")
def undo(db: str, doc_id: str, settings: Settings, pick: str | None) -> None:
    """Restore DOC_ID's last archived resolution as the conflict it was (or --pick a winner)."""
    if not settings.archive_db:
        raise ConfigError(
            "undo needs archive_db (COUCHFARM_ARCHIVE_DB) naming the audit database", field="archive_db"
        )
    client = couch_client(settings)
    revs = undo_resolution(client, Archive(client, settings.archive_db), db, doc_id, pick=pick)
    click.echo(printable(f"{doc_id}: wrote {', '.join(revs)}"))
