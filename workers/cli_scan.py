"""``couchfarm scan <db>``: list conflicted documents."""

from __future__ import annotations

import click

from couchfarm.console import printable
from couchfarm.errors import FarmError, NotFound
from couchfarm.scan import scan as scan_db
from couchfarm.settings import Settings
from workers.cli_common import couch_client, echo_json, pass_settings, progress_bar


@click.command()
@click.argument("db")
@pass_settings
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option(
    "--include-deleted",
    is_flag=True,
    help="Also list a live leaf against a deleted leaf (a conflict under tombstone_wins).",
)
@click.option("--page-size", default=500, show_default=True, help="Changes read per request.")
def scan(db: str, settings: Settings, as_json: bool, include_deleted: bool, page_size: int) -> None:
    """List the conflicted documents of DB (more than one live leaf) with leaf count and revs."""
    client = couch_client(settings)
    try:
        info = client.db_info(db)
    except NotFound:
        raise FarmError(f"the database {db} does not exist on {client.url}") from None
    total = int(info.get("doc_count", 0)) + int(info.get("doc_del_count", 0) or 0)
    with progress_bar(total, f"scanning {db}") as advance:
        found = list(
            scan_db(client, db, page_size=page_size, include_deleted=include_deleted, progress=advance)
        )
    if as_json:
        echo_json([c.as_json() for c in found])
        return
    ids = [printable(c.doc_id) for c in found]
    width = max([len(i) for i in ids] + [6])
    click.echo(f"{'DOC ID':<{width}}  LEAVES  REVS")
    for doc_id, c in zip(ids, found, strict=True):
        click.echo(f"{doc_id:<{width}}  {len(c.live):>6}  {printable(', '.join(c.live))}")
    click.echo(f"{len(found)} conflicted document(s) in {db}", err=True)
