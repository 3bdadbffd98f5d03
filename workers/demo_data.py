"""The demo's data: documents of three types, offline edits that conflict, and the farm's settings.

- readings (``type: reading``): last write wins on ``updated_at``;
- counters (``type: counter``): field merge, ``count`` takes the maximum, other fields last write wins;
- orders (``type: order``): field merge, ``tags`` union, ``status`` by priority, validated by a JSON
  Schema; a few orders get a negative quantity on one side, so their merge is invalid and they are
  dead-lettered with the schema's reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from couchfarm.couch import CouchClient

DB = "demo"
STATUSES = ["new", "paid", "shipped", "cancelled"]
ORDER_SCHEMA = {
    "type": "object",
    "required": ["type", "qty", "status"],
    "properties": {"qty": {"type": "integer", "minimum": 0}, "status": {"enum": STATUSES}},
}


def settings_yaml(folder: Path) -> Path:
    schema = folder / "order.schema.json"
    schema.write_text(json.dumps(ORDER_SCHEMA, indent=2))
    path = folder / "demo-farm.yaml"
    path.write_text(f"""# couchfarm demo settings: one database, a strategy per document type
batch_size: 25
batch_max_wait: 0.2
feed_deadline: 2
lease_ttl: 10
writer_field: edited_on      # "why conflicts happen" counts which node wrote each leaf
archive_db: {DB}-archive     # every resolution archived: `couchfarm undo` and the UI's undo work
databases:
  - name: {DB}
    strategy: lww
    options: {{field: updated_at}}
    types:
      - {{field: type, value: counter, strategy: fields,
         options: {{timestamp: updated_at, rules: {{count: max, "*": lww}}}}}}
      - {{field: type, value: order, strategy: fields, schema: {schema},
         options: {{timestamp: updated_at,
                   rules: {{tags: union, status: {{priority: [cancelled, shipped, paid, new]}}, "*": lww}}}}}}
""")
    return path


def base_docs(n: int) -> list[dict[str, Any]]:
    docs = []
    for i in range(n):
        kind = ("reading", "reading", "counter", "order")[i % 4]
        doc: dict[str, Any] = {"_id": f"{kind}-{i:04d}", "type": kind, "updated_at": "2026-01-01T00:00:00Z"}
        if kind == "reading":
            doc |= {"celsius": 20.0, "sensor": f"s{i % 7}"}
        elif kind == "counter":
            doc |= {"count": 10, "label": "visits"}
        else:
            doc |= {"qty": 1, "status": "new", "tags": ["web"]}
        docs.append(doc)
    return docs


def offline_edit(doc: dict[str, Any], side: int, poison: bool) -> dict[str, Any]:
    """One side's edit while the nodes cannot see each other (side 0 is older than side 1)."""
    i = int(doc["_id"].rsplit("-", 1)[1])
    edited = dict(doc, updated_at=f"2026-03-0{1 + side}T12:00:0{i % 10}Z", edited_on=f"node-{'ab'[side]}")
    if doc["type"] == "reading":
        edited["celsius"] = 20.0 + (i % 5) + side
    elif doc["type"] == "counter":
        edited["count"] = doc["count"] + (i % 7) + 3 * side
    else:
        edited["status"] = STATUSES[(i + side) % 4]
        edited["tags"] = sorted({*doc["tags"], ("mobile", "store")[side]})
        edited["qty"] = -1 if poison and side == 0 else doc["qty"] + side
    return edited


def seed(client: CouchClient, n: int) -> list[dict[str, Any]]:
    client.create_db(DB)
    docs = base_docs(n)
    for i in range(0, len(docs), 500):
        client.bulk_docs(DB, docs[i : i + 500])
    return docs


def edit_offline(clients: list[CouchClient], n: int, poison_every: int = 40) -> None:
    """Conflicting edits of every document on both nodes."""
    for side, client in enumerate(clients):
        current = {
            r["id"]: r["doc"] for r in client.all_docs(DB, include_docs=True) if not r["id"].startswith("_")
        }
        edits = [
            offline_edit(
                doc, side, poison=doc["type"] == "order" and int(doc_id.rsplit("-", 1)[1]) % poison_every == 3
            )
            for doc_id, doc in sorted(current.items())
        ]
        for i in range(0, len(edits), 500):
            client.bulk_docs(DB, edits[i : i + 500])
