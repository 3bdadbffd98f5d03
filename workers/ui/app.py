"""The application: routes, the state the views share, the write-action wrapper, error pages."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlencode

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from couchfarm import factory
from couchfarm.couch import CouchClient
from couchfarm.errors import FarmError, NotFound
from couchfarm.insights import InsightRecorder
from couchfarm.redact import redact
from couchfarm.resolution import Engine
from couchfarm.settings import Settings
from workers.ui.access import Access, Guard, same_origin
from workers.ui.render import HERE, page
from workers.ui.stores import Stores, stores

log = logging.getLogger("couchfarm.ui")
Handler = Callable[[Request, dict[str, str]], Response]


class BadInput(ValueError):
    """Raised by a view for input a person can correct (a bad filter, no entries chosen): a 400 page."""


@dataclass
class UI:
    """What every view needs: settings, access rules, Redis stores, the CouchDB client and engine."""

    settings: Settings
    access: Access
    stores: Stores
    client: CouchClient
    engine: Engine
    recorder: InsightRecorder  #: counts what people resolve here, as the workers count theirs
    dbs: tuple[str, ...] = ()  #: databases given with --db, shown even when the farm does not follow them

    def databases(self) -> list[str]:
        """Followed databases (Redis), --db names, and the databases the settings' rules match."""
        names = set(self.stores.state.databases()) | set(self.dbs)
        rules = [rule.name for rule in self.settings.databases]
        names |= {r for r in rules if not any(c in r for c in "*?[")}
        if any(c in r for r in rules for c in "*?["):
            try:
                found = [d for d in self.client.all_dbs() if not d.startswith("_")]
            except FarmError as exc:  # CouchDB down: still show what Redis knows
                log.warning("cannot list the server's databases to match the rules' globs: %s", exc)
                found = []
            names |= {d for d in found if any(fnmatchcase(d, r) for r in rules)}
        return sorted(names - {self.settings.archive_db or ""})


def build(settings: Settings, access: Access, dbs: tuple[str, ...] = ()) -> UI:
    client = factory.couch_client(settings)
    st = stores(settings)
    recorder = factory.insight_recorder(settings, st.insights)
    return UI(settings, access, st, client, factory.engine(settings, client), recorder, dbs)


def see(request: Request, path: str, message: str = "", **params: str) -> RedirectResponse:
    """Redirect (303, so a reload does not post again) to ``path`` with a signed message."""
    ui: UI = request.app.state.ui
    query = {**params, **({"flash": ui.access.sign(message)} if message else {})}

    joiner = "&" if "?" in path else "?"
    return RedirectResponse(path + (f"{joiner}{urlencode(query)}" if query else ""), status_code=303)


def action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A write: refused in read-only mode, from another site, or without this page's CSRF token;
    the handler then runs in a thread (it does blocking I/O) with the form's text fields."""

    async def endpoint(request: Request) -> Response:
        ui: UI = request.app.state.ui
        if ui.access.read_only:
            return refuse(request, 403, "couchfarm ui runs --read-only: nothing can be changed here.")
        form = await request.form()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        user = request.scope.get("state", {}).get("user", "")
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not same_origin(headers) or not ui.access.csrf_ok(user, fields.get("csrf")):
            log.warning(
                "refused a %s %s: %s",
                request.method,
                request.url.path,
                "another site's request" if not same_origin(headers) else "no valid CSRF token",
            )
            return refuse(
                request,
                403,
                "This form is stale or did not come from this page: reload the page and try again.",
            )
        return await run_in_threadpool(handler, request, fields)

    return endpoint


def refuse(request: Request, status: int, message: str) -> Response:
    return page(request, "error.html", status, title="couchfarm: refused", message=message)


def _errors() -> dict[Any, Callable[[Request, Exception], Response]]:
    def not_found(request: Request, exc: Exception) -> Response:
        return refuse(request, 404, redact(str(exc)) or "not found")

    def farm_error(request: Request, exc: Exception) -> Response:
        return refuse(request, 502, f"{type(exc).__name__}: {redact(str(exc))}")

    def redis_error(request: Request, exc: Exception) -> Response:
        return refuse(request, 503, f"the farm's Redis is unavailable: {redact(str(exc))}")

    def bad_input(request: Request, exc: Exception) -> Response:
        return refuse(request, 400, str(exc))

    def bug(request: Request, exc: Exception) -> Response:
        log.exception("couchfarm ui: %s %s failed", request.method, request.url.path, exc_info=exc)
        return refuse(request, 500, "internal error: see the log of couchfarm ui")

    return {
        BadInput: bad_input,
        NotFound: not_found,
        FarmError: farm_error,
        RedisError: redis_error,
        Exception: bug,
    }


def create_app(ui: UI) -> Any:
    """The ASGI application: the Starlette routes behind the access guard."""
    from workers.ui import views_dlq, views_doc, views_farm, views_why

    routes = [
        *views_farm.ROUTES,
        *views_doc.ROUTES,
        *views_dlq.ROUTES,
        *views_why.ROUTES,
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=_errors())
    app.state.ui = ui
    return Guard(app, ui.access)


def route(path: str, endpoint: Any, methods: list[str] | None = None) -> Route:
    return Route(path, endpoint, methods=methods or ["GET"])
