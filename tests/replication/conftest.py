"""Fixtures for the replication tests: real pouchdb-server nodes, one set per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.replication.helpers import start_nodes, stop_nodes
from workers.local_servers import PouchServer


@pytest.fixture
def write_topology(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "topology.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[dict[str, PouchServer]]:
    servers = start_nodes(["a", "b"])
    try:
        yield servers
    finally:
        stop_nodes(servers)


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[dict[str, PouchServer]]:
    servers = start_nodes(["a", "b", "c"])
    try:
        yield servers
    finally:
        stop_nodes(servers)
