"""Dead letters: the list with filters (database, reason, age, text), an entry's page, replay and purge.

Replay runs here, in this process, exactly as ``couchfarm dlq replay`` does (``couchfarm.replay``):
each document is re-resolved against its current state with the farm's retries; an entry leaves the
store only when its document is resolved (or no longer conflicted), else it stays with one more
attempt and the new reason. Purge deletes entries without touching the documents.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import click
from starlette.requests import Request
from starlette.responses import Response

from couchfarm import factory, manual
from couchfarm.deadletters import DeadLetter
from couchfarm.errors import NotFound
from couchfarm.failures import Failure
from couchfarm.replay import replay as replay_entries
from workers.cli_dlq import parse_duration
from workers.ui.app import UI, BadInput, action, refuse, route, see
from workers.ui.render import page, q

FILTERS = ("db", "error", "q", "within", "older")
SHOWN = 1000


def _duration(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        return parse_duration(text)
    except click.BadParameter:
        raise BadInput(f"{name}: {text!r} is not a duration like 90s, 15m, 12h, 7d") from None


def select(ui: UI, params: dict[str, str]) -> list[DeadLetter]:
    """The entries matching the filters, oldest first; ``BadInput`` for a bad duration."""
    now = time.time()
    within, older = _duration(params.get("within"), "within"), _duration(params.get("older"), "older")
    entries = ui.stores.dead.list(params.get("db") or None, since=now - within if within else None)
    if older is not None:
        entries = [e for e in entries if e.last_failure <= now - older]
    if params.get("error"):
        entries = [e for e in entries if e.error is Failure.parse(params["error"])]
    if text := (params.get("q") or "").strip().lower():
        entries = [e for e in entries if text in f"{e.doc_id}\n{e.reason}".lower()]
    return entries


def listing(request: Request) -> Response:
    ui: UI = request.app.state.ui
    params = {k: request.query_params.get(k, "") for k in FILTERS}
    entries = select(ui, params)
    everything = ui.stores.dead.list()
    return page(
        request,
        "dead_letters.html",
        title="couchfarm: dead letters",
        entries=entries[:SHOWN],
        total=len(entries),
        params=params,
        filtered=any(params.values()),
        dbs=sorted({e.db for e in everything} | set(ui.databases())),
        errors=sorted({e.error for e in everything}),
        now=time.time(),
    )


def entry_page(request: Request) -> Response:
    ui: UI = request.app.state.ui
    entry = ui.stores.dead.get(request.path_params["id"])
    if entry is None:
        return refuse(request, 404, "no such dead letter (replayed or purged since?)")
    try:
        conflict = manual.read_conflict(ui.engine, entry.db, entry.doc_id)
        leaves, missing = list(conflict.leaves), None
    except (manual.ManualRefused, NotFound) as exc:
        leaves, missing = [], str(exc)
    parts = entry.traceparent.split("-")
    return page(
        request,
        "dead_letter.html",
        title=f"couchfarm: dead letter {entry.doc_id}",
        entry=entry,
        trace_id=parts[1] if len(parts) == 4 else "",
        leaves=leaves,
        missing=missing,
        now=time.time(),
    )


def _chosen(ui: UI, form: dict[str, str]) -> list[DeadLetter]:
    scope = form.get("scope")
    if scope == "one":
        entry = ui.stores.dead.get(form.get("id", ""))
        return [entry] if entry is not None else []
    if scope == "all":
        return ui.stores.dead.list()
    if scope == "filter":
        return select(ui, form)
    raise BadInput("say which entries: one, filter or all")


def _back(form: dict[str, str]) -> str:
    if form.get("scope") == "one" and form.get("back") == "entry":
        return f"/dead-letters/{q(form.get('id', ''))}"
    params = {k: form[k] for k in FILTERS if form.get(k)}
    return "/dead-letters" + (f"?{urlencode(params)}" if params else "")


def replay(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    entries = _chosen(ui, form)
    engine = factory.engine(ui.settings, ui.client, on_conflict=ui.recorder)
    done = replay_entries(engine, ui.stores.dead, entries, factory.policy(ui.settings), sleep=time.sleep)
    ui.recorder.results(r.result for r in done)
    removed = [r for r in done if r.removed]
    kept = [r for r in done if not r.removed]
    message = f"replayed {len(done)}: {len(removed)} resolved and removed, {len(kept)} kept"
    message += "".join(
        f"; {r.entry.doc_id}: {r.result.reason or r.result.outcome.value}"[:160] for r in kept[:5]
    )
    back = _back(form)
    if removed and form.get("scope") == "one":
        back = "/dead-letters"
    return see(request, back, message + ".")


def purge(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    entries = _chosen(ui, form)
    purged = sum(ui.stores.dead.remove(e.id) for e in entries)
    back = "/dead-letters" if form.get("scope") == "one" else _back(form)
    return see(request, back, f"purged {purged} dead letter(s); their documents are unchanged.")


ROUTES = [
    route("/dead-letters", listing),
    route("/dead-letters/{id}", entry_page),
    route("/dead-letters/replay", action(replay), ["POST"]),
    route("/dead-letters/purge", action(purge), ["POST"]),
]
