"""A Redis master, one replica and three sentinels on loopback, from the same redis-server binary."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from workers.local_servers import free_port, redis_bin

MASTER = "mymaster"


class SentinelGroup:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.folder / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [str(redis_bin()), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start(self) -> SentinelGroup:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("master", "replica"):
            self.ports[name] = free_port()
            extra = ["--replicaof", "127.0.0.1", str(self.ports["master"])] if name == "replica" else []
            self._spawn(
                name, "--port", str(self.ports[name]), "--bind", "127.0.0.1", "--save", "", "--dir",
                str(self.folder), "--dbfilename", f"{name}.rdb", *extra,
            )  # fmt: skip
        self._until(lambda: self.client("replica").info("replication").get("master_link_status") == "up")
        for i in range(3):
            name, port = f"sentinel{i}", free_port()
            self.ports[name] = port
            conf = self.folder / f"{name}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['master']} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 5000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self._spawn(name, str(conf), "--sentinel")
        self._until(lambda: all(self._sees_replica(f"sentinel{i}") for i in range(3)))
        return self

    def _sees_replica(self, name: str) -> bool:
        try:
            return bool(self.client(name).sentinel_slaves(MASTER))
        except redis.RedisError:
            return False

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], decode_responses=True, socket_timeout=2)

    @property
    def url(self) -> str:
        """kombu's form: every sentinel, then the database."""
        return ";".join(f"sentinel://127.0.0.1:{self.ports[f'sentinel{i}']}" for i in range(3)) + "/0"

    def master_port(self) -> int:
        _, port = self.client("sentinel0").sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def cut_replica(self) -> None:
        """From now on the master's writes never reach the replica: it is stopped, and the master
        drops its link (so nothing written later waits in a socket buffer for it)."""
        os.killpg(self.procs["replica"].pid, signal.SIGSTOP)
        self.client("master").client_kill_filter(_type="replica")

    def fail_over(self) -> None:
        """SIGKILL the master and wake the replica: the sentinels promote it, without every write
        the master took since ``cut_replica``."""
        os.killpg(self.procs["master"].pid, signal.SIGKILL)
        os.killpg(self.procs["replica"].pid, signal.SIGCONT)
        self._until(lambda: self.master_port() == self.ports["replica"], timeout=60)

    def _until(self, check: object, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if check():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the sentinel group did not get there within {timeout}s")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
