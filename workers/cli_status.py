"""``couchfarm status``: per database, or summarised for thousands of them.

With few databases (``--top`` or fewer) every one gets a row. With more, the farm's totals, the
databases furthest behind and those with dead letters; ``--json`` always keeps every database's
detail. ``--db`` takes names and globs.
"""

from __future__ import annotations

import time
from fnmatch import fnmatchcase
from typing import Any

import click

from couchfarm import keys
from couchfarm.console import printable
from couchfarm.deadletters import DeadLetters
from couchfarm.ledger import Ledger
from couchfarm.metrics import BATCH_STATES
from couchfarm.settings import Settings
from couchfarm.state import FarmState, paused
from workers.cli_common import echo_json, pass_settings
from workers.farm import stores


def status_report(
    settings: Settings,
    dbs: tuple[str, ...],
    *,
    state: FarmState | None = None,
    book: Ledger | None = None,
    dead: DeadLetters | None = None,
) -> list[dict[str, Any]]:
    """Per database: lease, checkpoints, lag, batches, dead letters, pause (stores built when not
    given). ``dbs`` are names or globs over the databases the farm follows (all when empty)."""
    if state is None or book is None or dead is None:
        farm = stores(settings)
        state, book, dead = state or farm.state, book or farm.ledger, dead or farm.dead_letters
    names = select(state.databases(), dbs)
    pipe = state.redis.pipeline(transaction=False)
    for db in names:
        pipe.get(state.ks(keys.LEASE, db=db))
        pipe.pttl(state.ks(keys.LEASE, db=db))
        pipe.get(state.ks(keys.FENCE, db=db))
        pipe.get(state.ks(keys.LAG, db=db))
        pipe.hlen(state.ks(keys.INFLIGHT, db=db))
    flat = pipe.execute() if names else []
    now = time.time()
    report = []
    for i, db in enumerate(names):
        owner, ttl_ms, token, lag, inflight = flat[5 * i : 5 * i + 5]
        snap = book.snapshot(db)
        cp, batches = snap.checkpoint, snap.batches
        report.append(
            {
                "farm": state.farm,
                "db": db,
                "lease": {"holder": owner, "token": int(token or 0), "ttl_ms": max(int(ttl_ms), 0)},
                "checkpoint": {
                    "read": cp.read,
                    "done": cp.done,
                    "read_age_s": round(now - cp.read_at, 1) if cp.read_at else None,
                    "done_age_s": round(now - cp.done_at, 1) if cp.done_at else None,
                },
                "lag": int(lag) if lag is not None else None,
                "batches": {status: sum(b.status == status for b in batches) for status in BATCH_STATES},
                "resent": sum(max(0, b.sends - 1 - b.attempt) for b in batches),
                "inflight_docs": int(inflight),
                "dead_letters": snap.dead_letters,
                "overlap": snap.overlap,
                "paused": paused(settings, db, snap.paused),
            }
        )
    return report


def select(followed: list[str], patterns: tuple[str, ...]) -> list[str]:
    """The followed databases matching any of ``patterns`` (names or globs); a plain name the farm
    does not follow is kept (it shows as never read)."""
    if not patterns:
        return sorted(followed)
    picked = {db for db in followed if any(fnmatchcase(db, p) for p in patterns)}
    picked |= {p for p in patterns if not any(c in p for c in "*?[")}
    return sorted(picked)


def open_batches(row: dict[str, Any]) -> int:
    return sum(n for status, n in row["batches"].items() if status != "done")


def rows(report: list[dict[str, Any]]) -> None:
    click.echo(f"{'DB':<24} {'HOLDER':<28} {'TOKEN':>5} {'LAG':>5} {'OPEN':>5} {'DLQ':>5}  DONE")
    for r in report:
        click.echo(
            printable(
                f"{r['db']:<24} {r['lease']['holder'] or '-'!s:<28} {r['lease']['token']:>5} "
                f"{r['lag'] if r['lag'] is not None else '-'!s:>5} {open_batches(r):>5} "
                f"{r['dead_letters']:>5}  {r['checkpoint']['done']}"
            )
        )


def summary(report: list[dict[str, Any]], top: int) -> None:
    holders = {str(r["lease"]["holder"]).split("#")[0] for r in report if r["lease"]["holder"]}
    unheld = sum(1 for r in report if not r["lease"]["holder"])
    click.echo(
        f"{len(report)} databases: followed by {len(holders)} dispatcher(s), {unheld} without a holder; "
        f"lag {sum(r['lag'] or 0 for r in report)}, open batches {sum(open_batches(r) for r in report)}, "
        f"dead letters {sum(r['dead_letters'] for r in report)}, paused {sum(r['paused'] for r in report)}"
    )
    behind = sorted((r for r in report if r["lag"]), key=lambda r: -int(r["lag"]))[:top]
    if behind:
        click.echo(f"\nfurthest behind (top {top}):")
        rows(behind)
    dead = sorted((r for r in report if r["dead_letters"]), key=lambda r: -int(r["dead_letters"]))[:top]
    if dead:
        click.echo(f"\nwith dead letters (top {top}):")
        rows(dead)


@click.command()
@pass_settings
@click.option("--db", "dbs", multiple=True, help="Database name or glob (repeatable); all followed if none.")
@click.option("--top", default=20, show_default=True, help="Above this many databases, summarise.")
@click.option("--json", "as_json", is_flag=True, help="Every database's detail as JSON.")
def status(settings: Settings, dbs: tuple[str, ...], top: int, as_json: bool) -> None:
    """Per database: lease holder and token, checkpoints, lag, open batches, dead letters."""
    report = status_report(settings, dbs)
    if as_json:
        echo_json(report)
        return
    if report:
        click.echo(f"farm {report[0]['farm']}")
    if len(report) > top:
        summary(report, top)
    else:
        rows(report)
