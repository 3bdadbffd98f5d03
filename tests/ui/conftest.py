"""Servers and a running ``couchfarm ui`` for the UI tests.

CouchDB (pouchdb-server) and Redis run with distinctive passwords, so a test can assert that neither
appears in any page. The UI runs in this process (uvicorn in a thread) for the HTTP tests; the
browser tests start the real ``couchfarm ui`` command.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests

from couchfarm.couch import CouchClient
from couchfarm.settings import Settings
from workers.local_servers import PouchServer, RedisServer, free_port

COUCH_PW = "Cdb-pw-7Q2xZ"
REDIS_PW = "Rds-pw-9K4vW"
UI_USER, UI_PW = "ops", "Ui-pw-3M8nB"
AUTH = (UI_USER, UI_PW)
SCHEMA = '{"type": "object", "properties": {"qty": {"type": "integer", "minimum": 0}}}'


@pytest.fixture(scope="session")
def ui_pouch() -> Iterator[PouchServer]:
    server = PouchServer(password=COUCH_PW).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ui_redis() -> Iterator[RedisServer]:
    server = RedisServer(password=REDIS_PW).start()
    yield server
    server.stop()


@pytest.fixture
def couch(ui_pouch: PouchServer) -> CouchClient:
    ui_pouch.ensure()
    return CouchClient(ui_pouch.url)


@pytest.fixture
def redis(ui_redis: RedisServer) -> Iterator[Any]:
    client = redis_lib.Redis.from_url(ui_redis.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def dbname(couch: CouchClient) -> Iterator[str]:
    name = f"ui{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        couch.delete_db(name)


def write_config(folder: Path, db: str, archive: str | None = None) -> Path:
    """Settings for ``db``: last write wins, orders (``order-`` ids) validated by a schema."""
    (folder / "order.json").write_text(SCHEMA)
    path = folder / "farm.yaml"
    path.write_text(
        f"""
databases:
  - name: {db}
    strategy: lww
    options: {{field: updated_at}}
    types:
      - {{id_prefix: "order-", strategy: fields, schema: order.json, options: {{timestamp: updated_at}}}}
writer_field: by
insights_bucket: 60
insights_window: 86400
"""
        + (f"archive_db: {archive}\n" if archive else "")
    )
    return path


def ui_env(
    pouch: PouchServer, redis_server: RedisServer, config: Path | None, **extra: str
) -> dict[str, str]:
    env = {
        "COUCHFARM_COUCH_URL": pouch.url,
        "COUCHFARM_REDIS_URL": redis_server.url,
        "COUCHFARM_UI_USER": UI_USER,
        "COUCHFARM_UI_PASSWORD": UI_PW,
        "COUCHFARM_FARM": "test",
        **extra,
    }
    if config is not None:
        env["COUCHFARM_CONFIG"] = str(config)
    return env


def settings(env: dict[str, str]) -> Settings:
    return Settings.load(env=env)


class Running:
    """``couchfarm ui``'s application served by uvicorn in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        end = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("the UI did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def get(self, path: str, auth: Any = AUTH, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, auth=auth, timeout=30, allow_redirects=False, **kw)

    def post(self, path: str, data: dict[str, str], auth: Any = AUTH, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, data=data, auth=auth, timeout=60, allow_redirects=False, **kw)


@contextlib.contextmanager
def running(env: dict[str, str], **options: Any) -> Iterator[Running]:
    from workers.ui.server import application

    with Running(application(settings(env), **options)) as ui:
        yield ui
