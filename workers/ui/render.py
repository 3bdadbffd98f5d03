"""The Jinja2 environment (autoescape on, undefined names are errors) and the page renderer.

Everything a page shows goes through autoescaping; URLs built from document ids, database names or
revs go through the ``q`` filter (percent-encoding with nothing safe), so an id such as
``x<script>alert(1)</script>`` or ``a/b?c#d`` is text in the page and one path segment in a link.
JSON handed to the page's scripts goes through ``tojson``, which escapes ``<``, ``>``, ``&`` and ``'``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from couchfarm.manual import ABSENT

HERE = Path(__file__).resolve().parent
ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def q(value: Any) -> str:
    """One URL path segment or query value: every reserved character percent-encoded."""
    return quote(str(value), safe="")


def pretty(value: Any) -> str:
    """A JSON value as a person reads it (indented, non-ASCII kept); ``-`` for an absent field."""
    if value is ABSENT:
        return "-"
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def compact(value: Any, width: int = 80) -> str:
    text = "-" if value is ABSENT else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def ago(seconds: float | None) -> str:
    """``42s``, ``7m``, ``3h``, ``2d``: a duration as a person glances at it."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def short(rev: str) -> str:
    generation, _, digest = str(rev).partition("-")
    return f"{generation}-{digest[:8]}" if digest else str(rev)


def since(stamp: float | None) -> str:
    return ago(time.time() - stamp) if stamp else "-"


ENV.filters.update(q=q, pretty=pretty, compact=compact, ago=ago, when=when, short=short, since=since)
ENV.globals.update(ABSENT=ABSENT, urlencode=urlencode)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with what every page needs: the user, the CSRF token, read-only, a flash."""
    ui = request.app.state.ui
    user = request.scope.get("state", {}).get("user", "")
    flash = ui.access.unsign(request.query_params.get("flash"))
    html = ENV.get_template(template).render(
        request=request,
        user=user,
        csrf=ui.access.csrf_token(user),
        read_only=ui.access.read_only,
        flash=flash,
        title=context.pop("title", "couchfarm"),
        **context,
    )
    return HTMLResponse(html, status_code=status)
