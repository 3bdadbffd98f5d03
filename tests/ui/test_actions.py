"""Every write of ``couchfarm ui`` over HTTP against real servers: keep a leaf, edit the merge, undo
from the archive, pause, install the view, replay and purge dead letters; each refusal leaves the
document as it was."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetter, DeadLetters
from couchfarm.insights import InsightStore
from tests.helpers import FARM, live_leaves, make_conflict
from tests.ui.conftest import Running, running, ui_env, write_config
from workers.local_servers import PouchServer, RedisServer

A, F = "2-" + "a" * 32, "2-" + "f" * 32  # F is CouchDB's winner (the higher hash)


def doc_url(db: str, doc_id: str) -> str:
    return f"/db/{quote(db, safe='')}/doc/{quote(doc_id, safe='')}"


def form(ui: Running, path: str, **fields: str) -> dict[str, str]:
    page = ui.get(path).text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, f"no form on {path}"
    revs = re.search(r'name="revs" value="([^"]*)"', page)
    return {"csrf": match[1], **({"revs": revs[1]} if revs else {}), **fields}


def seed(couch: CouchClient, db: str, doc_id: str = "order-1", qty: int = 2) -> None:
    make_conflict(
        couch,
        db,
        doc_id,
        [
            {"type": "order", "qty": qty, "updated_at": "2026-02-01", "by": "gw-a"},
            {"type": "order", "qty": 1, "updated_at": "2026-01-01", "by": "gw-b"},
        ],
        base={"type": "order", "qty": 1, "updated_at": "2025-12-01"},
        hashes=["a" * 32, "f" * 32],
    )


@pytest.fixture
def env(
    ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any, dbname: str, tmp_path: Path
) -> dict[str, str]:
    return ui_env(ui_pouch, ui_redis, write_config(tmp_path, dbname, archive=f"{dbname}-archive"))


def test_keep_a_leaf_refuses_stale_pages_and_counts_the_resolution(
    env: dict[str, str], couch: CouchClient, redis: Any, dbname: str
) -> None:
    seed(couch, dbname)
    with running(env) as ui:
        shown = form(ui, doc_url(dbname, "order-1"), doc_id="order-1", rev=A)
        assert shown["revs"] == f"{A},{F}"
        unknown = ui.post(f"/db/{dbname}/pick", {**shown, "rev": "2-zzz"})
        assert unknown.status_code == 409 and "is not a live leaf" in unknown.text
        stale = ui.post(f"/db/{dbname}/pick", {**shown, "revs": f"{A},2-{'0' * 32}"})
        assert stale.status_code == 409 and "leaves changed since this page was shown" in stale.text
        assert len(live_leaves(couch, dbname, "order-1")) == 2
        done = ui.post(f"/db/{dbname}/pick", shown)
        assert done.status_code == 303
        after = ui.get(done.headers["location"]).text
        assert "resolved by hand" in after and "no conflict" in after
        assert "Archived resolutions" in after and 'id="undo"' in after
    (left,) = live_leaves(couch, dbname, "order-1")
    assert left["qty"] == 2 and left["by"] == "gw-a"
    store = InsightStore(redis, "test", window=86400, bucket=60)
    assert store.total(dbname, "n", 3600) == 1 and store.total(dbname, "resolved", 3600) == 1


def test_edit_the_merge_validates_then_writes(env: dict[str, str], couch: CouchClient, dbname: str) -> None:
    seed(couch, dbname)
    with running(env) as ui:
        shown = form(ui, doc_url(dbname, "order-1"), doc_id="order-1")
        for body, status, says in (
            ("{not json", 422, "not valid JSON"),
            ('{"_id": "x", "qty": 1}', 422, "reserved by CouchDB: _id"),
            ('{"type": "order", "qty": -5}', 422, "-5 is less than the minimum of 0"),
        ):
            refused = ui.post(f"/db/{dbname}/edit", {**shown, "body": body})
            assert refused.status_code == status and says in refused.text, body
            assert body.replace('"', "&#34;") in refused.text  # the edit is kept in the editor
        assert len(live_leaves(couch, dbname, "order-1")) == 2
        done = ui.post(
            f"/db/{dbname}/edit", {**shown, "body": '{"type": "order", "qty": 7, "note": "by hand"}'}
        )
        assert done.status_code == 303
    (left,) = live_leaves(couch, dbname, "order-1")
    assert {k: v for k, v in left.items() if not k.startswith("_")} == {
        "type": "order",
        "qty": 7,
        "note": "by hand",
    }


def test_a_write_the_server_refuses_tombstones_nothing(
    env: dict[str, str], couch: CouchClient, dbname: str
) -> None:
    seed(couch, dbname)
    guard = "function(n,o,u){ if (n.qty === 99) { throw({forbidden: 'qty 99 is not allowed here'}); } }"
    couch.put(dbname, {"_id": "_design/guard", "validate_doc_update": guard})
    with running(env) as ui:
        shown = form(ui, doc_url(dbname, "order-1"), doc_id="order-1")
        refused = ui.post(f"/db/{dbname}/edit", {**shown, "body": '{"type": "order", "qty": 99}'})
        assert refused.status_code == 409
        assert "qty 99 is not allowed here" in refused.text and "every leaf is still live" in refused.text
    assert len(live_leaves(couch, dbname, "order-1")) == 2


def test_undo_restores_the_archived_conflict(env: dict[str, str], couch: CouchClient, dbname: str) -> None:
    seed(couch, dbname)
    with running(env) as ui:
        ui.post(f"/db/{dbname}/pick", form(ui, doc_url(dbname, "order-1"), doc_id="order-1", rev=A))
        assert len(live_leaves(couch, dbname, "order-1")) == 1
        undone = ui.post(f"/db/{dbname}/undo", form(ui, doc_url(dbname, "order-1"), doc_id="order-1"))
        assert undone.status_code == 303
        assert "restored from the archive" in ui.get(undone.headers["location"]).text
    assert len(live_leaves(couch, dbname, "order-1")) == 2


def test_database_page_lists_conflicts_with_design_documents_and_installs_the_view(
    env: dict[str, str], couch: CouchClient, redis: Any, dbname: str
) -> None:
    seed(couch, dbname)
    make_conflict(couch, dbname, "_design/app", [{"language": "javascript"}, {"views": {}}])
    with running(env) as ui:
        page = ui.get(f"/db/{dbname}").text
        assert "From a scan of the changes feed" in page
        assert doc_url(dbname, "_design/app") in page and doc_url(dbname, "order-1") in page
        installed = ui.post(f"/db/{dbname}/install-view", form(ui, f"/db/{dbname}"))
        assert installed.status_code == 303
        page = ui.get(f"/db/{dbname}").text
        assert "conflicts view, plus conflicted design documents" in page
        assert doc_url(dbname, "_design/app") in page and doc_url(dbname, "order-1") in page
        assert ui.post(f"/db/{dbname}/pause", form(ui, f"/db/{dbname}")).status_code == 303
        assert "Resume" in ui.get(f"/db/{dbname}").text
        assert redis.sismember("couchfarm:test:paused", dbname)


def test_attachments_are_listed_per_leaf_and_downloaded_never_rendered(
    env: dict[str, str], couch: CouchClient, dbname: str
) -> None:
    html = base64.b64encode(b"<script>alert(1)</script>").decode()
    make_conflict(
        couch,
        dbname,
        "doc",
        [{"v": 1, "_attachments": {"page.html": {"content_type": "text/html", "data": html}}}, {"v": 2}],
    )
    with running(env) as ui:
        page = ui.get(doc_url(dbname, "doc")).text
        link = re.search(r'href="(/db/[^"]+/attachment\?[^"]+)"', page)
        assert link and "page.html" in page and "No attachment." in page
        got = ui.get(link[1].replace("&amp;", "&"))
        assert got.status_code == 200 and got.content == b"<script>alert(1)</script>"
        assert got.headers["content-disposition"].startswith("attachment;")
        assert "sandbox" in got.headers["content-security-policy"]


def test_dead_letters_filter_replay_and_purge(
    env: dict[str, str], couch: CouchClient, redis: Any, dbname: str
) -> None:
    store = DeadLetters(redis, FARM)
    now = time.time()
    seed(couch, dbname, "order-1")
    seed(couch, dbname, "order-2", qty=-3)  # its newer leaf is invalid: replaying it fails again
    store.add(DeadLetter(dbname, "order-1", [A, F], "fields", "Conflict", "still a 409"), now=now - 7200)
    store.add(DeadLetter(dbname, "order-2", [A, F], "fields", "InvalidDocument", "qty: -3 < 0"), now=now)
    store.add(DeadLetter("other", "x", [A], "lww", "Rejected", "forbidden"), now=now)
    with running(env, dbs=(dbname,)) as ui:

        def shown(query: str) -> set[str]:
            page = ui.get("/dead-letters" + query)
            assert page.status_code == 200, page.text
            return set(re.findall(r'data-entry="([0-9a-f]+)"', page.text))

        ids = {e.doc_id: e.id for e in store.list()}
        assert shown("") == set(ids.values())
        assert shown(f"?db={dbname}") == {ids["order-1"], ids["order-2"]}
        assert shown("?error=InvalidDocument") == {ids["order-2"]}
        assert shown("?q=409") == {ids["order-1"]}
        assert shown("?within=1h") == {ids["order-2"], ids["x"]}
        assert shown("?older=1h") == {ids["order-1"]}
        assert ui.get("/dead-letters?within=soon").status_code == 400
        entry = ui.get(f"/dead-letters/{ids['order-2']}").text
        assert "qty: -3 &lt; 0" in entry and "Leaves now" in entry

        token = form(ui, "/dead-letters")["csrf"]
        replayed = ui.post("/dead-letters/replay", {"csrf": token, "scope": "filter", "db": dbname})
        assert replayed.status_code == 303
        message = ui.get(replayed.headers["location"]).text
        assert "replayed 2: 1 resolved and removed, 1 kept" in message and "order-2" in message
        assert store.get(ids["order-1"]) is None and store.get(ids["order-2"]).attempts == 2
        purged = ui.post("/dead-letters/purge", {"csrf": token, "scope": "filter", "error": "Rejected"})
        assert "purged 1 dead letter(s)" in ui.get(purged.headers["location"]).text
        assert (
            ui.post("/dead-letters/purge", {"csrf": token, "scope": "one", "id": ids["order-2"]}).status_code
            == 303
        )
        assert ui.post("/dead-letters/purge", {"csrf": token}).status_code == 400
    assert store.count() == 0
    assert len(live_leaves(couch, dbname, "order-1")) == 1 and len(live_leaves(couch, dbname, "order-2")) == 2


def test_the_workers_engine_counts_conflicts(env: dict[str, str]) -> None:
    from tasks import context
    from tests.ui.conftest import settings

    context.configure(settings(env))
    try:
        ctx = context.context()
        assert ctx.engine.on_conflict is ctx.insights
        assert ctx.insights.writer_field == "by"
    finally:
        context.configure(None)  # type: ignore[arg-type]
