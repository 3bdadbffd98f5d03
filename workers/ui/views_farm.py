"""The overview (``GET /``) and a database's page (``GET /db/{db}``), with pause, resume, install-view."""

from __future__ import annotations

import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from couchfarm import manual
from couchfarm.deadletters import DeadLetter
from couchfarm.errors import FarmError
from couchfarm.redact import redact
from workers.cli_status import status_report
from workers.ui.app import UI, action, route, see
from workers.ui.conflicts import Listing, conflicted
from workers.ui.render import page, q

CACHE_SECONDS = 15.0  #: the overview counts conflicts at most this often per database
SHOWN = 500  #: documents listed on a database page (the rest are counted)
_cache: dict[tuple[int, str], tuple[float, Listing]] = {}
_lock = threading.Lock()


def listing(ui: UI, db: str, budget: float, fresh: bool = False) -> Listing:
    """The database's conflicted documents (cached briefly), their first-seen times recorded."""
    key, now = (id(ui), db), time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and not fresh and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    found = conflicted(ui.client, db, budget)
    ui.stores.ages.seen(db, [d.doc_id for d in found.docs], complete=found.complete)
    with _lock:
        _cache[key] = (now, found)
    return found


def _row(ui: UI, report: dict[str, Any]) -> dict[str, Any]:
    db = report["db"]
    try:
        found = listing(ui, db, budget=2.0)
        report["conflicted"] = len(found.docs)
        report["conflicted_complete"] = found.complete
    except FarmError as exc:
        report["conflicted"], report["error"] = None, redact(str(exc))
    report["resolved_hour"] = ui.stores.insights.total(db, "resolved", 3600)
    report["conflicts_hour"] = ui.stores.insights.total(db, "n", 3600)
    return report


def _report(ui: UI, names: list[str]) -> list[dict[str, Any]]:
    st = ui.stores
    return status_report(ui.settings, tuple(names), state=st.state, book=st.ledger, dead=st.dead)


def overview(request: Request) -> Response:
    ui: UI = request.app.state.ui
    rows = [_row(ui, r) for r in _report(ui, ui.databases())]
    return page(
        request,
        "overview.html",
        title="couchfarm: overview",
        rows=rows,
        dead_total=ui.stores.dead.count(),
    )


def database(request: Request) -> Response:
    ui: UI = request.app.state.ui
    db = request.path_params["db"]
    found = listing(ui, db, budget=10.0, fresh=True)
    ages = ui.stores.ages.seen(db, [d.doc_id for d in found.docs[:SHOWN]], complete=False)
    dead = ui.stores.dead.list(db)
    failed = {e.doc_id: e for e in dead}
    docs = [
        {
            "id": d.doc_id,
            "leaves": d.leaves,
            "age": _age(ages.get(d.doc_id), failed.get(d.doc_id)),
            "dead": failed.get(d.doc_id),
        }
        for d in found.docs[:SHOWN]
    ]
    (status,) = _report(ui, [db])
    rule = ui.settings.rule_for(db)
    return page(
        request,
        "database.html",
        title=f"couchfarm: {db}",
        db=db,
        farm=status,
        listing=found,
        docs=docs,
        more=max(0, len(found.docs) - SHOWN),
        dead=dead,
        paused_by_config=bool(rule and rule.paused),
        strategy=(rule.strategy if rule else "winner"),
    )


def _age(seen: float | None, entry: DeadLetter | None) -> float | None:
    """Seconds since the conflict was first seen: by a listing here, or by its first failure."""
    times = [t for t in (seen, entry.first_failure if entry else None) if t]
    return time.time() - min(times) if times else None


def _db_page(db: str) -> str:
    return f"/db/{q(db)}"


def pause(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    db = request.path_params["db"]
    ui.stores.state.pause(db)
    return see(request, _db_page(db), f"{db}: automatic resolution paused; new conflicts wait for people.")


def unpause(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    db = request.path_params["db"]
    ui.stores.state.unpause(db)
    return see(request, _db_page(db), f"{db}: automatic resolution resumed from its checkpoint.")


def install_view(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    db = request.path_params["db"]
    outcome = manual.install_view(ui.client, db)
    return see(request, _db_page(db), f"{db}: {manual.DESIGN_ID} {outcome}.")


ROUTES = [
    route("/", overview),
    route("/db/{db}", database),
    route("/db/{db}/pause", action(pause), ["POST"]),
    route("/db/{db}/resume", action(unpause), ["POST"]),
    route("/db/{db}/install-view", action(install_view), ["POST"]),
]
