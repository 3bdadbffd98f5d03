"""Real farm processes for the tests: dispatchers and Celery workers as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

FAST = {
    "COUCHFARM_LEASE_TTL": "2",
    "COUCHFARM_FEED_DEADLINE": "0.5",
    "COUCHFARM_BATCH_MAX_WAIT": "0.1",
    "COUCHFARM_BATCH_SIZE": "10",
    "COUCHFARM_BATCH_MAX_SIZE": "100",  # what a death makes a worker redo is at most this
    "COUCHFARM_DISCOVERY_INTERVAL": "0.5",
    "COUCHFARM_RETRY_BACKOFF": "0.05",
    "COUCHFARM_RETRY_BACKOFF_MAX": "0.5",
    "COUCHFARM_TASK_TIME_LIMIT": "30",
    "COUCHFARM_LOG_FORMAT": "json",
    "COUCHFARM_FARM": "test",
}


class Farm:
    """Starts and always stops the processes of one test."""

    def __init__(self, tmp: Path, couch_url: str, redis_url: str, **env: str) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            **FAST,
            "COUCHFARM_COUCH_URL": couch_url,
            "COUCHFARM_REDIS_URL": redis_url,
            **env,
        }
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workers", *args],
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((name, proc))
        return proc

    def dispatcher(self, name: str, *dbs: str, **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, "dispatch", *[a for db in dbs for a in ("--db", db)], **env)

    def worker(self, name: str, concurrency: int = 1, **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "-c", str(concurrency), "-n", f"{name}@%h", **env)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                with _quiet():
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with _quiet():
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is ProcessLookupError


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]
