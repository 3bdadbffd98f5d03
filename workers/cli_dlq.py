"""``couchfarm dlq list | show | replay | purge`` and ``couchfarm flower``."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import click

from couchfarm import factory
from couchfarm.console import printable
from couchfarm.deadletters import DeadLetter, DeadLetters
from couchfarm.errors import ConfigError
from couchfarm.failures import Failure
from couchfarm.replay import replay as replay_entries
from couchfarm.settings import Settings
from workers.cli_common import couch_client, echo_json, pass_settings
from workers.farm import celery_app, stores

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` (or plain seconds) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 15m, 12h, 7d")
    return float(match[1]) * UNITS[match[2] or "s"]


def _store(settings: Settings) -> tuple[DeadLetters, Settings]:
    farm = stores(settings)
    return farm.dead_letters, farm.settings


@click.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters (documents that could not be resolved)."""


@dlq.command("list")
@pass_settings
@click.option("--db", default=None, help="Only this database.")
@click.option("--since", default=None, help="Only failures within this duration (e.g. 1h, 7d).")
@click.option(
    "--error",
    "errors",
    multiple=True,
    type=click.Choice([f.value for f in Failure]),
    help="Only dead letters of this kind (couchfarm/failures.py); repeatable.",
)
@click.option("--json", "as_json", is_flag=True)
def dlq_list(
    settings: Settings,
    db: str | None,
    since: str | None,
    errors: tuple[str, ...],
    as_json: bool,
) -> None:
    """List dead letters, oldest first."""
    store, _ = _store(settings)
    entries = store.list(db, since=time.time() - parse_duration(since) if since else None)
    if errors:
        entries = [e for e in entries if e.error in errors]
    if as_json:
        echo_json([{**e.as_json(), "farm": store.farm} for e in entries])
        return
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.last_failure))
        line = f"{e.id}  {when}  {e.db}/{e.doc_id}  x{e.attempts}  {e.error}: {e.reason[:120]}"
        click.echo(printable(line))
    click.echo(f"{len(entries)} dead letter(s) of farm {store.farm}", err=True)


@dlq.command("show")
@click.argument("entry_id")
@pass_settings
def dlq_show(entry_id: str, settings: Settings) -> None:
    """Everything about one dead letter, with the document's current leaves."""
    store, settings = _store(settings)
    entry = _get(store, entry_id)
    leaves = couch_client(settings).read_leaves(entry.db, [entry.doc_id])[entry.doc_id]
    echo_json({**entry.as_json(), "farm": store.farm, "current_leaves": leaves})


def _get(store: DeadLetters, entry_id: str) -> DeadLetter:
    entry = store.get(entry_id)
    if entry is None:
        raise click.ClickException(f"no dead letter {entry_id}")
    return entry


@dlq.command("replay")
@click.argument("entry_id", required=False)
@pass_settings
@click.option("--db", default=None, help="Replay every entry of this database.")
@click.option("--all", "replay_all", is_flag=True, help="Replay every entry.")
@click.option("--dry-run", is_flag=True, help="Show what the replay would write; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def dlq_replay(
    entry_id: str | None,
    settings: Settings,
    db: str | None,
    replay_all: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Re-resolve dead letters against their documents' current state (in this process).

    An entry is removed once its document is resolved; one that fails again stays, with one more
    attempt and the new reason. Exit status 1 when any entry remains.
    """
    if sum(bool(x) for x in (entry_id, db, replay_all)) != 1:
        raise click.UsageError("give exactly one of ID, --db NAME or --all")
    store, settings = _store(settings)
    entries = [_get(store, entry_id)] if entry_id else store.list(db)
    counts = (
        None if dry_run else factory.insight_recorder(settings, factory.insight_store(settings, store.redis))
    )
    engine = factory.engine(settings, couch_client(settings), on_conflict=counts)
    done = replay_entries(engine, store, entries, factory.policy(settings, dry_run=dry_run), sleep=time.sleep)
    if counts is not None:
        counts.results(r.result for r in done)
    if as_json:
        echo_json(
            [
                {
                    "id": r.entry.id,
                    "doc_id": r.entry.doc_id,
                    "outcome": r.result.outcome.value,
                    "removed": r.removed,
                    "reason": r.result.reason,
                    "plan": r.result.plan,
                }
                for r in done
            ]
        )
    else:
        for r in done:
            state = "removed" if r.removed else ("dry run" if dry_run else "kept")
            click.echo(
                printable(
                    f"{r.entry.db}/{r.entry.doc_id}: {r.result.outcome.value} ({state})"
                    + (f": {r.result.reason}" if r.result.reason and not r.removed else "")
                )
            )
    if not dry_run and any(not r.removed for r in done):
        sys.exit(1)


@dlq.command("purge")
@click.argument("entry_id", required=False)
@pass_settings
@click.option("--older-than", default=None, help="Purge entries whose last failure is older than this (7d).")
def dlq_purge(entry_id: str | None, settings: Settings, older_than: str | None) -> None:
    """Delete one entry, or every entry older than a duration, without replaying."""
    if bool(entry_id) == bool(older_than):
        raise click.UsageError("give exactly one of ID or --older-than DURATION")
    store, _ = _store(settings)
    if entry_id:
        if not store.remove(entry_id):
            raise click.ClickException(f"no dead letter {entry_id}")
        click.echo(f"purged {entry_id}")
    else:
        click.echo(f"purged {store.purge_older_than(parse_duration(older_than or '0'))} dead letter(s)")


@click.command()
@pass_settings
@click.option("--port", default=5555, show_default=True, type=int)
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--state", "state_file", default=None, help="Where Flower persists its state.")
@click.option("--unauthenticated", is_flag=True, help="Run without authentication (refused otherwise).")
def flower(
    settings: Settings,
    port: int,
    address: str,
    state_file: str | None,
    unauthenticated: bool,
) -> None:
    """Flower on the farm's broker: basic auth from flower_user/flower_password, persistent state."""
    user, password = settings.flower_user, settings.flower_password
    if not (user and password) and not unauthenticated:
        raise ConfigError(
            "Flower needs COUCHFARM_FLOWER_USER and COUCHFARM_FLOWER_PASSWORD "
            "(or --unauthenticated to run it open)",
            field="flower_password",
        )
    if user and password:
        os.environ["FLOWER_BASIC_AUTH"] = (
            f"{user}:{password.get_secret_value()}"  # env, not argv: ps shows argv
        )
    else:
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
        click.echo("warning: Flower runs WITHOUT authentication", err=True)
    state = Path(state_file or Path.home() / ".local/share/couchfarm/flower.db")
    state.parent.mkdir(parents=True, exist_ok=True)
    app = celery_app(factory.with_farm(settings))  # tasks started from Flower go to the farm's queue
    app.start(
        [
            "flower",
            f"--port={port}",
            f"--address={address}",
            "--persistent=True",
            f"--db={state}",
            "--state_save_interval=10000",
            "--tasks_columns=name,uuid,state,args,kwargs,received,worker",
        ]
    )
