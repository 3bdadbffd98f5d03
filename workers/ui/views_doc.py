"""A document's page: its leaves side by side, the strategy's dry run, and resolving it by hand.

Keep-this-leaf and edit-the-merge write through the same safe path as ``couchfarm conflicts
pick/edit`` (``couchfarm.manual``): the leaves are read again and compared with the revs the page
showed (``reread_unchanged``), then the plan (``pick_plan``/``edit_plan``) is carried out by the
engine (``apply``): the new winner first, the other leaves tombstoned only once it was accepted.
A refusal shows the page again as the document is now, with the person's edit kept in the editor.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from couchfarm import manual
from couchfarm.archive import Archive
from couchfarm.archive import undo as undo_resolution
from couchfarm.deadletters import entry_id
from couchfarm.errors import FarmError
from couchfarm.models import ConflictSet, Leaf, Outcome, Resolution
from couchfarm.plan import Plan, build_plan
from couchfarm.redact import redact
from couchfarm.state import paused
from couchfarm.validation import load_validator
from workers.ui import diff
from workers.ui.app import UI, action, route, see
from workers.ui.render import page, q


def doc_path(db: str, doc_id: str) -> str:
    return f"/db/{q(db)}/doc/{q(doc_id)}"


def document(request: Request) -> Response:
    ui: UI = request.app.state.ui
    db, doc_id = request.path_params["db"], request.path_params["doc_id"]
    try:
        conflict = manual.read_conflict(ui.engine, db, doc_id)
    except manual.ManualRefused as exc:
        return page(request, "error.html", 404, title="couchfarm: not found", message=str(exc))
    return show(request, ui, conflict)


def show(
    request: Request,
    ui: UI,
    conflict: ConflictSet,
    *,
    status: int = 200,
    error: str | None = None,
    draft: str | None = None,
) -> Response:
    """The document page for ``conflict``; ``error`` and ``draft`` after a refused action."""
    conflicted = manual.is_conflicted(conflict)
    based = ui.engine.with_base(conflict) if conflicted else conflict
    proposal = manual.propose(ui.engine, conflict) if conflicted else None
    body = proposal.body if proposal else None
    start = body if body is not None else (conflict.live[0].body if conflict.live else {})
    return page(
        request,
        "document.html",
        status,
        title=f"couchfarm: {conflict.doc_id}",
        db=conflict.db,
        doc_id=conflict.doc_id,
        conflict=conflict,
        conflicted=conflicted,
        live=conflict.live,
        has_base=based.base is not None,
        rows=diff.compare(conflict.live, based.base, body),
        attachments=[diff.attachments(leaf) for leaf in conflict.live],
        proposal=proposal,
        proposal_problems=problems(ui, conflict, body) if body is not None else [],
        writes=dry_run(conflict, proposal),
        draft=draft if draft is not None else manual.pretty(start),
        error=error,
        revs=",".join(conflict.revs),
        archived=archived(ui, conflict.db, conflict.doc_id),
        dead=ui.stores.dead.get(entry_id(conflict.db, conflict.doc_id)),
        paused=paused(ui.settings, conflict.db, ui.stores.state.is_paused(conflict.db)),
        archive_db=ui.settings.archive_db,
    )


def problems(ui: UI, conflict: ConflictSet, body: dict[str, Any]) -> list[str]:
    """What the database's schema (the one routing gives this document) says about ``body``."""
    spec = ui.engine.router.spec_for(conflict.db, conflict)
    if not spec.schema_path:
        return []
    return list(load_validator(spec.schema_path, ui.settings.config_dir).errors(body))


def dry_run(conflict: ConflictSet, proposal: manual.Proposal | None) -> list[dict[str, Any]]:
    """The writes the strategy's proposal would make (nothing is written)."""
    if proposal is None or (proposal.body is None and not proposal.delete):
        return []
    resolution = Resolution.deletion() if proposal.body is None else Resolution.merged(proposal.body)
    plan: Plan = build_plan(conflict, resolution, proposal.strategy)
    return list(plan.describe()["writes"])


def archived(ui: UI, db: str, doc_id: str) -> list[dict[str, Any]]:
    if not ui.settings.archive_db:
        return []
    return Archive(ui.client, ui.settings.archive_db).entries(db, doc_id)


# -- actions -----------------------------------------------------------------------------------


def _shown(db: str, form: dict[str, str]) -> ConflictSet:
    """The leaves as the page showed them (their revs are all ``reread_unchanged`` compares)."""
    revs = [r for r in form.get("revs", "").split(",") if r]
    return ConflictSet(db, form.get("doc_id", ""), tuple(Leaf(rev, {}) for rev in revs))


def _current(
    request: Request, ui: UI, form: dict[str, str], draft: str | None = None
) -> ConflictSet | Response:
    """The document re-read; the page again with the reason when its leaves changed meanwhile."""
    before = _shown(request.path_params["db"], form)
    try:
        return manual.reread_unchanged(ui.engine, before)
    except manual.ManualRefused:
        now = manual.read_conflict(ui.engine, before.db, before.doc_id)
        reason = "the leaves changed since this page was shown (someone wrote, or the farm resolved it): "
        return show(request, ui, now, status=409, error=reason + "nothing written; look again.", draft=draft)


def _write(
    request: Request, ui: UI, conflict: ConflictSet, plan: Plan, what: str, draft: str | None = None
) -> Response:
    if not manual.has_writes(plan):
        return see(request, doc_path(conflict.db, conflict.doc_id), f"{what}: nothing to write.")
    result = manual.apply(ui.engine, plan)
    if result.outcome is Outcome.RESOLVED:
        ui.recorder(conflict)
        ui.recorder.results([result])
        return see(
            request,
            doc_path(conflict.db, conflict.doc_id),
            f"{what}: resolved by hand; wrote {', '.join(result.written)}.",
        )
    kept = (
        " Nothing was tombstoned: every leaf is still live."
        if (result.reason or "").startswith("winner")
        else ""
    )
    now = manual.read_conflict(ui.engine, conflict.db, conflict.doc_id)
    message = f"not resolved: {redact(result.reason or result.outcome.value)}.{kept}"
    return show(request, ui, now, status=409, error=message, draft=draft)


def pick(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    conflict = _current(request, ui, form)
    if isinstance(conflict, Response):
        return conflict
    try:
        plan = manual.pick_plan(conflict, form.get("rev", ""))
    except manual.ManualRefused as exc:
        return show(request, ui, conflict, status=409, error=str(exc))
    return _write(request, ui, conflict, plan, f"kept {form.get('rev')}")


def edit(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    text = form.get("body", "")
    conflict = _current(request, ui, form, draft=text)
    if isinstance(conflict, Response):
        return conflict
    if not manual.is_conflicted(conflict):
        return show(request, ui, conflict, status=409, error="no conflict: nothing to resolve.", draft=text)
    try:
        body = manual.parse_edit(text)
    except manual.ManualRefused as exc:
        return show(request, ui, conflict, status=422, error=f"{exc}; nothing written.", draft=text)
    if found := problems(ui, conflict, body):
        error = "the edit does not satisfy the database's schema: " + "; ".join(found) + "; nothing written."
        return show(request, ui, conflict, status=422, error=error, draft=text)
    return _write(request, ui, conflict, manual.edit_plan(conflict, body), "edited merge", draft=text)


def undo(request: Request, form: dict[str, str]) -> Response:
    ui: UI = request.app.state.ui
    db, doc_id = request.path_params["db"], form.get("doc_id", "")
    if not ui.settings.archive_db:
        return see(request, doc_path(db, doc_id), "undo needs archive_db (COUCHFARM_ARCHIVE_DB).")
    archive = Archive(ui.client, ui.settings.archive_db)
    try:
        written = undo_resolution(ui.client, archive, db, doc_id, pick=form.get("pick") or None)
    except FarmError as exc:
        now = manual.read_conflict(ui.engine, db, doc_id)
        return show(request, ui, now, status=409, error=f"undo refused: {redact(str(exc))}")
    return see(request, doc_path(db, doc_id), f"restored from the archive; wrote {', '.join(written)}.")


def attachment(request: Request) -> Response:
    """One leaf's attachment, always as a download (never rendered in this origin)."""
    ui: UI = request.app.state.ui
    params = request.query_params
    name = params.get("name", "")
    data, content_type = ui.client.get_attachment(
        request.path_params["db"], params.get("doc", ""), name, params.get("rev", "")
    )
    headers = {
        "content-disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        "content-security-policy": "sandbox",
    }
    return Response(data, media_type=content_type or "application/octet-stream", headers=headers)


ROUTES = [
    route("/db/{db}/doc/{doc_id:path}", document),
    route("/db/{db}/attachment", attachment),
    route("/db/{db}/pick", action(pick), ["POST"]),
    route("/db/{db}/edit", action(edit), ["POST"]),
    route("/db/{db}/undo", action(undo), ["POST"]),
]
