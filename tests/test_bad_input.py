"""Bad and hostile input, as a user or an attacker gives it to the real ``couchfarm`` command.

One row per input: the command, its environment and files, the exit status (README "Exit codes"),
pieces of the message that name the problem and where it came from, and what must never be printed
(a traceback, any piece of a password, a raw control character). Each run has a time bound.
Servers are real: pouchdb-server, redis-server, a plain HTTP server; unreachable ones are free ports.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetter, DeadLetters
from tests.helpers import FARM, make_conflict
from workers.local_servers import PouchServer, RedisServer, free_port

#: a document id and a field name that try to forge a log line and repaint the terminal
EVIL_ID = "ok\n12:00:00 ERROR couchfarm: forged line \x1b[31mred\x1b[0m\u202e"
EVIL_FIELD = "f\nFORGED\x1b[2J"
RAW_PASSWORD = "p@ss:w/rd#x%y"  # every character that breaks a URL's userinfo


@dataclass
class World:
    """The servers and folders a row's placeholders refer to."""

    couch: str  #: pouchdb-server with credentials (password "secret")
    plain_http: str  #: an HTTP server that is not CouchDB
    redis: str  #: redis-server without a password
    redis_pw: str  #: redis-server with the password "rpw-secret", as a URL with a wrong password
    dead: int  #: a port nothing listens on
    tmp: Path
    client: CouchClient
    values: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        return text.format(
            couch=self.couch,
            plain=self.plain_http,
            redis=self.redis,
            redis_pw=self.redis_pw,
            dead=self.dead,
            tmp=self.tmp,
            **self.values,
        )


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]  #: every one of these appears in the output
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  #: written to {tmp} first
    never: tuple[str, ...] = ()  #: on top of "Traceback", "secret" and raw control characters
    setup: Callable[[World], None] | None = None
    limit: float = 45.0  #: seconds the command may take

    def __str__(self) -> str:
        return self.name


def evil_conflict(world: World) -> None:
    db = f"evil{uuid.uuid4().hex[:8]}"
    make_conflict(world.client, db, EVIL_ID, [{"a": 1, EVIL_FIELD: 1}, {"a": 2}])
    world.values["db"] = db
    world.values["evil"] = EVIL_ID


def evil_dead_letter(world: World) -> None:
    DeadLetters(redis.Redis.from_url(world.redis, decode_responses=True), FARM).add(
        DeadLetter(
            db="orders",
            doc_id=EVIL_ID,
            revs=["2-a", "2-b"],
            strategy="lww",
            error="Rejected",
            reason="bad\nFORGED \x1b[2J",
            task_id="t1",
            correlation_id="c1",
        )
    )


def plain_conflict(world: World) -> None:
    db = f"t{uuid.uuid4().hex[:12]}"
    make_conflict(world.client, db, "d0", [{"v": 1}, {"v": 2}])
    world.values["db"] = db


TOPOLOGY = """\
nodes:
  a: {url: "http://127.0.0.1:5984"}
  b: {url: "http://127.0.0.1:5985"}
databases: [orders]
links:
  - {from: a, to: b, continuous: true%s}
"""


def topology(link_extra: str = "", nodes_extra: str = "") -> bytes:
    text = TOPOLOGY % link_extra
    return text.replace("databases:", nodes_extra + "databases:").encode()


def yaml(text: str) -> dict[str, bytes]:
    return {"farm.yaml": text.encode()}


CONFIG = ("--config", "{tmp}/farm.yaml")
ROUTES = "databases:\n  - name: orders\n    strategy: lww\n    options: {field: updated_at}\n"

CASES = [
    # -- environment variables and flags that used to end in a traceback -------------------------
    Case("log level", ("scan", "x"), 2, ("'LOUD' is not a log level", "COUCHFARM_LOG_LEVEL"),
         {"COUCHFARM_LOG_LEVEL": "LOUD"}),
    Case("log level in file", ("scan", "x", *CONFIG), 2, ("'verbose' is not a log level", "farm.yaml:2"),
         files=yaml("batch_size: 5\nlog_level: verbose\n")),
    Case("not a url", ("scan", "x"), 2, ("'not a url'", "not a URL", "COUCHFARM_COUCH_URL"),
         {"COUCHFARM_COUCH_URL": "not a url"}),
    Case("raw password characters", ("scan", "x"), 2,
         ("http://admin:***@127.0.0.1:5984", "percent-encode", "%40", "COUCHFARM_COUCH_URL"),
         {"COUCHFARM_COUCH_URL": f"http://admin:{RAW_PASSWORD}@127.0.0.1:5984"},
         never=("p@ss", "ss:w", "w/rd", "rd#x", "x%y", "'w'")),
    Case("raw # in password", ("resolve", "x"), 2, ("http://admin:***@127.0.0.1:5984", "%23"),
         {"COUCHFARM_COUCH_URL": "http://admin:hunter#22@127.0.0.1:5984"}, never=("hunter", "#22")),
    Case("raw % in password", ("scan", "x"), 2, ("raw %", "%25"),
         {"COUCHFARM_COUCH_URL": "http://admin:50%off@127.0.0.1:5984"}, never=("50%off",)),
    Case("port with a letter", ("scan", "x"), 2, ("port '27x01'", "COUCHFARM_COUCH_URL"),
         {"COUCHFARM_COUCH_URL": "http://admin:pw1234@127.0.0.1:27x01"}, never=("pw1234",)),
    Case("--url scheme", ("scan", "x", "--url", "ftp://127.0.0.1/"), 2, ("scheme 'ftp'", "command line")),
    Case("--url without host", ("scan", "x", "--url", "http://"), 2, ("names no host", "command line")),
    Case("redis port", ("status",), 2, ("port '63x9'", "COUCHFARM_REDIS_URL"),
         {"COUCHFARM_REDIS_URL": "redis://:rsecret1@127.0.0.1:63x9/0"}, never=("rsecret1",)),
    Case("redis scheme", ("dlq", "list"), 2, ("scheme 'http'", "COUCHFARM_REDIS_URL"),
         {"COUCHFARM_REDIS_URL": "http://127.0.0.1:6379"}),
    # -- files ----------------------------------------------------------------------------------
    Case("binary --config", ("scan", "x", *CONFIG), 2, ("farm.yaml:1", "not a UTF-8 text file"),
         files={"farm.yaml": b"\x7fELF\x02\x01\x01\x00\x00\xd0\xff\xfe" * 20}),
    Case("NUL in --config", ("scan", "x", *CONFIG), 2, ("farm.yaml:2", "control character U+0000"),
         files={"farm.yaml": b"batch_size: 5\nlog_level: INFO\x00\n"}),
    Case("missing --config", ("scan", "x", "--config", "{tmp}/nope.yaml"), 2, ("cannot read", "nope.yaml")),
    Case("YAML syntax, password not quoted", ("scan", "x", *CONFIG), 2,
         ("farm.yaml:3", "not valid YAML", "quoted scalar that starts at line 2"),
         files=yaml('batch_size: 5\ncouch_password: "pw-in-file\n'), never=("pw-in-file",)),
    Case("duplicate key", ("scan", "x", *CONFIG), 2,
         ("farm.yaml:3", "log_level is given twice (first at line 1)"),
         files=yaml("log_level: INFO\nbatch_size: 3\nlog_level: DEBUG\n")),
    Case("duplicate nested key", ("resolve", "orders", *CONFIG), 2,
         ("farm.yaml:5", "databases.0.strategy is given twice (first at line 3)"),
         files=yaml(ROUTES + "    strategy: max\n")),
    Case("duplicate topology node", ("replication", "validate", "{tmp}/topo.yaml"), 2,
         ("topo.yaml:3", "nodes.a is given twice (first at line 2)"),
         files={"topo.yaml": TOPOLOGY.replace("  b:", "  a:").encode() % b""}),
    Case("duplicate topology url", ("replication", "validate", "{tmp}/topo.yaml"), 2,
         ("topo.yaml:4", "nodes.c.url is given twice (first at line 4)"),
         files={"topo.yaml": topology(nodes_extra='  c: {url: "http://h:1", url: "http://h:2"}\n')}),
    Case("binary topology", ("replication", "validate", "{tmp}/topo.yaml"), 2, ("topo.yaml:1", "UTF-8"),
         files={"topo.yaml": b"\xff\xfe\x00n\x00o\x00d\x00e\x00s"}),
    Case("unknown Mango operator", ("replication", "validate", "{tmp}/topo.yaml"), 2,
         ("topo.yaml:6", "links[0].selector", "unknown operator '$frobnicate' at status.$frobnicate"),
         files={"topo.yaml": topology(", selector: {status: {$frobnicate: 1}}")}),
    Case("Mango argument", ("replication", "validate", "{tmp}/topo.yaml"), 2,
         ("topo.yaml:6", "at $or[1].tags.$size: needs a whole number"),
         files={"topo.yaml": topology(", selector: {$or: [{a: 1}, {tags: {$size: -2}}]}")}),
    # -- settings that contradict each other ---------------------------------------------------
    Case("retry_backoff above its cap", ("scan", "x", *CONFIG), 2,
         ("retry_backoff 5 s (from", "farm.yaml:1", "retry_backoff_max 1 s (from", "farm.yaml:2"),
         files=yaml("retry_backoff: 5\nretry_backoff_max: 1\n")),
    Case("retry_backoff above the default cap", ("scan", "x"), 2,
         ("COUCHFARM_RETRY_BACKOFF", "retry_backoff_max 60 s (the default)"),
         {"COUCHFARM_RETRY_BACKOFF": "90"}),
    Case("couch_backoff above its cap", ("scan", "x"), 2,
         ("couch_backoff 3 s", "COUCHFARM_COUCH_BACKOFF", "couch_backoff_max 1 s"),
         {"COUCHFARM_COUCH_BACKOFF": "3", "COUCHFARM_COUCH_BACKOFF_MAX": "1"}),
    Case("lease shorter than a feed read", ("scan", "x"), 2,
         ("lease_ttl 5 s", "COUCHFARM_LEASE_TTL", "feed_deadline 10 s, the default", "= 21 s"),
         {"COUCHFARM_LEASE_TTL": "5"}),
    Case("lease barely above a feed read", ("scan", "x", *CONFIG), 2,
         ("lease_ttl 15 s (from", "farm.yaml:2", "feed_deadline 10 s, from", "farm.yaml:1"),
         files=yaml("feed_deadline: 10\nlease_ttl: 15\n")),
    Case("two rules for one database", ("resolve", "orders", *CONFIG), 2,
         ("databases[1] 'orders' (from", "farm.yaml:5", "repeats databases[0]", "farm.yaml:2"),
         files=yaml(ROUTES + "  - name: orders\n    strategy: winner\n")),
    Case("a rule behind a glob", ("resolve", "orders", *CONFIG), 2,
         ("databases[1] 'orders'", "is matched first by databases[0] 'ord*'"),
         files=yaml("databases:\n  - name: 'ord*'\n" + ROUTES.removeprefix("databases:\n"))),
    Case("illegal database list", ("scan", "x"), 2,
         ("'[' is not a legal CouchDB database name", "COUCHFARM_DATABASES"), {"COUCHFARM_DATABASES": ",,["}),
    Case("upper-case database", ("scan", "x", *CONFIG), 2, ("'Orders' is not a legal", "farm.yaml:2"),
         files=yaml("databases:\n  - name: Orders\n")),
    # -- servers that cannot be reached, or are not what the settings say ------------------------
    Case("status, Redis down", ("status",), 4,
         ("cannot reach Redis at redis://127.0.0.1:{dead}/0", "(redis_url, from environment variable "
          "COUCHFARM_REDIS_URL)", "Connection refused"),
         {"COUCHFARM_REDIS_URL": "redis://:rpw-secret@127.0.0.1:{dead}/0"}, never=("rpw-secret",)),
    Case("dlq list, Redis down", ("dlq", "list", *CONFIG), 4,
         ("cannot reach Redis at redis://127.0.0.1:{dead}/0", "farm.yaml:1"),
         files=yaml("redis_url: redis://127.0.0.1:{dead}/0\n")),
    Case("conflicts paused, Redis down", ("conflicts", "paused"), 4, ("cannot reach Redis",),
         {"COUCHFARM_REDIS_URL": "redis://127.0.0.1:{dead}/0"}),
    Case("Redis refuses the password", ("dlq", "list"), 2,
         ("Redis at redis://127.0.0.1:", "refused the credentials"), {"COUCHFARM_REDIS_URL": "{redis_pw}"},
         never=("not-it",)),
    Case("rediss:// to a Redis without TLS", ("dlq", "list"), 4,
         ("cannot reach Redis at rediss://127.0.0.1:", "without TLS"),
         {"COUCHFARM_REDIS_URL": "{redis}", "REDIS_SCHEME": "rediss"}, limit=60),
    Case("CouchDB down", ("scan", "x"), 4, ("Unavailable", "127.0.0.1:{dead}"),
         {"COUCHFARM_COUCH_URL": "http://admin:cpw-9@127.0.0.1:{dead}"}, never=("cpw-9",)),
    Case("plain HTTP server as CouchDB", ("scan", "x"), 2,
         ("is not a CouchDB server", "COUCHFARM_COUCH_URL"), {"COUCHFARM_COUCH_URL": "{plain}"}),
    Case("plain HTTP server, resolve", ("resolve", "x", "--url", "{plain}"), 2,
         ("is not a CouchDB server", "couch_url, from command line")),
    Case("scan of a missing database", ("scan", "nosuchdb"), 1, ("the database nosuchdb does not exist",)),
    Case("undo without its archive", ("undo", "{db}", "d0"), 1,
         ("the archive database nosuch-audit (archive_db) does not exist",),
         {"COUCHFARM_ARCHIVE_DB": "nosuch-audit"}, setup=plain_conflict),
    Case("sync from a source that is down", ("replication", "sync", "http://admin:spw-7@127.0.0.1:{dead}",
                                             "{couch}", "--db", "x", "--create-target"), 4,
         ("cannot reach the source 127.0.0.1:{dead}", "--pull"), never=("spw-7",)),
    # -- hostile document ids and field names on a terminal --------------------------------------
    Case("scan table", ("scan", "{db}"), 0, ("ok\\n12:00:00 ERROR", "\\x1b[31mred", "\\u202e"),
         setup=evil_conflict),
    Case("conflicts show", ("conflicts", "show", "{db}", "{evil}"), 0,
         ("ok\\n12:00:00 ERROR", "f\\nFORGED\\x1b[2J"), setup=evil_conflict),
    Case("conflicts list", ("conflicts", "list", "{db}"), 0, ("ok\\n12:00:00 ERROR",), setup=evil_conflict),
    Case("console log line", ("resolve", "{db}", "--dry-run"), 0,
         ("doc_id=ok\\n12:00:00 ERROR couchfarm: forged line \\x1b[31mred",), setup=evil_conflict),
    Case("dlq list", ("dlq", "list"), 0, ("orders/ok\\n12:00:00 ERROR", "bad\\nFORGED \\x1b[2J"),
         {"COUCHFARM_REDIS_URL": "{redis}"}, setup=evil_dead_letter),
]  # fmt: skip


class PlainHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def world(pouch_server: PouchServer, redis_server: RedisServer, tmp_path_factory: Any) -> Iterator[World]:
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PlainHandler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    locked = RedisServer(password="rpw-secret").start()
    try:
        yield World(
            couch=pouch_server.url,
            plain_http=f"http://user:plainpw@127.0.0.1:{plain.server_address[1]}",
            redis=redis_server.url,
            redis_pw=locked.url.replace("rpw-secret", "not-it"),
            dead=free_port(),
            tmp=tmp_path_factory.mktemp("bad-input"),
            client=CouchClient(pouch_server.url),
        )
    finally:
        locked.stop()
        plain.shutdown()
        plain.server_close()


def run(world: World, case: Case) -> tuple[subprocess.CompletedProcess[str], float]:
    for name, content in case.files.items():
        (world.tmp / name).write_bytes(content.replace(b"{dead}", str(world.dead).encode()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    env["COUCHFARM_COUCH_URL"] = world.couch
    env["COUCHFARM_FARM"] = FARM
    env.update({k: world.fill(v) for k, v in case.env.items()})
    if env.pop("REDIS_SCHEME", None):
        env["COUCHFARM_REDIS_URL"] = "rediss" + env["COUCHFARM_REDIS_URL"].removeprefix("redis")
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "workers", *(world.fill(a) for a in case.args)],
        env=env,
        cwd=world.tmp,
        capture_output=True,
        text=True,
        timeout=case.limit + 30,
    )
    return out, time.monotonic() - started


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_gets_a_clear_message(world: World, case: Case) -> None:
    world.values.clear()
    if case.setup is not None:
        case.setup(world)
    out, seconds = run(world, case)
    text = out.stdout + out.stderr
    assert out.returncode == case.code, text
    assert seconds < case.limit, f"took {seconds:.1f}s"
    for piece in case.says:
        assert world.fill(piece) in text, text
    for piece in ("Traceback", "secret", "plainpw", *case.never):
        assert piece not in text, text
    assert not any(ch in text for ch in "\x1b\u202e\r"), repr(text)
    assert "\nFORGED" not in text and "\n12:00:00 ERROR" not in text, text


def test_there_are_forty_and_more_rows() -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
