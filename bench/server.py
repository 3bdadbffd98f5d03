"""The local process that serves the database, so the benchmark can charge each way its server CPU.

- the pouchdb-server the benchmark started: its node process;
- a server given by ``--url`` on a loopback address: the process listening on its port, else the
  one ``beam.smp`` (CouchDB's Erlang VM) on this machine when there is exactly one;
- anything else (another host, no such process, not allowed to see it): not measurable, and the
  reason is printed instead of a number.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil


@dataclass(frozen=True)
class ServerProcess:
    """A server process to read CPU time from (``pid`` None: not measurable, ``how`` says why)."""

    pid: int | None
    how: str

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds used so far, None when not measurable (or the process is gone)."""
        if self.pid is None:
            return None
        try:
            times = psutil.Process(self.pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return float(times.user + times.system)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (None when unknown or not ours to see)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def beam_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"]


def find_server(url: str) -> ServerProcess:
    """The process serving ``url`` when it runs on this machine."""
    parts = urlsplit(url)
    if not is_loopback(parts.hostname):
        return ServerProcess(None, f"{parts.hostname} is not this machine: server CPU not measurable")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    pid = listening_pid(port)
    if pid is not None:
        return ServerProcess(pid, f"{process_name(pid)} (pid {pid}) listening on port {port}")
    beams = beam_pids()
    if len(beams) == 1:
        return ServerProcess(beams[0], f"beam.smp (pid {beams[0]}), the only one on this machine")
    why = "no" if not beams else f"{len(beams)}"
    return ServerProcess(
        None, f"no visible listener on port {port} and {why} beam.smp processes: server CPU not measurable"
    )


def process_name(pid: int) -> str:
    try:
        return str(psutil.Process(pid).name())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
