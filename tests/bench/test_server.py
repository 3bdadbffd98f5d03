"""Finding the local server process whose CPU the benchmark charges to each way."""

from __future__ import annotations

import os
import socket

import pytest

from bench.server import find_server, is_loopback


@pytest.mark.integration  # listens on a loopback port
def test_the_process_listening_on_a_loopback_url_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        server = find_server(f"http://admin:secret@localhost:{port}")
    assert server.pid == os.getpid()
    cpu = server.cpu_seconds()
    assert cpu is not None and cpu > 0


def test_a_remote_server_is_not_measurable() -> None:
    server = find_server("https://couch.example.com:6984")
    assert server.pid is None and server.cpu_seconds() is None
    assert "not measurable" in server.how


def test_loopback_hosts() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "LOCALHOST")] == [True] * 4
    assert [is_loopback(h) for h in ("10.0.0.1", "couchdb", "", None)] == [False] * 4
