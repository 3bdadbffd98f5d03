"""Link profiles: replication tuning presets for the kind of network a link crosses.

CouchDB's defaults (checkpoint every 30 s, 30 s connection timeout, 20 connections, batches of 500)
suit a datacenter. On a link that drops every few minutes a job that checkpoints every 30 s redoes up
to 30 s of work after each drop, so unstable links checkpoint every 5-15 s; their timeouts sit well
above the worst expected round trip (a timeout below it turns every slow request into a retry storm);
they use few connections and small batches so one lost request costs little. Every value can be
overridden per topology (``profiles:``) and per link.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

#: The tunables a profile presets, all CouchDB ``_replicator`` fields (milliseconds where timed).
TUNABLES = (
    "checkpoint_interval",
    "connection_timeout",
    "http_connections",
    "retries_per_request",
    "worker_batch_size",
    "worker_processes",
)


@dataclass(frozen=True)
class Profile:
    """One preset; ``rtt_ms`` is the worst round trip expected on such a link (not sent to CouchDB)."""

    name: str
    rtt_ms: int
    checkpoint_interval: int
    connection_timeout: int
    http_connections: int
    retries_per_request: int
    worker_batch_size: int
    worker_processes: int

    def options(self) -> dict[str, int]:
        """The values written into a ``_replicator`` document."""
        return {k: v for k, v in asdict(self).items() if k in TUNABLES}

    def derive(self, name: str, overrides: dict[str, Any]) -> Profile:
        """A copy with some values overridden (``None`` values keep the preset)."""
        return replace(self, name=name, **{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, Profile] = {
    # CouchDB's own defaults: stable, low latency, plenty of bandwidth.
    "datacenter": Profile(
        "datacenter",
        rtt_ms=50,
        checkpoint_interval=30_000,
        connection_timeout=30_000,
        http_connections=20,
        retries_per_request=5,
        worker_batch_size=500,
        worker_processes=4,
    ),
    # LTE/5G edge gateways: 100-800 ms, drops and NAT rebinding; checkpoint every 10 s.
    "cellular": Profile(
        "cellular",
        rtt_ms=1_000,
        checkpoint_interval=10_000,
        connection_timeout=60_000,
        http_connections=4,
        retries_per_request=10,
        worker_batch_size=100,
        worker_processes=2,
    ),
    # GEO satellite: ~600 ms base, multi-second spikes, costly bytes; checkpoint every 15 s.
    "satellite": Profile(
        "satellite",
        rtt_ms=5_000,
        checkpoint_interval=15_000,
        connection_timeout=120_000,
        http_connections=2,
        retries_per_request=10,
        worker_batch_size=50,
        worker_processes=1,
    ),
    # LoRa-class backhaul (through a gateway): bytes per second, round trips of many seconds; checkpoint
    # every 5 s so hardly anything is ever re-sent, one connection, tiny batches.
    "lora": Profile(
        "lora",
        rtt_ms=30_000,
        checkpoint_interval=5_000,
        connection_timeout=300_000,
        http_connections=1,
        retries_per_request=20,
        worker_batch_size=5,
        worker_processes=1,
    ),
}


def worst(a: Profile, b: Profile) -> Profile:
    """The profile of a link between two nodes: the one made for the slower network."""
    return a if a.rtt_ms >= b.rtt_ms else b
