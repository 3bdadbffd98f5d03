"""The naive way and the farm's processes (the reference is ``bench.reference``), and peak RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import yaml

from bench.merge import LWW, writes_for
from couchfarm.couch import CouchClient


def farm_config(db: str, batch: int) -> str:
    """The farm's configuration: one database, resolved with the benchmark's :data:`~bench.merge.LWW`."""
    rule = {"name": db, "strategy": LWW.strategy, "options": dict(LWW.options)}
    return yaml.safe_dump(
        {"databases": [rule], "batch_size": batch, "batch_max_wait": 0.2, "feed_deadline": 2}, sort_keys=False
    )


def naive(client: CouchClient, db: str, ids: list[str]) -> float:
    """Per document: GET ?conflicts=true, GET each rev, POST one ``_bulk_docs``."""
    started = time.perf_counter()
    for doc_id in ids:
        path = f"{db}/{quote(doc_id, safe='')}"
        winner = client.http.request("GET", path, params={"conflicts": True}).json()
        docs = [winner] + [
            client.http.request("GET", path, params={"rev": r}).json() for r in winner.get("_conflicts", [])
        ]
        writes = writes_for(db, doc_id, docs)
        if writes:
            client.http.request("POST", f"{db}/_bulk_docs", body={"docs": writes})
    return time.perf_counter() - started


BENCH_FARM = "bench"  #: the farm name of the benchmark's farm runs


class FarmRun:
    """A dispatcher and a worker pool (W processes) as subprocesses, as `couchfarm` runs them."""

    def __init__(self, couch_url: str, redis_url: str, db: str, workers: int, batch: int = 100) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="couchfarm-bench-"))
        config = self.folder / "farm.yaml"
        config.write_text(farm_config(db, batch))
        self.env = {
            **os.environ,
            "COUCHFARM_COUCH_URL": couch_url,
            "COUCHFARM_REDIS_URL": redis_url,
            "COUCHFARM_FARM": BENCH_FARM,
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
