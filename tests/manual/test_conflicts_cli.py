"""``couchfarm conflicts ...`` as a person runs it: a subprocess against pouchdb-server and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from couchfarm.couch import CouchClient
from couchfarm.models import TOMBSTONE_FIELD
from couchfarm.state import FarmState
from tests.helpers import FARM, live_leaves, make_conflict

WINNER, OTHER = "2-" + "b" * 32, "2-" + "a" * 32
LWW = "lww:field=updated_at"


def couchfarm(url: str, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from workers.cli import main; main()", "conflicts", *args]
    full_env = {**os.environ, "COUCHFARM_COUCH_URL": url, **env}
    out = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=60, input=stdin)
    assert "secret" not in out.stdout + out.stderr  # the test server's admin password
    return out


def seed(client: CouchClient, db: str, doc_id: str = "d") -> None:
    """Two live leaves (CouchDB's winner ``2-bbb...``; the newer edit ``2-aaa...``) and a deleted one."""
    make_conflict(
        client,
        db,
        doc_id,
        [
            {"updated_at": "2026-02-01", "name": "new", "note": "n" * 60, "tags": ["x"]},
            {"updated_at": "2026-01-01", "name": "old", "note": "n" * 60, "tags": ["x"]},
        ],
        hashes=["a" * 32, "b" * 32],
        deleted=1,
    )


def revs(client: CouchClient, db: str, doc_id: str = "d") -> set[str]:
    return {d["_rev"] for d in live_leaves(client, db, doc_id)}


def editor(tmp_path: Path, code: str) -> dict[str, str]:
    """Environment for an $EDITOR that runs ``code`` with ``path`` bound to the file to edit."""
    script = tmp_path / "editor.py"
    script.write_text(f"import json, sys\npath = sys.argv[1]\n{code}\n")
    return {"EDITOR": f"{sys.executable} {script}", "VISUAL": "", "TMPDIR": str(tmp_path)}


def drafts(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob("couchfarm-edit-*.json"))


# -- show --------------------------------------------------------------------------------------


def test_show_table_marks_differences(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db)
    out = couchfarm(couch_url, "show", db, "d", "--strategy", LWW)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(line for line in lines if "FIELD" in line)
    assert header.index("2-bbbbbbbb*") < header.index("2-aaaaaaaa") < header.index("PROPOSED (lww)")
    name = next(line for line in lines if " name " in line)
    assert name.startswith("!") and name.split()[-3:] == ['"old"', '"new"', '"new"']
    tags = next(line for line in lines if " tags " in line)
    assert not tags.startswith("!")
    assert '"nnnn' in out.stdout and "n" * 60 not in out.stdout and "…" in out.stdout
    assert f"{WINNER}  * CouchDB's current winner" in out.stdout
    assert "deleted leaves: 2-" in out.stdout


def test_show_json_is_complete(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db)
    out = couchfarm(couch_url, "show", db, "d", "--json", "--strategy", LWW)
    report = json.loads(out.stdout)
    assert report["conflict"] is True and report["winner"] == WINNER
    assert [leaf["rev"] for leaf in report["live"]] == [WINNER, OTHER] and len(report["deleted"]) == 1
    fields = {f["field"]: f for f in report["fields"]}
    assert fields["note"]["values"][OTHER] == "n" * 60 and not fields["note"]["differs"]
    assert fields["name"]["differs"] and fields["name"]["proposed"] == "new"
    assert report["proposed"]["strategy"] == "lww" and report["proposed"]["body"]["name"] == "new"


def test_show_says_when_there_is_no_conflict(client: CouchClient, db: str, couch_url: str) -> None:
    client.put(db, {"_id": "plain", "v": 1})
    out = couchfarm(couch_url, "show", db, "plain")
    assert out.returncode == 0 and "plain in " in out.stdout and "no conflict (one live leaf" in out.stdout
    assert json.loads(couchfarm(couch_url, "show", db, "plain", "--json").stdout)["conflict"] is False
    missing = couchfarm(couch_url, "show", db, "nothing")
    assert missing.returncode == 1 and "'nothing' not found" in missing.stderr


# -- pick --------------------------------------------------------------------------------------


def test_pick_makes_the_leaf_the_winner(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db)
    bad = couchfarm(couch_url, "pick", db, "d", "2-" + "c" * 32)
    assert bad.returncode == 1 and f"live revs: {WINNER}, {OTHER}" in bad.stderr
    dry = couchfarm(couch_url, "pick", db, "d", OTHER, "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["writes"] == [
        {"write_winner_on": WINNER},
        {"tombstone": OTHER},
    ]
    assert revs(client, db) == {WINNER, OTHER}
    out = couchfarm(couch_url, "pick", db, "d", OTHER)
    assert out.returncode == 0 and "resolved by hand" in out.stdout, out.stderr
    doc = client.get(db, "d", conflicts=True)
    assert doc["name"] == "new" and doc["updated_at"] == "2026-02-01" and "_conflicts" not in doc
    tombstones = [d for d in client.open_revs(db, "d") if d["_rev"] in (WINNER, OTHER)]
    assert tombstones == []  # both old leaves now have tombstone children
    marked = [d for d in client.open_revs(db, "d") if d.get(TOMBSTONE_FIELD)]
    assert len(marked) == 1 and marked[0]["_deleted"]


def test_pick_refused_by_the_server_keeps_every_leaf(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db)
    guard = "function (n) { if (n.name === 'new') { throw({forbidden: 'new names need review'}); } }"
    client.put(db, {"_id": "_design/guard", "validate_doc_update": guard})
    out = couchfarm(couch_url, "pick", db, "d", OTHER)
    assert out.returncode == 1
    assert "new names need review" in out.stderr and "every leaf is still live" in out.stderr
    assert revs(client, db) == {WINNER, OTHER}


# -- edit --------------------------------------------------------------------------------------


def test_edit_writes_the_edited_merge(client: CouchClient, db: str, couch_url: str, tmp_path: Path) -> None:
    seed(client, db)
    env = editor(
        tmp_path,
        "body = json.load(open(path))\nassert body['name'] == 'new'\nbody['name'] = 'edited'\n"
        "json.dump(body, open(path, 'w'))",
    )
    out = couchfarm(couch_url, "edit", db, "d", "--strategy", LWW, **env)
    assert out.returncode == 0, out.stderr
    (leaf,) = live_leaves(client, db, "d")
    assert leaf["name"] == "edited" and leaf["updated_at"] == "2026-02-01"
    assert drafts(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ('{"_id": "x"}', "reserved by CouchDB: _id"), ("[]", "JSON object")],
)
def test_edit_refuses_bad_content(
    client: CouchClient, db: str, couch_url: str, tmp_path: Path, content: str, problem: str
) -> None:
    seed(client, db)
    out = couchfarm(couch_url, "edit", db, "d", **editor(tmp_path, f"open(path, 'w').write({content!r})"))
    assert out.returncode == 1 and problem in out.stderr
    (draft,) = drafts(tmp_path)
    assert f"your edit is kept in {draft}" in out.stderr and draft.read_text() == content
    assert revs(client, db) == {WINNER, OTHER}


def test_edit_refuses_when_leaves_changed(
    client: CouchClient, db: str, couch_url: str, tmp_path: Path
) -> None:
    seed(client, db)
    race = (
        "import os, requests\n"
        f"base = os.environ['COUCHFARM_COUCH_URL'] + '/{db}/d'\n"
        "doc = requests.get(base).json()\n"
        "requests.put(base, json={**doc, 'name': 'someone else'}).raise_for_status()\n"
        "open(path, 'w').write('{\"name\": \"mine\"}')"
    )
    out = couchfarm(couch_url, "edit", db, "d", **editor(tmp_path, race))
    assert out.returncode == 1 and "changed while you were editing" in out.stderr
    assert len(drafts(tmp_path)) == 1
    leaves = live_leaves(client, db, "d")
    assert len(leaves) == 2 and {leaf["name"] for leaf in leaves} == {"someone else", "new"}


def test_edit_unchanged_asks_first(client: CouchClient, db: str, couch_url: str, tmp_path: Path) -> None:
    seed(client, db)
    env = editor(tmp_path, "pass")
    declined = couchfarm(couch_url, "edit", db, "d", "--strategy", LWW, stdin="n\n", **env)
    assert declined.returncode == 1 and "write the proposal as is?" in declined.stdout
    assert revs(client, db) == {WINNER, OTHER}
    accepted = couchfarm(couch_url, "edit", db, "d", "--strategy", LWW, "--yes", **env)
    assert accepted.returncode == 0 and "as is?" not in accepted.stdout, accepted.stderr
    (leaf,) = live_leaves(client, db, "d")
    assert leaf["name"] == "new"


# -- pause switch and the view -----------------------------------------------------------------


def test_pause_resume_paused(couch_url: str, redis_url: str, real_redis: object) -> None:
    env = {"COUCHFARM_REDIS_URL": redis_url}
    for db in ("orders", "users"):
        assert couchfarm(couch_url, "pause", db, **env).returncode == 0
    assert couchfarm(couch_url, "paused", **env).stdout.split() == ["orders", "users"]
    assert "resumed" in couchfarm(couch_url, "resume", "orders", **env).stdout
    assert json.loads(couchfarm(couch_url, "paused", "--json", **env).stdout) == ["users"]
    state = FarmState(real_redis, FARM)
    assert state.is_paused("users") and not state.is_paused("orders")
    missing = couchfarm(couch_url, "paused", COUCHFARM_REDIS_URL="")
    assert missing.returncode == 2 and "COUCHFARM_REDIS_URL" in missing.stderr


def test_install_view_and_list(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db, "d1")
    seed(client, db, "d2")
    client.put(db, {"_id": "plain"})
    scanned = couchfarm(couch_url, "list", db, "--json")
    assert scanned.returncode == 0 and "scanned the changes feed instead" in scanned.stderr
    assert couchfarm(couch_url, "install-view", db).stdout.strip().endswith("created")
    rev = client.get(db, "_design/couchfarm")["_rev"]
    assert couchfarm(couch_url, "install-view", db).stdout.strip().endswith("unchanged")
    assert client.get(db, "_design/couchfarm")["_rev"] == rev
    listed = couchfarm(couch_url, "list", db)
    assert listed.returncode == 0 and "scanned" not in listed.stderr
    assert listed.stdout.splitlines()[1:] == [f"d1      {OTHER}", f"d2      {OTHER}"]
    viewed = json.loads(couchfarm(couch_url, "list", db, "--json").stdout)
    assert viewed["source"] == "view" and viewed["conflicts"] == json.loads(scanned.stdout)["conflicts"]
