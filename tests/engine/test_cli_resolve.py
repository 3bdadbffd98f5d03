"""``couchfarm resolve`` and ``couchfarm undo`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from couchfarm.couch import CouchClient
from tests.helpers import live_leaves, make_conflict


def couchfarm(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from workers.cli import main; main()", *args]
    full_env = {**os.environ, "COUCHFARM_COUCH_URL": url, **env}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=120)


def seed(client: CouchClient, db: str, n: int = 5) -> None:
    for i in range(n):
        make_conflict(
            client,
            db,
            f"d{i}",
            [{"updated_at": "2026-01-01T00:00:00Z", "v": 1}, {"updated_at": "2026-02-01T00:00:00Z", "v": 2}],
        )


def test_dry_run_prints_the_plan_and_writes_nothing(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db)
    seq = client.db_info(db)["update_seq"]
    out = couchfarm(couch_url, "resolve", db, "--dry-run", "--strategy", "lww:field=updated_at")
    assert out.returncode == 0, out.stderr
    assert '"merged"' in out.stdout and '"tombstone"' in out.stdout and "dry run" in out.stdout
    assert client.db_info(db)["update_seq"] == seq
    assert "secret" not in out.stdout + out.stderr


def test_resolve_json_summary(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db)
    out = couchfarm(couch_url, "resolve", db, "--json", "--strategy", "lww:field=updated_at")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["counts"] == {"resolved": 5}
    assert all(len(live_leaves(client, db, f"d{i}")) == 1 for i in range(5))


def test_dead_letters_reported_and_exit_non_zero(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db, 2)
    out = couchfarm(
        couch_url,
        "resolve",
        db,
        "--json",
        "--strategy",
        "custom:function=tests.engine.custom_resolvers:explode",
    )
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["counts"] == {"dead_lettered": 2}
    assert all("cannot merge" in r["reason"] for r in report["results"])


def test_config_file_routes_and_bad_config_names_field(
    client: CouchClient, db: str, couch_url: str, tmp_path: Path
) -> None:
    seed(client, db, 2)
    good = tmp_path / "farm.yaml"
    good.write_text(
        f"databases:\n  - name: '{db[:3]}*'\n    strategy: lww\n    options: {{field: updated_at}}\n"
    )
    out = couchfarm(couch_url, "resolve", db, "--config", str(good))
    assert out.returncode == 0 and "2 resolved" in out.stdout, out.stdout + out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("databases:\n  - name: x\n    strategy: lww\n    options: {}\n")
    out = couchfarm(couch_url, "resolve", db, "--config", str(bad))
    assert out.returncode == 2 and "field" in out.stderr, out.stderr
    worse = tmp_path / "worse.yaml"
    worse.write_text("batch_size: 10\ndatabases:\n  - name: x\n    deletion: sometimes\n")
    out = couchfarm(couch_url, "resolve", db, "--config", str(worse))
    assert out.returncode == 2 and "databases.0.deletion" in out.stderr and f"{worse}:4" in out.stderr


def test_undo_cli(client: CouchClient, db: str, couch_url: str) -> None:
    seed(client, db, 1)
    env = {"COUCHFARM_ARCHIVE_DB": f"{db}-audit"}
    assert couchfarm(couch_url, "resolve", db, "--strategy", "lww:field=updated_at", **env).returncode == 0
    assert len(live_leaves(client, db, "d0")) == 1
    out = couchfarm(couch_url, "undo", db, "d0", **env)
    assert out.returncode == 0, out.stderr
    assert len(live_leaves(client, db, "d0")) == 2
    client.delete_db(f"{db}-audit")


def test_a_missing_schema_file_fails_at_start(
    client: CouchClient, db: str, couch_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "farm.yaml"
    config.write_text(
        f"databases:\n  - name: {db}\n    strategy: lww\n    options: {{field: updated_at}}\n"
        "    schema: schemas/missing.json\n"
    )
    out = couchfarm(couch_url, "resolve", db, "--config", str(config))
    assert out.returncode == 2 and "missing.json" in out.stderr and str(config) in out.stderr, out.stderr
