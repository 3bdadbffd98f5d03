"""The whole farm through TLS: ``couchfarm run`` resolves conflicts on a CouchDB-API server behind a
mutual-TLS proxy, with Redis (broker, result backend, state) over ``rediss://`` with client certs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from couchfarm.couch import CouchClient
from couchfarm.scan import scan
from tests.farm.procs import FAST
from tests.helpers import make_conflict
from tests.tls.certs import Certs
from tests.tls.conftest import TLSRedis, couch_env, redis_env
from tests.tls.test_couch_tls import no_key_material, tls_client

DOCS = 8


def seed(couch: CouchClient, db: str) -> None:
    for i in range(DOCS):
        make_conflict(couch, db, f"doc{i}", [{"n": i, "side": "a"}, {"n": i, "side": "b"}], base={"n": i})


def test_the_farm_resolves_conflicts_through_tls(
    https_url: str, rediss_url: str, tls_redis: TLSRedis, certs: Certs
) -> None:
    db = f"tlsfarm{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    env.update(
        FAST, COUCHFARM_COUCH_URL=https_url, COUCHFARM_REDIS_URL=rediss_url, COUCHFARM_LOG_LEVEL="DEBUG"
    )
    env.update(couch_env(certs), **redis_env(certs))
    with tls_client(https_url, **couch_env(certs)) as couch:
        seed(couch, db)
        assert len(list(scan(couch, db))) == DOCS
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "workers",
                "run",
                "--db",
                db,
                "--until-idle",
                "--max-seconds",
                "60",
                "-c",
                "1",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        logs = out.stdout + out.stderr
        assert out.returncode == 0, f"Redis TLS path {tls_redis.path}:\n{logs[-3000:]}"
        assert list(scan(couch, db)) == [], f"conflicts left (Redis TLS path {tls_redis.path})"
        couch.delete_db(db)
    assert f"rediss://127.0.0.1:{tls_redis.port}" in logs  # the worker's broker really was the TLS one
    no_key_material(logs, certs)
