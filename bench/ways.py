"""The three ways of resolving that the benchmark compares, on the same server in the same run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from couchfarm.canonical import canonical
from couchfarm.couch import CouchClient
from couchfarm.models import TOMBSTONE_FIELD, Leaf, winner_key

LWW_CONFIG = """databases:
  - name: "{db}"
    strategy: lww
    options: {{field: updated_at}}
batch_size: {batch}
batch_max_wait: 0.2
feed_deadline: 2
"""


def lww_writes(doc_id: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The merged winner and the tombstones, in one list (the reference does not wait in between)."""
    live = sorted(
        (Leaf.from_doc(d) for d in docs if not d.get("_deleted")),
        key=lambda leaf: winner_key(leaf.rev, False),
        reverse=True,
    )
    if len(live) < 2:
        return []
    newest = max(live, key=lambda leaf: (leaf.body.get("updated_at", ""), leaf.rev))
    out = [{"_id": doc_id, "_rev": live[0].rev, **canonical(newest.body)}]
    out += [{"_id": doc_id, "_rev": leaf.rev, "_deleted": True, TOMBSTONE_FIELD: True} for leaf in live[1:]]
    return out


def reference(client: CouchClient, db: str, ids: list[str], batch: int = 100) -> float:
    """The fastest single process: one bulk leaf read and one ``_bulk_docs`` per batch."""
    started = time.perf_counter()
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        leaves = client.read_leaves(db, chunk)
        writes = [w for doc_id in chunk for w in lww_writes(doc_id, leaves[doc_id])]
        client.bulk_docs(db, writes)
    return time.perf_counter() - started


def naive(client: CouchClient, db: str, ids: list[str]) -> float:
    """Per document: GET ?conflicts=true, GET each rev, POST one ``_bulk_docs``."""
    started = time.perf_counter()
    for doc_id in ids:
        path = f"{db}/{quote(doc_id, safe='')}"
        winner = client.http.request("GET", path, params={"conflicts": True}).json()
        docs = [winner] + [
            client.http.request("GET", path, params={"rev": r}).json() for r in winner.get("_conflicts", [])
        ]
        writes = lww_writes(doc_id, docs)
        if writes:
            client.http.request("POST", f"{db}/_bulk_docs", body={"docs": writes})
    return time.perf_counter() - started


class FarmRun:
    """A dispatcher and a worker pool (W processes) as subprocesses, as `couchfarm` runs them."""

    def __init__(self, couch_url: str, redis_url: str, db: str, workers: int, batch: int = 100) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="couchfarm-bench-"))
        config = self.folder / "farm.yaml"
        config.write_text(LWW_CONFIG.format(db=db, batch=batch))
        self.env = {
            **os.environ,
            "COUCHFARM_COUCH_URL": couch_url,
            "COUCHFARM_REDIS_URL": redis_url,
            "COUCHFARM_CONFIG": str(config),
            "COUCHFARM_LOG_LEVEL": "WARNING",
        }
        self.db, self.workers = db, workers
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_workers(self) -> None:
        self._spawn("worker", "worker", "-c", str(self.workers), "--loglevel", "WARNING")

    def start_dispatcher(self) -> None:
        self._spawn("dispatcher", "dispatch", "--db", self.db)

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.folder / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "workers", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def pids(self) -> dict[str, list[int]]:
        out = {}
        for name, proc in self.procs.items():
            children = subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
            ).stdout.split()
            out[name] = [proc.pid, *map(int, children)]
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident set of a live process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc), 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
