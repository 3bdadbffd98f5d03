"""Why conflicts happen (``GET /why``): per database, conflicts over time by document type, by field
that differs between the leaves, and by writer, from the counts the workers keep in Redis
(``couchfarm/insights.py``). Each dimension is a chart (uPlot, vendored) and a table.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from couchfarm.insights import DIMENSIONS, Bucket
from workers.ui.app import UI, route
from workers.ui.render import page

POINTS = 48  #: at most this many points per chart (buckets are summed into them)
TOP = 5  #: labels drawn per chart (the table lists them all)
SPANS = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def group(buckets: list[Bucket]) -> list[Bucket]:
    """Consecutive buckets summed so that a chart has at most ``POINTS`` points."""
    size = max(1, math.ceil(len(buckets) / POINTS))
    out = []
    for i in range(0, len(buckets), size):
        total: Counter[str] = Counter()
        for bucket in buckets[i : i + size]:
            total.update(bucket.counts)
        out.append(Bucket(buckets[i].start, dict(total)))
    return out


def dimension(buckets: list[Bucket], points: list[Bucket], key: str, title: str) -> dict[str, Any]:
    """A dimension's table (label, count, share) and chart (the ``TOP`` labels over time)."""
    totals: Counter[str] = Counter()
    for bucket in buckets:
        totals.update(bucket.of(key))
    conflicts = sum(b.counts.get("n", 0) for b in buckets) or 1
    top = [name for name, _ in totals.most_common(TOP)]
    return {
        "key": key,
        "title": title,
        "table": [(name, n, n / conflicts) for name, n in totals.most_common()],
        "chart": {
            "title": title,
            "x": [p.start for p in points],
            "series": [{"label": name, "values": [p.of(key).get(name, 0) for p in points]} for name in top],
        },
    }


def why(request: Request) -> Response:
    ui: UI = request.app.state.ui
    names = ui.databases()
    db = request.query_params.get("db") or (names[0] if names else "")
    span_name = request.query_params.get("span", "24h")
    seconds = min(SPANS.get(span_name, 86400), ui.settings.insights_window)
    buckets = ui.stores.insights.series(db, seconds) if db else []
    points = group(buckets)
    overall = {
        "title": "conflicts and resolutions",
        "x": [p.start for p in points],
        "series": [
            {"label": "conflicts", "values": [p.counts.get("n", 0) for p in points]},
            {"label": "resolved", "values": [p.counts.get("resolved", 0) for p in points]},
        ],
    }
    titles = {"t": "by document type", "f": "by field that differs", "w": "by writer"}
    return page(
        request,
        "why.html",
        title="couchfarm: why conflicts happen",
        db=db,
        dbs=names,
        span=span_name,
        spans=[s for s, n in SPANS.items() if n <= ui.settings.insights_window] or ["24h"],
        conflicts=sum(b.counts.get("n", 0) for b in buckets),
        resolved=sum(b.counts.get("resolved", 0) for b in buckets),
        overall=overall,
        dimensions=[dimension(buckets, points, key, titles[key]) for key in DIMENSIONS],
        writer_field=ui.settings.writer_field,
        type_field=ui.settings.insights_type_field,
        bucket=ui.settings.insights_bucket,
    )


ROUTES = [route("/why", why)]
