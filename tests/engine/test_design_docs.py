"""Conflicted ``_design/`` documents: dead-lettered with a reason unless a database rule opts in,
and listed by ``couchfarm conflicts list`` (pouchdb-server)."""

from __future__ import annotations

import json
from pathlib import Path

from couchfarm import manual
from couchfarm.couch import CouchClient
from tests.engine.test_cli_resolve import couchfarm
from tests.helpers import live_leaves, make_conflict

DDOC = "_design/app"
VIEWS = [
    {"updated_at": "2026-01-01", "views": {"by_name": {"map": "function (doc) { emit(doc.name); }"}}},
    {"updated_at": "2026-02-01", "views": {"by_age": {"map": "function (doc) { emit(doc.age); }"}}},
]


def seed(client: CouchClient, db: str) -> None:
    make_conflict(client, db, DDOC, VIEWS)
    make_conflict(client, db, "plain", [{"updated_at": "2026-01-01"}, {"updated_at": "2026-02-01"}])


def test_resolve_dead_letters_a_design_document_with_the_reason(
    client: CouchClient, db: str, couch_url: str
) -> None:
    seed(client, db)
    out = couchfarm(couch_url, "resolve", db, "--json", "--strategy", "lww:field=updated_at")
    assert out.returncode == 1, out.stderr
    results = {r["doc_id"]: r for r in json.loads(out.stdout)["results"]}
    assert results["plain"]["outcome"] == "resolved"
    design = results[DDOC]
    assert design["outcome"] == "dead_lettered" and design["error"] == "DesignDocument"
    assert "design documents are code" in design["reason"] and "resolve_design_docs" in design["reason"]
    assert len(live_leaves(client, db, DDOC)) == 2  # untouched


def test_a_database_rule_may_opt_in(client: CouchClient, db: str, couch_url: str, tmp_path: Path) -> None:
    seed(client, db)
    config = tmp_path / "farm.yaml"
    config.write_text(
        f"databases:\n  - name: {db}\n    strategy: lww\n    options: {{field: updated_at}}\n"
        "    resolve_design_docs: true\n"
    )
    out = couchfarm(couch_url, "resolve", db, "--json", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["counts"] == {"resolved": 2}
    (leaf,) = live_leaves(client, db, DDOC)
    assert set(leaf["views"]) == {"by_age"}


def test_conflicts_list_shows_design_documents(client: CouchClient, db: str) -> None:
    seed(client, db)
    source, found = manual.list_conflicts(client, db)
    assert source == "scan" and {item["id"] for item in found} == {DDOC, "plain"}
    assert manual.install_view(client, db) == "created"
    assert client.get(db, manual.DESIGN_ID)["options"] == {"include_design": True}
    assert manual.install_view(client, db) == "unchanged"
    source, found = manual.list_conflicts(client, db)
    assert source == "view" and {item["id"] for item in found} == {DDOC, "plain"}
    (design,) = (item for item in found if item["id"] == DDOC)
    assert len(design["revs"]) == 1  # the conflicting (non-winning) rev
