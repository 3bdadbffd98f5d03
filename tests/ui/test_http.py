"""``couchfarm ui`` over HTTP (no browser needed, always run): access, CSRF, read-only, escaping,
no secret in any page, and every action through the farm's safe write path."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetter, DeadLetters
from couchfarm.state import FarmState
from tests.helpers import FARM, live_leaves, make_conflict
from tests.ui.conftest import COUCH_PW, REDIS_PW, UI_PW, Running, running, ui_env, write_config
from workers.local_servers import PouchServer, RedisServer

HOSTILE = "x<script>alert(1)</script>"
A, B = "2-" + "a" * 32, "2-" + "b" * 32  # B is CouchDB's winner (the higher hash)


def token(ui: Running, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', ui.get(path).text)
    assert match, f"no form on {path}"
    return match[1]


def seed(couch: CouchClient, db: str, doc_id: str = "d", **fields: Any) -> list[str]:
    return make_conflict(
        couch,
        db,
        doc_id,
        [
            {"updated_at": "2026-02-01", "name": "new", "by": "gw-a", **fields},
            {"updated_at": "2026-01-01", "name": "old", "by": "gw-b"},
        ],
        base={"updated_at": "2025-12-01", "name": "first"},
        hashes=["a" * 32, "b" * 32],
    )


def doc_url(db: str, doc_id: str) -> str:
    return f"/db/{quote(db, safe='')}/doc/{quote(doc_id, safe='')}"


# -- access ------------------------------------------------------------------------------------


def test_every_request_needs_the_credentials(
    ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any
) -> None:
    with running(ui_env(ui_pouch, ui_redis, None)) as ui:
        for path in ("/", "/dead-letters", "/why", "/static/ui.css", "/db/x/doc/y"):
            answer = ui.get(path, auth=None)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Basic ")
            assert ui.get(path, auth=("ops", "wrong")).status_code == 401
            assert ui.get(path, auth=("someone", UI_PW)).status_code == 401
        assert ui.post("/db/x/pause", {}, auth=None).status_code == 401
        page = ui.get("/")
        assert page.status_code == 200 and "What is waiting for people" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert ui.get("/static/vendor/uPlot.iife.min.js").status_code == 200


def test_writes_need_this_pages_csrf_token(
    ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any, couch: CouchClient, dbname: str
) -> None:
    couch.create_db(dbname)
    state = FarmState(redis, FARM)
    with running(ui_env(ui_pouch, ui_redis, None), dbs=(dbname,)) as ui:
        path = f"/db/{dbname}/pause"
        good = token(ui, f"/db/{dbname}")
        assert ui.post(path, {}).status_code == 403
        assert ui.post(path, {"csrf": "123.abc"}).status_code == 403
        forged = f"{int(time.time())}.{'0' * 40}"
        assert ui.post(path, {"csrf": forged}).status_code == 403
        evil = ui.post(path, {"csrf": good}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403 and "did not come from this page" in evil.text
        cross = ui.post(path, {"csrf": good}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        assert not state.is_paused(dbname)
        done = ui.post(path, {"csrf": good}, headers={"Origin": ui.url})
        assert done.status_code == 303 and state.is_paused(dbname)
        assert "paused" in ui.get(done.headers["location"]).text
    with running(ui_env(ui_pouch, ui_redis, None), dbs=(dbname,)) as other:  # another process, another key
        assert other.post(f"/db/{dbname}/resume", {"csrf": good}).status_code == 403
        assert state.is_paused(dbname)


def test_a_forged_message_is_not_shown(ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any) -> None:
    with running(ui_env(ui_pouch, ui_redis, None)) as ui:
        page = ui.get("/?flash=" + quote("WW91IHdlcmUgaGFja2Vk.0000"))
        assert page.status_code == 200 and "You were hacked" not in page.text


def test_read_only_shows_and_changes_nothing(
    ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any, couch: CouchClient, dbname: str, tmp_path: Path
) -> None:
    seed(couch, dbname)
    DeadLetters(redis, FARM).add(DeadLetter(dbname, "d", [A, B], "lww", "Conflict", "still failing"))
    env = ui_env(ui_pouch, ui_redis, write_config(tmp_path, dbname))
    with running(env, read_only=True) as ui:
        pages = [ui.get(p) for p in ("/", f"/db/{dbname}", doc_url(dbname, "d"), "/dead-letters", "/why")]
        assert all(p.status_code == 200 for p in pages)
        assert all('method="post"' not in p.text for p in pages)
        assert "read-only" in pages[0].text
        refused = ui.post(f"/db/{dbname}/pick", {"doc_id": "d", "rev": A, "revs": f"{A},{B}"})
        assert refused.status_code == 403 and "--read-only" in refused.text
    assert len(live_leaves(couch, dbname, "d")) == 2


# -- escaping and secrets ----------------------------------------------------------------------


def test_hostile_ids_fields_and_values_are_text(
    ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any, couch: CouchClient, dbname: str, tmp_path: Path
) -> None:
    evil_field, evil_value = "<img src=x onerror=alert(2)>", "</pre><script>alert(3)</script>"
    make_conflict(couch, dbname, HOSTILE, [{evil_field: evil_value, "v": 1}, {evil_field: "b", "v": 2}])
    DeadLetters(redis, FARM).add(
        DeadLetter(dbname, HOSTILE, [A, B], "lww", "<b>Err</b>", f"bad {evil_value}")
    )
    env = ui_env(ui_pouch, ui_redis, write_config(tmp_path, dbname))
    with running(env) as ui:
        entry = DeadLetters(redis, FARM).list(dbname)[0]
        recorded = ui.post(
            "/db/" + dbname + "/edit",
            {"csrf": token(ui, doc_url(dbname, HOSTILE)), "doc_id": HOSTILE, "revs": "x", "body": evil_value},
        )
        paths = [
            "/",
            f"/db/{dbname}",
            doc_url(dbname, HOSTILE),
            "/dead-letters",
            f"/dead-letters?q={quote(HOSTILE)}",
            f"/dead-letters/{entry.id}",
            f"/why?db={dbname}",
        ]
        pages = {p: ui.get(p) for p in paths}
        pages["edit refused"] = recorded
        for path, page in pages.items():
            assert page.status_code in (200, 409), (path, page.status_code)
            for raw in ("<script>alert(", "<img src=x", "<b>Err</b>"):
                assert raw not in page.text, (path, raw)
        doc_page = pages[doc_url(dbname, HOSTILE)].text
        assert "x&lt;script&gt;alert(1)&lt;/script&gt;" in doc_page
        assert "&lt;img src=x onerror=alert(2)&gt;" in doc_page
        assert f'href="{doc_url(dbname, HOSTILE)}"' in pages[f"/db/{dbname}"].text  # one path segment


def test_no_password_in_any_page(
    ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any, couch: CouchClient, dbname: str, tmp_path: Path
) -> None:
    seed(couch, dbname)
    DeadLetters(redis, FARM).add(
        DeadLetter(dbname, "d", [A, B], "lww", "Unavailable", f"GET {ui_pouch.url}/{dbname} failed")
    )
    env = ui_env(ui_pouch, ui_redis, write_config(tmp_path, dbname, archive=f"{dbname}-archive"))
    texts = []
    with running(env) as ui:
        entry = DeadLetters(redis, FARM).list()[0]
        for path in (
            "/",
            f"/db/{dbname}",
            doc_url(dbname, "d"),
            doc_url(dbname, "missing"),
            "/db/no-such-db",
            "/dead-letters",
            f"/dead-letters/{entry.id}",
            "/why",
            f"/why?db={dbname}",
            "/static/ui.js",
            "/static/charts.js",
        ):
            answer = ui.get(path)
            texts.append(answer.text + str(answer.headers))
        texts.append(ui.post(f"/db/{dbname}/pause", {}).text)
    broken = ui_env(ui_pouch, ui_redis, None, COUCHFARM_COUCH_URL=f"http://admin:{COUCH_PW}@127.0.0.1:9")
    with running(broken, dbs=("gone",)) as ui:  # CouchDB unreachable: the error pages name no password
        for path in ("/", "/db/gone", doc_url("gone", "d"), "/dead-letters"):
            answer = ui.get(path)
            texts.append(answer.text)
        assert answer.status_code == 200
    everything = "\n".join(texts)
    assert "127.0.0.1:9" in everything or "Unavailable" in everything  # the failure is shown...
    for secret in (COUCH_PW, REDIS_PW, UI_PW):
        assert secret not in everything, secret  # ...without any password


# -- starting ----------------------------------------------------------------------------------


def test_the_command_refuses_to_start_without_credentials(
    ui_pouch: PouchServer, ui_redis: RedisServer, redis: Any
) -> None:
    import os
    import subprocess
    import sys

    from workers.local_servers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    env |= {"COUCHFARM_COUCH_URL": ui_pouch.url, "COUCHFARM_REDIS_URL": ui_redis.url}
    cmd = [sys.executable, "-m", "workers", "ui", "--port", str(free_port())]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "COUCHFARM_UI_PASSWORD" in refused.stderr
    port = free_port()
    proc = subprocess.Popen(
        [*cmd[:-1], str(port), "--unauthenticated"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(100):
            try:
                assert requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise AssertionError("couchfarm ui --unauthenticated did not start")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "WITHOUT authentication" in err
