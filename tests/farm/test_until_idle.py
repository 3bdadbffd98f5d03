"""Every ``couchfarm run --until-idle`` ends: with a summary and the documented exit status (README
"Exit codes"), whatever is wrong with its databases, its servers or its credentials, and without
leaving temporary folders behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from couchfarm.couch import CouchClient
from tests.farm.procs import FAST
from tests.farm.test_farm import PREFIX, conflicted
from tests.farm.test_farms import lww_config
from tests.helpers import seed_conflicts, wait_for
from workers.local_servers import free_port


@dataclass(frozen=True)
class Case:
    name: str
    code: int
    says: tuple[str, ...]
    db: str = "{db}"  #: --db value ({db}: a fresh database with conflicts)
    env: dict[str, str] = field(default_factory=dict)
    limit: float = 60.0

    def __str__(self) -> str:
        return self.name


CASES = [
    Case("caught up", 0, ("until-idle run over: 1 database(s) caught up", "0 dead letter(s) left")),
    Case("missing database", 1, ("nosuchdb", "does not exist", "0 database(s) caught up, 1 not followed"),
         db="nosuchdb"),
    Case("illegal name", 1, ("Bad_Name", "is not a legal CouchDB database name"), db="Bad_Name"),
    Case("glob matching nothing", 1, ("no database matches", "nomatch*"), db="nomatch*"),
    Case("dead letters left", 1, ("3 dead letter(s) left", "couchfarm dlq list"),
         env={"COUCHFARM_CONFIG": "explode"}),
    Case("CouchDB unreachable", 4, ("Unavailable", "127.0.0.1:{dead}"),
         env={"COUCHFARM_COUCH_URL": "http://admin:secret@127.0.0.1:{dead}", "COUCHFARM_COUCH_RETRIES": "1"}),
    Case("wrong CouchDB password", 2, ("refused the credentials",),
         env={"COUCHFARM_COUCH_URL": "http://admin:wrong@{couch_hostport}"}),
    Case("Redis unreachable", 4, ("cannot reach Redis", "127.0.0.1:{dead}"),
         env={"COUCHFARM_REDIS_URL": "redis://127.0.0.1:{dead}/0"}),
]  # fmt: skip


def couchfarm(
    env: dict[str, str], *args: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "workers", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return out, time.monotonic() - started


@pytest.mark.parametrize("case", CASES, ids=str)
def test_until_idle_always_ends_with_a_summary(
    case: Case, tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient
) -> None:
    db = f"{PREFIX}idle{os.urandom(3).hex()}"
    seed_conflicts(client, db, 3)
    config = lww_config(tmp_path, "f")
    if case.env.get("COUCHFARM_CONFIG") == "explode":
        config = str(tmp_path / "explode.yaml")
        Path(config).write_text(
            "databases:\n  - name: 'farm*'\n    strategy: custom\n"
            "    options: {function: 'tests.dlq.resolvers:explode'}\nmax_retries: 0\n"
        )
    values = {"db": db, "dead": str(free_port()), "couch_hostport": couch_url.split("@")[-1]}
    env = {**os.environ, **FAST, "COUCHFARM_COUCH_URL": couch_url, "COUCHFARM_REDIS_URL": redis_url}
    env.update({k: v.format(**values) for k, v in case.env.items() if k != "COUCHFARM_CONFIG"})
    env["COUCHFARM_CONFIG"] = config
    out, seconds = couchfarm(
        env, "run", "--until-idle", "-c", "1", "--db", case.db.format(**values), timeout=120
    )
    text = out.stdout + out.stderr
    assert out.returncode == case.code, text[-3000:]
    for piece in case.says:
        assert piece.format(**values) in text, text[-3000:]
    own = "\n".join(line for line in text.splitlines() if not line.startswith("{"))  # not the JSON logs
    assert "Traceback" not in own and "secret" not in text and ":wrong@" not in text
    assert seconds < case.limit, f"took {seconds:.0f}s"


def test_a_database_deleted_during_the_run_ends_it(
    tmp_path: Path, couch_url: str, redis_url: str, client: CouchClient
) -> None:
    db = f"{PREFIX}gone{os.urandom(3).hex()}"
    seed_conflicts(client, db, 300)
    config = tmp_path / "slow.yaml"
    config.write_text(
        "databases:\n  - name: 'farm*'\n    strategy: custom\n"
        "    options: {function: 'tests.farm.resolvers:slow'}\n"
    )
    env = {
        **os.environ,
        **FAST,
        "COUCHFARM_COUCH_URL": couch_url,
        "COUCHFARM_REDIS_URL": redis_url,
        "COUCHFARM_CONFIG": str(config),
        "COUCHFARM_TEST_SLOW": "0.1",
    }
    started = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-m", "workers", "run", "--until-idle", "-c", "1", "--db", db],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: conflicted(client, db) < 300, 60, "the first documents resolved")
        client.delete_db(db)  # in the middle of the run
        text, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 1, text[-3000:]
    assert f"{db}: the database was deleted" in text and "0 database(s) caught up, 1 not followed" in text
    assert time.monotonic() - started < 120


def test_run_leaves_no_temporary_folder_behind(tmp_path: Path, couch_url: str, client: CouchClient) -> None:
    db = f"{PREFIX}tmp{os.urandom(3).hex()}"
    seed_conflicts(client, db, 2)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COUCHFARM_REDIS_URL"}  # its own Redis
    env.update(
        FAST, COUCHFARM_COUCH_URL=couch_url, COUCHFARM_CONFIG=lww_config(tmp_path, "f"), TMPDIR=str(scratch)
    )
    out, _ = couchfarm(env, "run", "--until-idle", "-c", "1", "--db", db, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "started a local Redis" in out.stderr
    assert sorted(p.name for p in scratch.iterdir()) == []
