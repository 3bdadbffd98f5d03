"""``couchfarm conflicts ...``: look at a conflict, resolve it by hand, pause the farm per database.

``show``, ``pick`` and ``edit`` work on one document; ``pick`` and ``edit`` write through the engine's
safe path (``couchfarm.manual``). ``pause``/``resume``/``paused`` flip the per-database switch the
dispatcher reads, so a paused database's conflicts wait for people. ``install-view``/``list`` keep
a ``_design/couchfarm`` view of conflicted documents. Exit status: 0 done (or nothing to do), 1 a
refusal (unknown rev, invalid edit, leaves changed, the server refused the write).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from couchfarm import factory, manual
from couchfarm.canonical import same
from couchfarm.console import printable
from couchfarm.models import ConflictSet, Outcome
from couchfarm.plan import Plan
from couchfarm.resolution import Engine
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from workers.cli_common import CONTEXT, echo_json, pass_settings

STRATEGY_HELP = "Propose this strategy's merge instead of the configured one, e.g. lww:field=updated_at."
ATTACHMENTS_OPTION = click.option(
    "--attachments-from",
    default=None,
    metavar="REV",
    help="Keep this live leaf's attachments (names it lacks come from the other leaves).",
)


@click.group(context_settings=CONTEXT)
def conflicts() -> None:
    """Compare a document's conflicting leaves and resolve them by hand; pause the farm per database."""


def _engine(settings: Settings, strategy: str | None = None) -> Engine:
    return factory.engine(settings, factory.couch_client(settings), strategy)


# -- show --------------------------------------------------------------------------------------


@conflicts.command()
@click.argument("db")
@click.argument("doc_id")
@pass_settings
@click.option("--strategy", default=None, help=STRATEGY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON, values complete.")
@click.option("--width", default=28, show_default=True, help="Widest table cell; longer values are cut.")
def show(
    db: str,
    doc_id: str,
    settings: Settings,
    strategy: str | None,
    as_json: bool,
    width: int,
) -> None:
    """DOC_ID's live leaves side by side (CouchDB's winner first), differing fields marked with '!',
    and the merge the routed strategy (or --strategy) proposes as the last column."""
    engine = _engine(settings, strategy)
    conflict = manual.read_conflict(engine, db, doc_id)
    proposal = manual.propose(engine, conflict) if manual.is_conflicted(conflict) else None
    if as_json:
        echo_json(manual.describe(conflict, proposal))
    elif proposal is None:
        live = conflict.live
        state = f"one live leaf, {live[0].rev}" if live else "the document is deleted"
        click.echo(printable(f"{doc_id} in {db}: no conflict ({state})"))
        _deleted_line(conflict)
    else:
        _print_comparison(conflict, proposal, max(width, 4))


def _print_comparison(conflict: ConflictSet, proposal: manual.Proposal, width: int) -> None:
    live = conflict.live
    click.echo(printable(f"{conflict.doc_id} in {conflict.db}: conflict between {len(live)} live leaves"))
    for i, leaf in enumerate(live):
        click.echo(
            printable(f"  {_short(leaf.rev)}  {leaf.rev}")
            + ("  * CouchDB's current winner" if i == 0 else "")
        )
    revs = [printable(_short(leaf.rev)) + ("*" if i == 0 else "") for i, leaf in enumerate(live)]
    headers = ["", "FIELD", *revs]
    headers.append(f"PROPOSED ({proposal.strategy})")
    rows = [  # field names and values come from the documents: escaped for the terminal
        ["!" if row.differs else "", printable(row.field)]
        + [printable(manual.cell(v, width)) for v in row.values]
        + [printable(manual.cell(row.proposed, width))]
        for row in manual.compare(conflict, proposal)
    ]
    widths = [max(len(str(line[i])) for line in [headers, *rows]) for i in range(len(headers))]
    click.echo("")
    for line in [headers, *rows]:
        click.echo("  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)).rstrip())
    click.echo("")
    click.echo("! differs between leaves   - field absent   * CouchDB's current winner")
    if proposal.body is None:
        click.echo(printable(f"no proposed merge from {proposal.strategy}: {proposal.reason}"))
    _deleted_line(conflict)


def _short(rev: str) -> str:
    generation, _, digest = rev.partition("-")
    return f"{generation}-{digest[:8]}"


def _deleted_line(conflict: ConflictSet) -> None:
    if conflict.deleted:
        click.echo(printable("deleted leaves: " + ", ".join(leaf.rev for leaf in conflict.deleted)))


# -- pick and edit -----------------------------------------------------------------------------


@conflicts.command()
@click.argument("db")
@click.argument("doc_id")
@click.argument("rev")
@pass_settings
@ATTACHMENTS_OPTION
@click.option("--dry-run", is_flag=True, help="Print the planned writes; write nothing.")
def pick(
    db: str,
    doc_id: str,
    rev: str,
    settings: Settings,
    attachments_from: str | None,
    dry_run: bool,
) -> None:
    """Make live leaf REV's body, and its attachments, DOC_ID's winner and tombstone every other
    live leaf."""
    engine = _engine(settings)
    plan = manual.pick_plan(manual.read_conflict(engine, db, doc_id), rev, attachments_from)
    if not _write(engine, plan, dry_run):
        sys.exit(1)


@conflicts.command()
@click.argument("db")
@click.argument("doc_id")
@pass_settings
@click.option("--strategy", default=None, help=STRATEGY_HELP)
@ATTACHMENTS_OPTION
@click.option("--yes", is_flag=True, help="Write an unchanged proposal without asking.")
@click.option("--dry-run", is_flag=True, help="Print the planned writes; write nothing.")
def edit(
    db: str,
    doc_id: str,
    settings: Settings,
    strategy: str | None,
    attachments_from: str | None,
    yes: bool,
    dry_run: bool,
) -> None:
    """Edit the proposed merge of DOC_ID in $VISUAL/$EDITOR (else vi), then write it as the winner.

    The leaves are read again before writing: if they changed meanwhile nothing is written.
    Attachments: the ones the proposing strategy chose (or --attachments-from REV's).
    """
    engine = _engine(settings, strategy)
    conflict = manual.read_conflict(engine, db, doc_id)
    if not manual.is_conflicted(conflict):
        click.echo(printable(f"{doc_id} in {db}: no conflict: nothing to resolve"))
        return
    proposal = manual.propose(engine, conflict)
    start = proposal.body
    if start is None:
        start = conflict.live[0].body
        click.echo(
            printable(f"no proposed merge ({proposal.reason}): starting from {conflict.live[0].rev}"),
            err=True,
        )
    path = _draft(start)
    try:
        click.edit(filename=str(path), editor=os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
    except click.ClickException as exc:
        raise click.ClickException(f"{exc.message}: nothing written (the draft is {path})") from None
    try:
        body = manual.parse_edit(path.read_text(encoding="utf-8"))
        if same(body, start) and not yes and not click.confirm("file unchanged: write the proposal as is?"):
            raise manual.ManualRefused("not confirmed: nothing written")
        current = manual.reread_unchanged(engine, conflict)
        plan = manual.edit_plan(current, body, proposal, attachments_from)
    except manual.ManualRefused as exc:
        raise manual.ManualRefused(f"{exc} (your edit is kept in {path})") from None
    if not _write(engine, plan, dry_run):
        click.echo(f"your edit is kept in {path}", err=True)
        sys.exit(1)
    path.unlink()


def _draft(body: dict[str, Any]) -> Path:
    """The body as pretty JSON in a temp file that outlives a failure, so an edit is never lost."""
    fd, name = tempfile.mkstemp(prefix="couchfarm-edit-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(manual.pretty(body))
    return Path(name)


def _write(engine: Engine, plan: Plan, dry_run: bool) -> bool:
    """Carry out (or print) ``plan``; False, with the server's reason on stderr, when refused."""
    if dry_run:
        echo_json(plan.describe())
        click.echo("dry run: nothing written", err=True)
        return True
    if not manual.has_writes(plan):
        click.echo(printable(f"{plan.doc_id}: nothing to write (that leaf is already the only live one)"))
        return True
    result = manual.apply(engine, plan)
    if result.outcome is Outcome.RESOLVED:
        click.echo(printable(f"{plan.doc_id}: resolved by hand; wrote {', '.join(result.written)}"))
        for name, rev in plan.attachments.items():
            click.echo(printable(f"  attachment {name}: the copy of {rev}"))
        return True
    click.echo(printable(f"couchfarm: {plan.doc_id}: not resolved: {result.reason}"), err=True)
    if (result.reason or "").startswith("winner write"):
        click.echo("nothing was tombstoned: every leaf is still live", err=True)
    if result.outcome is Outcome.RETRY:
        click.echo("the document changed or the server is unavailable: look again and retry", err=True)
    return False


# -- pause switch ------------------------------------------------------------------------------


@conflicts.command()
@click.argument("db")
@pass_settings
def pause(db: str, settings: Settings) -> None:
    """Stop automatic resolution of DB: its follower stops reading, conflicts wait for people."""
    _state(settings).pause(db)
    click.echo(f"{db}: automatic resolution paused (resume with `couchfarm conflicts resume {db}`)")


@conflicts.command()
@click.argument("db")
@pass_settings
def resume(db: str, settings: Settings) -> None:
    """Resume automatic resolution of DB from its checkpoint."""
    _state(settings).unpause(db)
    click.echo(f"{db}: automatic resolution resumed")


@conflicts.command()
@pass_settings
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def paused(settings: Settings, as_json: bool) -> None:
    """List the databases whose automatic resolution is paused."""
    names = manual.paused_databases(_state(settings))
    if as_json:
        echo_json(names)
        return
    for name in names:
        click.echo(name)
    click.echo(f"{len(names)} paused database(s)", err=True)


def _state(settings: Settings) -> FarmState:
    from workers.farm import farm_state  # imports Celery: only for the commands that need Redis

    return farm_state(settings)


# -- the conflicts view ------------------------------------------------------------------------


@conflicts.command("install-view")
@click.argument("db")
@pass_settings
def install_view(db: str, settings: Settings) -> None:
    """Create or update _design/couchfarm with the view `conflicts` (no new rev when up to date)."""
    outcome = manual.install_view(factory.couch_client(settings), db)
    click.echo(f"{db}: {manual.DESIGN_ID} {outcome}")


@conflicts.command("list")
@click.argument("db")
@pass_settings
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(db: str, settings: Settings, as_json: bool) -> None:
    """List DB's conflicted documents and their conflicting (non-winning) revs from the view."""
    source, found = manual.list_conflicts(factory.couch_client(settings), db)
    if source == "scan":
        click.echo(
            f"{db} has no {manual.DESIGN_ID} view (`couchfarm conflicts install-view {db}`): "
            "scanned the changes feed instead",
            err=True,
        )
    if as_json:
        echo_json({"db": db, "source": source, "conflicts": found})
        return
    ids = [printable(item["id"]) for item in found]
    width = max([len(i) for i in ids] + [6])
    click.echo(f"{'DOC ID':<{width}}  CONFLICTING REVS")
    for doc_id, item in zip(ids, found, strict=True):
        click.echo(f"{doc_id:<{width}}  {printable(', '.join(item['revs']))}")
    click.echo(f"{len(found)} conflicted document(s) in {db}", err=True)
