"""``couchfarm scan`` on a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from couchfarm.couch import CouchClient
from couchfarm.scan import scan
from tests.helpers import make_conflict


def seed(client: CouchClient, db: str) -> None:
    for i in range(12):
        make_conflict(client, db, f"c{i:02d}", [{"v": 1}, {"v": 2}, {"v": 3}][: 2 + i % 2])
    make_conflict(client, db, "only-deleted", [{"v": 1}], deleted=2)
    client.put(db, {"_id": "plain"})


def test_scan_finds_exactly_the_conflicted(client: CouchClient, db: str) -> None:
    seed(client, db)
    found = {c.doc_id: c for c in scan(client, db, page_size=5)}
    assert sorted(found) == [f"c{i:02d}" for i in range(12)]
    assert len(found["c01"].live) == 3 and len(found["c00"].live) == 2
    with_deleted = {c.doc_id for c in scan(client, db, include_deleted=True)}
    assert "only-deleted" in with_deleted


def test_scan_cli_json_and_table(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db)
    env = {**os.environ, "COUCHFARM_COUCH_URL": couch_url}
    cmd = [sys.executable, "-c", "from workers.cli import main; main()", "scan", db]
    out = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert len(rows) == 12 and {r["leaves"] for r in rows} == {2, 3}
    table = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "c00" in table.stdout and "12 conflicted" in table.stderr
    assert "secret" not in table.stdout + table.stderr + out.stderr
